"""The archive of relayed rooms: what the relay re-emitted into an XMPP room, served
by XEP-0313 (:mod:`transports.xmpp.mam`) to the room's occupants and members.

It holds only what the relay could read anyway -- the plain text it decrypted for its
puppets, or that legacy users wrote -- and it lives beside the puppets' keys in the
relay's secrets file (``archive`` table of :mod:`bridge.relay.secrets_file`, 0600,
operator-readable like the keys that decrypt the same messages), never in the hub's
store. Each group keeps its newest ``[bridge.relay] archive`` messages (default
:data:`KEEP`); ids are the stanza-ids the messages were sent with
(:func:`stanza_id`: the group and its hub log seq), so a client recognises a message
it saw live, and the archive is in log order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.relay.secrets_file import Archived, PuppetSecrets
from transports.xmpp.mam import MamItem, MamQuery

KEEP = 1000  # messages kept per relayed group, by default


def stanza_id(group_id: bytes, seq: int) -> str:
    """The XEP-0359 stanza-id of a relayed message (also its archive id)."""
    return f"relay-{group_id.hex()[:12]}-{seq}"


def _seq(group_id: bytes, identifier: str) -> int:
    prefix = stanza_id(group_id, 0)[:-1]
    number = identifier.removeprefix(prefix)
    if number == identifier or not number.isdigit():
        raise ValueError(f"unknown archive id {identifier!r}")
    return int(number)


class RelayArchive:
    """:class:`transports.xmpp.mam.RoomArchive` over the secrets file."""

    def __init__(self, secrets: Callable[[], PuppetSecrets | None],
                 group_of: Callable[[str], bytes | None], keep: int = KEEP) -> None:
        self._secrets = secrets  # the relay's secrets file (opened at its start)
        self._group_of = group_of  # XMPP room -> its relayed group
        self.keep = keep

    async def record(self, group_id: bytes, seq: int, nick: str, sender: str,
                     body: str) -> None:
        """Keep a message the relay re-emitted into the group's XMPP room."""
        secrets = self._secrets()
        if secrets is not None and self.keep > 0:
            await secrets.add_archived(group_id, Archived(seq, nick, sender, body,
                                                          int(time.time())), self.keep)

    async def query(self, room: str, query: MamQuery) -> tuple[list[MamItem], bool]:
        group_id, secrets = self._group_of(room), self._secrets()
        if group_id is None or secrets is None:
            return [], True
        after = _seq(group_id, query.after) if query.after else -1
        before = _seq(group_id, query.before) if query.before else None
        found = await secrets.archived(group_id, after=after, before=before,
                                       since=query.start, until=query.end, nick=query.nick)
        page = found[-query.limit:] if query.before is not None else found[:query.limit]
        if query.limit == 0:
            page = []
        items = [MamItem(stanza_id(group_id, m.seq), m.nick, m.body, m.at) for m in page]
        return items, len(found) <= query.limit


__all__ = ["KEEP", "RelayArchive", "stanza_id"]
