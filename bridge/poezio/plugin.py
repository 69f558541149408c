"""The module poezio loads: ``/load mls`` (the ``poezio_plugins`` entry point ``mls``
of this package), or ``plugins_autoload = mls`` in poezio's configuration
(``docs/POEZIO.md``).

It is glue only (everything else: :class:`bridge.poezio.runner.PoezioMLS`): poezio's
``muc_join`` (our own entry into a room of the bridge) joins the room's MLS group;
``muc_say`` in such a room hands the line to the member library and empties the
message, so that poezio sends nothing in clear; ``/mls ...`` runs the chat client's
commands; what the chat client shows is written into the room's tab.

Configuration (``~/.config/poezio/plugins/mls.cfg``, section ``[mls]``): ``hub`` (the
bridge's component, default ``mls.<your domain>``), ``upload_hosts`` (other hosts files
may be downloaded from, comma-separated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poezio import xdg
from poezio.plugin import BasePlugin
from poezio.tabs import MucTab
from poezio.ui.types import InfoMessage

from bridge.poezio.runner import HELP, PoezioMLS, store_path


class Plugin(BasePlugin):
    """The ``mls`` plugin (see the module docstring)."""

    default_config = {"mls": {"hub": "", "upload_hosts": ""}}  # noqa: RUF012 (poezio's)

    def init(self) -> None:
        xmpp = self.core.xmpp
        hosts = frozenset(h.strip() for h in str(self.config.get("upload_hosts", ""))
                          .split(",") if h.strip())
        self.mls = PoezioMLS(xmpp, store=store_path(Path(xdg.DATA_HOME), xmpp.boundjid.bare),
                             write=self._write, inform=self._inform,
                             hub=str(self.config.get("hub", "")), upload_hosts=hosts)
        self.api.add_event_handler("muc_join", self._on_join)
        self.api.add_event_handler("muc_say", self._on_say, priority=0)
        self.api.add_command("mls", self._command, usage="<command> [args]",
                             short="MLS end-to-end encryption in the bridge's rooms",
                             help=HELP)
        self.mls.spawn(self.mls.start())

    def cleanup(self) -> None:
        self.mls.spawn(self.mls.stop())

    def _on_join(self, presence: Any, tab: Any) -> None:
        room = str(tab.jid.bare)
        if self.mls.is_mls_room(room) and presence["from"].resource == tab.own_nick:
            self.mls.spawn(self.mls.entered(room, tab.own_nick))

    def _on_say(self, message: Any, tab: Any) -> None:
        room = str(tab.jid.bare)
        if not self.mls.is_mls_room(room):
            return
        body = str(message["body"])
        message["body"] = ""  # never in clear: the member library sends it encrypted
        if body.strip():
            self.mls.spawn(self.mls.say(room, body))

    async def _command(self, line: str) -> None:
        tab = self.api.current_tab()
        room = str(tab.jid.bare) if isinstance(tab, MucTab) else ""
        await self.mls.command(room if self.mls.is_mls_room(room) else "", line)

    def _write(self, room_id: str, lines: list[str]) -> None:
        tab = self.core.tabs.by_name_and_class(room_id, MucTab)
        if tab is None:
            for line in lines:
                self._inform(line)
            return
        for line in lines:
            tab.add_message(InfoMessage(line))
        self.core.refresh_window()

    def _inform(self, text: str) -> None:
        self.api.information(text, "Info")
