"""The relayed users of the Matrix room, shown as occupants of the paired XMPP room.

A plain XMPP client sees who is in a MUC room from occupant presence (XEP-0045 §7.2.3).
The Matrix users the relay holds a puppet for speak in the XMPP room under a marked
name (``@bob:example.org (relayed)``, which no occupant can take); :class:`Guests`
makes them *guests* of the XMPP room under that same name
(:class:`transports.xmpp.occupants.OccupantPresence`): present while their puppet is
in the group and they are in the Matrix room, gone when they leave it, when their
puppet is replaced or when relay mode is turned off.
"""

from __future__ import annotations

from bridge.identities import display, relay_identity
from transports.matrix import namespace as matrix_ns
from transports.xmpp.component import MLSComponent


class Guests:
    """Per relayed group, the Matrix users shown in its XMPP room."""

    def __init__(self) -> None:
        self.component: MLSComponent | None = None
        self._by_group: dict[bytes, set[str]] = {}  # group -> Matrix identity URIs
        self._rooms: dict[bytes, str] = {}  # group -> its XMPP room

    def came(self, group_id: bytes, xmpp_room: str, identity: str) -> None:
        """The Matrix user ``identity`` has a puppet in ``group_id``: show it."""
        if not identity.startswith(matrix_ns.URI_SCHEME):
            return
        self._rooms[group_id] = xmpp_room
        shown = self._by_group.setdefault(group_id, set())
        if identity not in shown:
            shown.add(identity)
            self._push(group_id)

    def went(self, identity: str, group_id: bytes | None = None) -> None:
        """``identity`` left ``group_id``'s Matrix room (None: every group)."""
        for group in [group_id] if group_id is not None else list(self._by_group):
            shown = self._by_group.get(group, set())
            if identity in shown:
                shown.discard(identity)
                self._push(group)

    def clear(self, group_id: bytes) -> None:
        """Relay mode is off for ``group_id``: nobody is shown."""
        if self._by_group.pop(group_id, None):
            self._by_group[group_id] = set()
            self._push(group_id)
            del self._by_group[group_id]

    def _push(self, group_id: bytes) -> None:
        room = self._rooms.get(group_id)
        if self.component is None or room is None:
            return
        self.component.presence.set_guests(room, {
            display(relay_identity(identity)): identity
            for identity in self._by_group.get(group_id, ())})


__all__ = ["Guests"]
