"""The chat client's XMPP session over poezio's own client.

poezio logs in, reconnects and joins rooms (MUC) itself; the session only registers the
``mls_client`` plugin on poezio's :class:`slixmpp.ClientXMPP` (the member's link, as in
:class:`bridge.chat.xmpp_session.XmppSession`, whose rooms and files it keeps) and marks
poezio's presences to the bridge's rooms as an MLS client's (the ``<client/>`` element
the component tells MLS members from plain occupants by).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from xml.etree import ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.stanza import Presence
from slixmpp.xmlstream import StanzaBase

from bridge.chat.session import Status, StatusHook
from bridge.chat.xmpp_session import XmppSession
from transports.xmpp import namespace as ns

log = logging.getLogger(__name__)


class PoezioSession(XmppSession):
    """An :class:`XmppSession` over a client that poezio logged in."""

    def __init__(self, client: ClientXMPP, *, hub: str = "",
                 upload_hosts: frozenset[str] = frozenset()) -> None:
        self._bind(client, hub or f"mls.{client.boundjid.domain}", upload_hosts)
        self.host, self.port = "", 0
        self._online: asyncio.Future[None] | None = None
        client.add_filter("out", self.mark_presence)
        client.add_event_handler("session_start", self._poezio_online)

    def mark_presence(self, stanza: StanzaBase) -> StanzaBase:
        """An outgoing presence to one of the bridge's rooms says we are an MLS client."""
        if isinstance(stanza, Presence) and stanza["to"].domain == self.hub \
                and stanza.xml.find(f"{{{ns.NS}}}{ns.CLIENT}") is None \
                and stanza["type"] != "unavailable":
            ET.SubElement(stanza.xml, f"{{{ns.NS}}}{ns.CLIENT}")
        return stanza

    def _poezio_online(self, _event: Any) -> None:
        if self._online is not None and not self._online.done():
            self._online.set_result(None)
        self._on_status(Status(True, f"connected as {self.client.boundjid.bare}"))

    async def connect(self, on_status: StatusHook) -> None:
        """Wait until poezio's client has a session (it may be logging in still)."""
        self._on_status = on_status
        if not getattr(self.client, "sessionstarted", False):
            self._online = asyncio.get_running_loop().create_future()
            on_status(Status(False, "waiting for poezio to connect"))
            await self._online
        on_status(Status(True, f"connected as {self.client.boundjid.bare}"))

    async def close(self) -> None:
        """The stream is poezio's: leave it up; only stop marking presences."""
        self._closing = True
        self.client.del_filter("out", self.mark_presence)
        self.client.del_event_handler("session_start", self._poezio_online)
