"""The affiliations of the component's rooms (XEP-0045 §5.2) and what they allow.

The component hosts its rooms itself, so it is the room service: it keeps every room's
affiliations (owner, admin, member, outcast; ``none`` is the absence of one), in
memory and persistently in the hub store (:class:`AffiliationStore`), and answers the
hub's question "what is this identity here?" (:meth:`Affiliations.role`, the
:class:`~transports.interface.RoomDirectory` of XMPP):

* a room in the configuration gets its owners from there (``admins`` of its pair); a
  room nobody configured gets its creator -- the first occupant of a room that has
  no affiliation yet -- as owner (XEP-0045 §10.1);
* owners and admins change affiliations with the muc#admin IQ (XEP-0045 §9.1 ban,
  §9.3-9.5 membership, §10.3-10.7 owners and admins) and kick occupants (§8.2,
  ``role='none'``): :func:`check_change` says whether an actor may;
* service administrators (the component's ``admins``) are owners of every room.

Roles: owner -> ADMIN, admin -> MODERATOR, member -> MEMBER, none/outcast -> NONE.
Occupancy alone grants nothing: anyone may enter a component room, so only an
affiliation counts as room membership.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from xml.etree import ElementTree as ET

from slixmpp import JID
from slixmpp.jid import InvalidJID

from transports.interface import Role
from transports.xmpp import namespace as ns

OWNER, ADMIN, MEMBER, OUTCAST, NONE = "owner", "admin", "member", "outcast", "none"
_RANK = {OUTCAST: -1, NONE: 0, MEMBER: 1, ADMIN: 2, OWNER: 3}
_ROLES = {OWNER: Role.ADMIN, ADMIN: Role.MODERATOR, MEMBER: Role.MEMBER}


class AffiliationStore(Protocol):
    """Where affiliations persist (the hub store)."""

    async def room_affiliations(self) -> dict[str, dict[str, str]]: ...

    async def set_affiliation(self, room: str, identity: str, affiliation: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AdminItem:
    """One ``<item/>`` of a muc#admin set: an affiliation for ``identity``, or a kick
    (``role='none'``) of the occupant ``nick``."""

    affiliation: str = ""
    identity: str = ""
    nick: str = ""
    reason: str = ""

    @property
    def kick(self) -> bool:
        return not self.affiliation


class Affiliations:
    """Every room's affiliations (see the module docstring)."""

    def __init__(self, store: AffiliationStore | None,
                 service_admins: Iterable[str] = ()) -> None:
        self._store = store
        self.service_admins = frozenset(service_admins)
        self.rooms: dict[str, dict[str, str]] = {}
        self.configured: set[str] = set()

    async def load(self) -> None:
        if self._store is not None:
            self.rooms = await self._store.room_affiliations()

    def of(self, room: str, identity: str) -> str:
        if identity in self.service_admins:
            return OWNER
        return self.rooms.get(room, {}).get(identity, NONE)

    def role(self, room: str, identity: str) -> Role:
        return _ROLES.get(self.of(room, identity), Role.NONE)

    def listed(self, room: str, affiliation: str) -> list[str]:
        """The identities holding ``affiliation`` in ``room`` (XEP-0045 §9.5)."""
        return sorted(who for who, held in self.rooms.get(room, {}).items()
                      if held == affiliation)

    def update(self, room: str, identity: str, affiliation: str) -> None:
        """Change the affiliation in memory (:meth:`save` persists it)."""
        held = self.rooms.setdefault(room, {})
        if affiliation == NONE:
            held.pop(identity, None)
        else:
            held[identity] = affiliation

    async def save(self, room: str, identity: str) -> None:
        """Persist ``identity``'s current affiliation with ``room``."""
        if self._store is not None:
            await self._store.set_affiliation(room, identity,
                                              self.rooms.get(room, {}).get(identity, NONE))

    async def set(self, room: str, identity: str, affiliation: str) -> None:
        self.update(room, identity, affiliation)
        await self.save(room, identity)

    async def configure(self, room: str, owners: Iterable[str]) -> None:
        """A configured room: exactly ``owners`` own it (earlier owners become members,
        other affiliations stay); it never gets a first-comer owner."""
        self.configured.add(room)
        wanted = set(owners)
        for identity in [who for who, held in self.rooms.get(room, {}).items()
                         if held == OWNER and who not in wanted]:
            await self.set(room, identity, MEMBER)
        for identity in sorted(wanted):
            if self.rooms.get(room, {}).get(identity) != OWNER:
                await self.set(room, identity, OWNER)

    def creates(self, room: str) -> bool:
        """Whether entering ``room`` now would create it (XEP-0045 §10.1)."""
        return room not in self.configured and not self.rooms.get(room)

    def owned(self, identity: str) -> int:
        """How many rooms ``identity`` owns (the configuration's included)."""
        return sum(1 for held in self.rooms.values() if held.get(identity) == OWNER)

    def created_by(self, room: str, identity: str) -> bool:
        """XEP-0045 §10.1: the first occupant of a new room (not configured, without
        any affiliation) becomes its owner, in memory (:meth:`save` persists it).
        True if ``identity`` just did."""
        if not self.creates(room):
            return False
        self.update(room, identity, OWNER)
        return True


def check_change(affiliations: Affiliations, room: str, actor: str, item: AdminItem,
                 target: str) -> str:
    """The stanza error condition refusing ``actor``'s change, or ``""`` if allowed.

    Owners and admins act (XEP-0045 §8.2, §9); only owners grant or revoke owner and
    admin status and act on owners or admins (§10.3-10.7); nobody removes the last
    owner (§10.9); an admin cannot kick or ban an owner or admin (§8.2, §9.1)."""
    mine = _RANK[affiliations.of(room, actor)]
    theirs = affiliations.of(room, target)
    if mine < _RANK[ADMIN]:
        return "forbidden"
    high = {ADMIN, OWNER}
    if (item.affiliation in high or theirs in high) and mine < _RANK[OWNER]:
        return "not-allowed"
    if theirs == OWNER and item.affiliation != OWNER and (
            affiliations.listed(room, OWNER) == [target]):
        return "conflict"
    return ""


def parse_admin_items(query: ET.Element) -> list[AdminItem]:
    """The ``<item/>`` children of a muc#admin ``<query/>`` set; ValueError for an item
    that is neither an affiliation for a bare JID nor a kick by nick."""
    items = []
    for element in query.findall(f"{{{ns.NS_MUC_ADMIN}}}item"):
        reason = element.findtext(f"{{{ns.NS_MUC_ADMIN}}}reason") or ""
        affiliation, jid = element.get("affiliation", ""), element.get("jid", "")
        if affiliation:
            try:
                bare = JID(jid)
            except InvalidJID as exc:
                raise ValueError(f"bad JID {jid!r}") from exc
            if affiliation not in _RANK or not bare.bare or bare.resource:
                raise ValueError(f"bad affiliation item ({affiliation!r}, {jid!r})")
            items.append(AdminItem(affiliation, ns.URI_SCHEME + bare.bare, reason=reason))
        elif element.get("role") == "none" and element.get("nick"):
            items.append(AdminItem(nick=element.get("nick", ""), reason=reason))
        else:
            raise ValueError("only affiliation changes and kicks (role='none') are served")
    if not items:
        raise ValueError("no <item/>")
    return items


__all__ = ["ADMIN", "MEMBER", "NONE", "OUTCAST", "OWNER", "AdminItem", "AffiliationStore",
           "Affiliations", "check_change", "parse_admin_items"]
