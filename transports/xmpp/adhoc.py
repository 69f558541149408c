"""Room administration as XEP-0050 ad-hoc commands on the component's JID.

Four commands (nodes ``bridge``, ``unbridge``, ``relay``, ``status``), the same set as
the Matrix bot's ``!mls`` commands, each a one-page ``jabber:x:data`` form (XEP-0004):

* ``bridge``  -- ``room`` (one of the component's rooms), ``matrix_room`` (a Matrix
  room id, ``!...``);
* ``unbridge`` and ``status`` -- ``room``;
* ``relay``   -- ``room``, ``mode`` (``on`` | ``off``).

The flow is XEP-0050 §3.4: *execute* answers with the form, the client *completes* it
(a client may also send the submitted form with *execute*: it runs at once). The
actor is the bare JID the server stamped on the *execute* request (``xmpp:`` + it),
never a field of the form; what the command does and whether the actor may is the
bridge's decision (:class:`transports.interface.RoomCommands`), and its answer is the
completed command's note (``info``, or ``error`` when refused). A session not
completed within :data:`SESSION_TIMEOUT` seconds is dropped.
"""

from __future__ import annotations

from typing import Any

from slixmpp import JID
from slixmpp.stanza import Iq

from transports.interface import CommandReply, Network, RoomCommands
from transports.xmpp import namespace as ns

NS_DATA = "jabber:x:data"
SESSION_TIMEOUT = 120.0  # seconds an unfinished command session is kept
#: node -> (human name, the form's fields (var, label, options))
COMMANDS: dict[str, tuple[str, tuple[tuple[str, str, tuple[str, ...]], ...]]] = {
    "bridge": ("Bridge this room with a Matrix room", (
        ("room", "XMPP room (room@component)", ()),
        ("matrix_room", "Matrix room id (!...)", ()))),
    "unbridge": ("Unbridge this room", (("room", "XMPP room", ()),)),
    "relay": ("Relay mode on or off", (
        ("room", "XMPP room", ()), ("mode", "Relay mode", ("on", "off")))),
    "status": ("Bridge status of a room", (("room", "XMPP room", ()),)),
}


class AdHocCommands:
    """The ad-hoc commands of the component (see the module docstring)."""

    def __init__(self, xmpp: Any, jid: str) -> None:
        self.xmpp = xmpp
        self.jid = jid
        self.handler: RoomCommands | None = None

    def register(self) -> None:
        """Offer the commands (disco items of the commands node, XEP-0050 §2)."""
        adhoc = self.xmpp.plugin["xep_0050"]
        for node, (name, _) in COMMANDS.items():
            adhoc.add_command(jid=JID(self.jid), node=node, name=name,
                              handler=self._start, timeout=SESSION_TIMEOUT)

    def _form(self, node: str) -> Any:
        name, fields = COMMANDS[node]
        form = self.xmpp.plugin["xep_0004"].make_form(ftype="form", title=name)
        for var, label, options in fields:
            field = form.add_field(var=var, label=label, required=True,
                                   ftype="list-single" if options else "text-single")
            for option in options:
                field.add_option(label=option, value=option)
        return form

    async def _start(self, iq: Iq, session: dict[str, Any]) -> dict[str, Any]:
        """*execute*: the form to fill in, or the result if it came filled in."""
        session["actor"] = ns.URI_SCHEME + iq["from"].bare
        submitted: Any = session["payload"]
        if getattr(submitted, "namespace", "") == NS_DATA and \
                submitted["type"] == "submit":
            return await self._complete(submitted, session)
        session["payload"] = self._form(session["node"])
        session["next"] = self._complete
        session["has_next"] = False
        return session

    async def _complete(self, form: Any, session: dict[str, Any]) -> dict[str, Any]:
        """*complete*: run the command with the form's values."""
        values = form.get_values() if getattr(form, "namespace", "") == NS_DATA else {}
        node = session["node"]
        words = [node] + [_text(values.get(var)) for var, _, _ in COMMANDS[node][1][1:]]
        room = JID(_text(values.get("room")) or "x@invalid").bare
        if self.handler is None:
            reply = CommandReply(False, "the bridge is not running")
        elif not room.endswith("@" + self.jid):
            reply = CommandReply(False, f"not a room of {self.jid}: {room}")
        else:
            reply = await self.handler.room_command(Network.XMPP, session["actor"], room,
                                                    words)
        session["payload"] = None
        session["next"] = None
        session["notes"] = [("info" if reply.ok else "error",
                             reply.text or "too many commands: wait a little")]
        return session


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()


__all__ = ["COMMANDS", "AdHocCommands"]
