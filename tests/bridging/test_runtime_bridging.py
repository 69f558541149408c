"""Room pairs made at run time, over real Prosody and Synapse (issue 20; docs/SECURITY.md
A5, A22): a moderator of a Matrix room asks with ``!mls bridge <xmpp room>``, the owner
of the XMPP room confirms with the component's XEP-0050 ``bridge`` command, and the
pair works at once -- no restart -- and is still paired after the bridge restarts on
the same store. Non-moderators are refused with a clear answer; ``status`` and
``relay on`` work from either side."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, cast
from xml.etree import ElementTree as ET

import nio
import pytest
from slixmpp import ClientXMPP

from benchmarks.bridge_run import plain_xmpp
from bridge.app.cli import main
from bridge.app.services.bridge import BridgeService
from bridge.app.services.commands import COMMAND_BURST, HELP, RoomCommandService
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.hub.store import SqliteStore, StoredPair
from bridge.relay import NOTICE, OFF_NOTICE
from tests.bridging.conftest import (
    PlainMatrix,
    converge,
    in_group,
    plain_matrix,
    started_again,
    texts,
    until,
)
from tests.cli.conftest import minimal_config, write
from tests.cli.test_config import MATRIX_BOT, ROOM
from tests.matrix.conftest import room_with_hub

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"


async def adhoc(client: ClientXMPP, component: str, node: str, **fields: str
                ) -> tuple[str, str]:
    """Run the component's ad-hoc command ``node`` with ``fields`` (XEP-0050 §3.4:
    execute, get the form, complete it); (note type, note text) of the answer."""
    iq = client.make_iq_set(ito=component)
    ET.SubElement(iq.xml, f"{{{NS_COMMANDS}}}command", {"node": node, "action": "execute"})
    form = await iq.send(timeout=20)
    command = form.xml.find(f"{{{NS_COMMANDS}}}command")
    assert command is not None and command.get("status") == "executing"
    asked = {f.get("var") for f in command.iter(f"{{{NS_DATA}}}field")}
    assert set(fields) <= asked, (fields, asked)
    done = client.make_iq_set(ito=component)
    answer = ET.SubElement(done.xml, f"{{{NS_COMMANDS}}}command", {
        "node": node, "action": "complete", "sessionid": command.get("sessionid", "")})
    submitted = ET.SubElement(answer, f"{{{NS_DATA}}}x", {"type": "submit"})
    for var, value in fields.items():
        field = ET.SubElement(submitted, f"{{{NS_DATA}}}field", {"var": var})
        ET.SubElement(field, f"{{{NS_DATA}}}value").text = value
    result = await done.send(timeout=60)
    note = result.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_COMMANDS}}}note")
    assert result.xml.find(f"{{{NS_COMMANDS}}}command").get("status") == "completed"
    assert note is not None
    return note.get("type", "info"), note.text or ""


def notices(plain: PlainMatrix, room: str) -> list[str]:
    return [e["content"]["body"] for e in plain.messages(room, "m.notice")]


async def say(person: Any, room: str, text: str) -> None:
    sent = await person.client.room_send(room, "m.room.message",
                                         {"msgtype": "m.text", "body": text})
    assert isinstance(sent, nio.RoomSendResponse), sent


async def test_a_pair_made_at_run_time_survives_a_restart(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer, tmp_path: Path) -> None:
    service = bridge_service
    assert service.bot is not None and service.component is not None
    component = prosody_server.component_name
    owner = await people("matrix", "mowner")  # creates the Matrix room: power 100
    xowner = await people("xmpp", "xowner")
    await xowner.member.publish_key_packages(1)
    matrix_room = await room_with_hub(owner, service.bot.user_id)
    xmpp_room = f"rt{secrets.token_hex(3)}@{component}"
    await xowner.plugin.join_room(xmpp_room)  # the first occupant owns the room
    plain_m = await plain_matrix(synapse_server, "mplain")
    plain_x = await plain_xmpp(prosody_server, "xplain")
    try:
        invited = await owner.client.room_invite(matrix_room, plain_m.user_id)
        assert isinstance(invited, nio.RoomInviteResponse), invited
        assert isinstance(await plain_m.client.join(matrix_room), nio.JoinResponse)

        # a non-moderator on either side is refused, clearly
        await say(plain_m, matrix_room, f"!mls bridge {xmpp_room}")
        await until(lambda: any("Refused (not-moderator)" in n
                                for n in notices(plain_m, matrix_room)),
                    "the Matrix refusal")
        kind, text = await adhoc(plain_x.client, component, "bridge", room=xmpp_room,
                                 matrix_room=matrix_room)
        assert kind == "error" and "not-moderator" in text
        assert (await service.store.room_pairs()) == []

        # the Matrix moderator asks, the XMPP owner confirms: paired without a restart
        await say(owner, matrix_room, f"!mls bridge {xmpp_room}")
        await until(lambda: any(n.startswith("Asked.") for n in notices(plain_m, matrix_room)),
                    "the bot's answer")
        kind, text = await adhoc(xowner.client, component, "bridge", room=xmpp_room,
                                 matrix_room=matrix_room)
        assert kind == "info" and text.startswith("Bridged"), text
        (stored,) = await service.store.room_pairs()
        assert (stored.xmpp_room, stored.matrix_room, stored.relay) == \
            (xmpp_room, matrix_room, False)
        assert owner.identity in stored.changed_by and xowner.identity in stored.changed_by

        # a message crosses: the Matrix owner's group gets the XMPP room attached
        group_id = await owner.member.create_group(transport="matrix", room_id=matrix_room)
        await owner.member.add_members(group_id, [xowner.identity])
        await until(lambda: in_group(xowner, group_id), "the XMPP owner in the group")
        first = f"across {secrets.token_hex(4)}"
        await xowner.member.send_text(group_id, first)
        await until(lambda: (xowner.identity, first) in texts(owner, group_id),
                    "the Matrix owner reading the XMPP owner")

        # the bridge restarts on the same store: still paired
        await service.stop()
        fresh = await started_again(service, tmp_path)
        try:
            assert fresh.pairs[("xmpp", xmpp_room)].matrix_room == matrix_room
            assert fresh.component is not None  # the room keeps its owner
            assert fresh.component.rooms.of(xmpp_room, xowner.identity) == "owner"
            kind, text = await adhoc(xowner.client, component, "status", room=xmpp_room)
            assert kind == "info" and f"bridged with {matrix_room}" in text
            assert "run-time command" in text and "end to end" in text
            await converge([owner, xowner], group_id)
            second = f"after the restart {secrets.token_hex(4)}"
            await owner.member.send_text(group_id, second)
            await until(lambda: (owner.identity, second) in texts(xowner, group_id),
                        "the XMPP owner reading the Matrix owner after the restart")

            # relay mode: a moderator of either room; the plain users are refused
            await say(plain_m, matrix_room, "!mls relay on")
            await until(lambda: sum("Refused (not-moderator)" in n
                                    for n in notices(plain_m, matrix_room)) == 2,
                        "the second Matrix refusal")
            await say(owner, matrix_room, "!mls relay on")
            await until(lambda: any(n.startswith("Relay mode on")
                                    for n in notices(plain_m, matrix_room)),
                        "relay mode on")
            assert [p.relay for p in await fresh.store.room_pairs()] == [True]
            assert fresh.pairs[("matrix", matrix_room)].relay
            await until(lambda: any(n == NOTICE for n in notices(plain_m, matrix_room)),
                        "the Matrix room told relay is on")

            # the XMPP owner unbridges its room: relay ends (everyone told), the group
            # goes on in the Matrix room alone, the store forgets the pair
            kind, text = await adhoc(xowner.client, component, "unbridge", room=xmpp_room)
            assert kind == "info" and text.startswith("Unbridged"), text
            assert await fresh.store.room_pairs() == []
            assert ("xmpp", xmpp_room) not in fresh.pairs
            assert await fresh.store.room_group("xmpp", xmpp_room) is None
            assert await fresh.store.room_group("matrix", matrix_room) == group_id
            await until(lambda: any(n == OFF_NOTICE for n in notices(plain_m, matrix_room)),
                        "the Matrix room told relay is off")
            assert group_id not in fresh.relay.groups
            kind, text = await adhoc(xowner.client, component, "status", room=xmpp_room)
            assert (kind, text) == ("info", f"{xmpp_room} is not bridged.")
        finally:
            await fresh.stop()
    finally:
        await plain_m.close()
        await plain_x.close()


async def test_check_config_shows_the_stored_pairs(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``mls-bridge check-config`` lists the pairs the store holds, read without
    writing, and says which one the configuration overrides; a store it cannot read is
    said so, and not created."""
    missing = tmp_path / "missing.db"
    config = write(tmp_path / "bridge.toml", minimal_config(
        tmp_path, store=f'url = "sqlite:///{missing}"'))
    assert await asyncio.to_thread(main, ["check-config", str(config)]) == 0
    assert "run-time room pairs: unknown (cannot read the store" in capsys.readouterr().out
    assert not missing.exists()

    store = await SqliteStore.open(tmp_path / "bridge.db")
    await store.save_room_pair(StoredPair("b@mls.localhost", "!b:localhost", True,
                                          "matrix:u/m:localhost and xmpp:x@localhost", 1))
    await store.save_room_pair(StoredPair("z@mls.localhost", "!abc:localhost", False, "x", 2))
    await store.close()
    before = (tmp_path / "bridge.db").read_bytes()
    config = write(tmp_path / "bridge.toml", minimal_config(
        tmp_path, matrix=MATRIX_BOT, **{"bridge.rooms": ""}) +
        f"[[bridge.rooms]]\n{ROOM}\n")
    assert await asyncio.to_thread(main, ["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "run-time room pairs: 2 (in the store)" in out
    assert ("run-time room: xmpp b@mls.localhost <-> matrix !b:localhost (relay, by "
            "matrix:u/m:localhost and xmpp:x@localhost)") in out
    assert ("run-time room: xmpp z@mls.localhost <-> matrix !abc:localhost (mls, by x) -- "
            "ignored: the configuration pairs one of its rooms") in out
    assert (tmp_path / "bridge.db").read_bytes() == before


async def test_a_flood_of_commands_is_ignored() -> None:
    """Each answer costs a message in the room: a person's commands beyond the burst
    are ignored (an empty answer, which the bot does not send), others are answered."""
    service = RoomCommandService(cast(Any, None))
    answers = [await service.room_command("matrix", "matrix:u/f:x", "!r", ["help"])
               for _ in range(COMMAND_BURST + 3)]
    assert [a.text for a in answers[:COMMAND_BURST]] == [HELP] * COMMAND_BURST
    assert [a.text for a in answers[COMMAND_BURST:]] == [""] * 3
    assert (await service.room_command("xmpp", "xmpp:g@x", "r@c", ["help"])).text == HELP
