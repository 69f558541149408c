"""Notices for membership changes, derived from what the member's group looked like
before and after (until the member library reports membership events itself).

A :class:`Roster` is a group's leaves (index -> identity) at one epoch. Between two
rosters, :func:`describe` says who added, removed or joined whom and how, using what
the client saw on the wire: the network identity that submitted the epoch's commit
(the hub's ``sender`` of the commit delivery) and whether the hub proposed removals in
that epoch (someone left the room on the network). When more than one epoch passed
between two looks, the committers are not attributed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bridge.identities import RELAYED_MARK, IdentityVerifier, identity_of, relayed_user
from mls.group.group import Group


@dataclass(frozen=True, slots=True)
class Roster:
    """A group's members at one epoch (``leaves``: leaf index -> identity)."""

    epoch: int
    active: bool
    leaves: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, group: Group, verifier: IdentityVerifier | None) -> Roster:
        """The roster of ``group``; X.509 identities read through ``verifier`` (the
        member's pinned CA)."""
        if not group.active:
            return cls(group.epoch, False)
        return cls(group.epoch, True, {int(leaf): identity_of(node.credential, verifier)
                                       for leaf, node in group.members()})


@dataclass
class Witness:
    """What the client saw of one epoch's commit: who submitted it, and whether the
    hub proposed removals in that epoch (people who left the room)."""

    committer: str = ""
    hub_removals: bool = False


def describe(before: Roster, after: Roster, me: str, witness: Witness | None,
             name: str = "you") -> list[str]:
    """One notice per membership change between ``before`` and ``after``."""
    # (a group we were removed from stays at the epoch it had: its commit is the step)
    one_step = witness is not None and (after.epoch == before.epoch + 1 or not after.active)
    committer = witness.committer if one_step and witness is not None else ""
    actor = "" if not committer else "you" if committer == me else short(committer)
    left = one_step and witness is not None and witness.hub_removals
    if not after.active:
        by = f" by {actor}" if actor and committer != me else ""
        if left:
            return [f"{name} left the group (the bridge's removal, committed{by}); the "
                    f"room is read-only now"]
        return [f"{name} were removed from the group{by}; the room is read-only now"]
    gone = Counter(before.leaves.items()) - Counter(after.leaves.items())
    came = Counter(after.leaves.items()) - Counter(before.leaves.items())
    gone_ids = [who for (_, who) in gone.elements()]
    came_ids = [who for (_, who) in came.elements()]
    notices = []
    for who in came_ids:
        if who in gone_ids:
            gone_ids.remove(who)
            notices.append(f"{short(who)} rejoined with a new leaf (external commit, "
                           f"replacing their old one)")
        elif committer and committer == who:
            notices.append(f"{short(who)} joined by external commit")
        elif actor:
            notices.append(f"{actor} added {short(who)} (Welcome)")
        else:
            notices.append(f"{short(who)} was added")
    for who in gone_ids:
        if left:
            via = f"; {actor} committed the removal" if actor else ""
            notices.append(f"{short(who)} left the room (the bridge proposed the "
                           f"removal{via})")
        elif actor:
            notices.append(f"{actor} removed {short(who)}")
        else:
            notices.append(f"{short(who)} was removed")
    return notices


def short(identity: str) -> str:
    """An identity as people write it: ``alice@example.org``, ``@bob:example.org``; a
    relay puppet's (``relay+...``, :mod:`bridge.identities`) with its mark,
    ``alice@example.org (relayed)``."""
    legacy = relayed_user(identity)
    if legacy is not None:
        return short(legacy) + RELAYED_MARK
    if identity.startswith("matrix:u/"):
        return "@" + identity.removeprefix("matrix:u/")
    return identity.removeprefix("xmpp:")


def user_uri(text: str) -> str:
    """An address as typed (``bob@example.org``, ``@bob:example.org`` or a URI) as the
    identity URI the hub and credentials use; ValueError if it is neither."""
    text = text.strip()
    if text.startswith(("xmpp:", "matrix:u/")):
        return text
    if text.startswith("@") and ":" in text and " " not in text:
        return "matrix:u/" + text[1:]
    local, sep, domain = text.partition("@")
    if sep and local and domain and "/" not in text and " " not in text:
        return "xmpp:" + text
    raise ValueError(f"{text!r} is not a user address (alice@example.org or "
                     f"@alice:example.org)")
