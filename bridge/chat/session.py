"""One account's connection to its network, as the chat client needs it.

A :class:`Session` is what differs between XMPP and Matrix: logging in, the member's
:class:`transports.interface.HubLink`, reconnecting with backoff (its state shown to
the person through ``on_status``), entering and creating rooms, uploading and
downloading the ciphertext of files, the server's upload limit, and whether a room is
relayed. Everything MLS is in the member library, the same for both
(:mod:`bridge.member`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.errors import BridgeError
from transports.interface import DeliverySink, HubLink

#: Called with a one-line description of the connection whenever it changes.
StatusHook = Callable[["Status"], None]


@dataclass(frozen=True, slots=True)
class Status:
    """The connection as the person sees it: ``online`` and a short reason."""

    online: bool
    text: str


class SessionError(BridgeError):
    """The session could not do what was asked (login refused, room not found...):
    its message is shown to the person as it is."""


class Session(Protocol):
    """One account on one network (see the module docstring)."""

    network: str  # "xmpp" or "matrix": the transport name of its rooms

    @property
    def identity(self) -> str:
        """The account's identity URI (``xmpp:alice@example.org``)."""
        ...

    @property
    def link(self) -> HubLink: ...

    @property
    def device_id(self) -> str:
        """The network's id of this device (kept in the store for the next start)."""
        ...

    def attach(self, sink: DeliverySink) -> None:
        """Hand deliveries to ``sink`` (before :meth:`connect`)."""
        ...

    async def connect(self, on_status: StatusHook) -> None:
        """Log in and connect; reconnect with backoff when the connection is lost.
        :class:`SessionError` if the first login is refused."""
        ...

    async def close(self) -> None: ...

    def room_address(self, text: str) -> str:
        """A room address as typed, completed (``lobby`` -> ``lobby@mls.example.org``)."""
        ...

    async def enter_room(self, address: str) -> str:
        """Enter a room on the network (before or after joining its group); the room's
        id as the hub knows it. :class:`SessionError` when the network refuses."""
        ...

    async def room_name(self, room_id: str) -> str:
        """What to call the room in the room list (its name, else its address)."""
        ...

    async def attach_room(self, room_id: str, group_id: bytes) -> None:
        """Receive the group's traffic in ``room_id`` (after joining its group)."""
        ...

    async def create_room(self, name: str) -> str:
        """A new room for a new group (its id, to pass to ``create_group``)."""
        ...

    async def leave_room(self, room_id: str) -> None: ...

    async def relayed(self, room_id: str) -> bool:
        """Whether the bridge relays the room (encryption ends at the bridge)."""
        ...

    async def upload_limit(self) -> int:
        """The largest upload the server accepts, in bytes (0: no upload service)."""
        ...

    async def upload(self, data: bytes) -> str:
        """Store ``data`` on the server; its URL."""
        ...

    async def download(self, url: str, size: int, sha256: bytes) -> bytes:
        """Fetch exactly ``size`` bytes hashing to ``sha256`` from ``url``."""
        ...
