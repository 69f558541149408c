"""The poezio plugin's pieces that need no server (the plugin in real poezio, against
real servers: ``tests/e2e/test_three_terminals.py``): poezio's presences to the
bridge's rooms are marked as an MLS client's, lines typed there never leave in clear,
poezio finds the plugin by its entry point, and the device store is 0600."""

from __future__ import annotations

import asyncio
import stat
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slixmpp import ClientXMPP

from bridge.poezio.runner import PoezioMLS, store_path
from bridge.poezio.session import PoezioSession
from transports.xmpp import namespace as ns

MARK = f"{{{ns.NS}}}{ns.CLIENT}"


def client() -> ClientXMPP:
    return ClientXMPP("carol@example.org/poezio", "secret")


def test_presences_to_the_bridges_rooms_say_mls_client() -> None:
    xmpp = client()
    session = PoezioSession(xmpp)
    assert session.hub == "mls.example.org"
    entering = xmpp.make_presence(pto="lobby@mls.example.org/carol")
    elsewhere = xmpp.make_presence(pto="room@conference.example.org/carol")
    leaving = xmpp.make_presence(pto="lobby@mls.example.org/carol", ptype="unavailable")
    for presence in (entering, elsewhere, leaving):
        session.mark_presence(presence)
    assert entering.xml.find(MARK) is not None
    assert elsewhere.xml.find(MARK) is None
    assert leaving.xml.find(MARK) is None
    session.mark_presence(entering)
    assert len(entering.xml.findall(MARK)) == 1


async def test_the_store_is_private_and_under_poezios_data(tmp_path: Path) -> None:
    path = store_path(tmp_path / "poezio", "carol@example.org/poezio")
    assert path == tmp_path / "poezio" / "mls" / "carol@example.org.sqlite3"
    said: list[str] = []
    runner = PoezioMLS(client(), store=path, write=lambda room, lines: None,
                       inform=said.append)
    runner.session.connect = _never  # type: ignore[method-assign]
    runner.spawn(runner.start())
    while not path.exists():
        await _tick()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await runner.stop()


async def test_a_line_in_a_room_without_a_group_is_not_sent(tmp_path: Path) -> None:
    written: list[tuple[str, list[str]]] = []
    runner = PoezioMLS(client(), store=tmp_path / "s.sqlite3",
                       write=lambda room, lines: written.append((room, lines)),
                       inform=lambda text: None)
    runner.chat = SimpleNamespace(rooms={}, member=None)  # type: ignore[assignment]
    await runner.say("lobby@mls.example.org", "secret words")
    assert written == [("lobby@mls.example.org", [
        "MLS: not sent: you are not (yet) in this room's MLS group"])]


def test_poezio_finds_the_plugin_by_its_entry_point() -> None:
    (found,) = entry_points(group="poezio_plugins").select(name="mls")
    assert found.value == "bridge.poezio.plugin"


async def _never(on_status: Any) -> None:
    await asyncio.Event().wait()


async def _tick() -> None:
    await asyncio.sleep(0.01)
