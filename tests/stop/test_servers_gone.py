"""SIGTERM when Prosody, Synapse (and PostgreSQL, for that store) are already gone.

The bridge process (``mls-bridge run``, asyncio debug mode, ResourceWarnings as errors)
serves an MLS group across an XMPP and a Matrix room and a relay-mode room with a plain
XMPP client; a message for the relay is under way when every server is killed
(SIGKILL; PostgreSQL in immediate mode). Then SIGTERM: the bridge exits 0 within
``shutdown_timeout`` + 5 s, names what it could not do, and leaves no resource behind.
The servers come back, the bridge starts again on the same store, and everyone goes on:
a commit, messages both ways, the plain client's puppet reading and writing; nothing
accepted before the stop is lost or delivered twice, and the store's log is whole.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from benchmarks.bridge_run import (
    BridgeProcess,
    Pair,
    Person,
    PlainXmpp,
    bridged_group,
    connect_xmpp,
    converge,
    hub_joined,
    matrix_person,
    matrix_room,
    plain_xmpp,
    until,
    write_config,
    xmpp_person,
)
from benchmarks.crash import check_graceful_stop, relay_group, verify_log
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.identities import relay_identity
from tests.stop.conftest import StoreBackend

SHUTDOWN = 5.0  # the bridge's shutdown_timeout (s)


async def say(person: Person, group_id: bytes, what: str) -> str:
    text = f"{what} {secrets.token_hex(3)}"
    await asyncio.wait_for(person.member.send_text(group_id, text), 90)
    return text


def texts_from(person: Person, group_id: bytes, sender: str) -> list[str]:
    return [t for s, t in person.texts(group_id) if s == sender]


async def everyone_read(people: Sequence[Person], group_id: bytes,
                        said: dict[str, list[str]]) -> None:
    """Each person reads, exactly once and in order, what each other person said."""
    for reader in people:
        for writer in people:
            if writer is not reader:
                await until(partial(_has_read, reader, group_id, writer.identity,
                                    said[writer.identity]),
                            f"{reader.identity} reading {writer.identity}", 90, poll=0.1)


def _has_read(reader: Person, group_id: bytes, writer: str, wanted: list[str]) -> bool:
    return texts_from(reader, group_id, writer) == wanted


def plain_read(plain: PlainXmpp) -> list[str]:
    return [body for _, body in plain.messages]


async def test_sigterm_with_the_servers_gone_exits_0_and_the_state_goes_on(
        prosody_server: ProsodyServer, synapse_server: SynapseServer,
        store_backend: StoreBackend, tmp_path: Path) -> None:
    hub_user, hub_password = synapse_server.new_user("gonehub")
    x = await xmpp_person(prosody_server, "gonex_")
    m = await matrix_person(synapse_server, "gonem_", hub_user, request_timeout=90.0)
    plain = await plain_xmpp(prosody_server, "goneplain")
    people = [x, m]
    component = prosody_server.component_name
    pairs = [Pair("chat", f"gone{secrets.token_hex(3)}@{component}",
                  await matrix_room(m, hub_user), admins=(x.identity,)),
             Pair("relay", f"gonerelay{secrets.token_hex(3)}@{component}",
                  await matrix_room(m, hub_user), relay=True)]
    config = write_config(tmp_path / "bridge.toml", db=tmp_path / "bridge.db",
                          log_file=tmp_path / "bridge.log", prosody=prosody_server,
                          synapse=synapse_server, hub_user=hub_user,
                          hub_password=hub_password, pairs=pairs,
                          store_url=store_backend.url, shutdown_timeout=SHUTDOWN)
    bridge = BridgeProcess(config, tmp_path / "bridge.log", debug=True)
    servers_down = False
    try:
        await bridge.start()
        for pair in pairs:
            await until(partial(hub_joined, m, pair.matrix_room, hub_user),
                        "the bot joining", 30)
        await m.member.publish_key_packages(1)
        group_id = await bridged_group(pairs[0], x, [m])
        relay = await relay_group(pairs[1], m, plain)
        said = {x.identity: [await say(x, group_id, "before")],
                m.identity: [await say(m, group_id, "before")]}
        await everyone_read(people, group_id, said)
        relayed = [await say(m, relay.group_id, "relayed before")]
        await until(lambda: relayed[-1] in plain_read(plain), "the relay re-emitting", 30)

        # Synapse dies first: what the bridge sends there now hangs. x's message is
        # answered once logged, but its fan-out into the Matrix room waits in the hub's
        # queue for the group's Matrix lane; the plain client's line waits in the relay
        # (its input job, or its re-emit into the Matrix room) when the other servers
        # die too
        servers_down = True
        synapse_server.kill()
        during = asyncio.ensure_future(say(x, group_id, "during"))
        plain.say(pairs[1].xmpp_room, "plain during")
        await asyncio.sleep(1.0)
        prosody_server.kill()
        store_backend.kill()
        code = bridge.stop(timeout=SHUTDOWN + 30)
        assert code == 0, bridge.tail()
        assert bridge.stop_seconds < SHUTDOWN + 5, bridge.stop_seconds
        assert not bridge.leaks(), bridge.leaks()
        report = bridge.stop_report()
        assert report["stopped"] is not None, bridge.tail()
        cut = [(e["phase"], e["step"]) for e in report["cut"]]
        assert ("drain", "hub fan-out") in cut, report
        named = [str(e["what"]) for e in report["not_done"]]
        fanout = f"hub fan-out of group {group_id.hex()[:16]} to matrix: "
        assert any(what.startswith(fanout) and what.endswith("still queued at the end of "
                                                             "the drain") for what in named), named
        assert any(what.startswith(fanout) and "dropped at stop (in the hub log" in what
                   for what in named), named  # closed after the puppets, before the networks
        assert any(what.startswith("relay: ") and plain.identity in what
                   for what in named), named  # its input or its re-emit: never its text
        outcome = (await asyncio.gather(during, return_exceptions=True))[0]

        store_backend.start_again()
        prosody_server.start()
        synapse_server.start()
        servers_down = False
        await bridge.start()
        await connect_xmpp(x.client, prosody_server)
        await connect_xmpp(plain.client, prosody_server)
        await plain.join(pairs[1].xmpp_room, "plain")

        # every member goes on: a commit, then messages both ways; x's message in
        # flight at the stop was stored (then m reads it, once) or not
        await asyncio.wait_for(x.member.update(group_id), 120)
        after = await say(x, group_id, "after")
        said[m.identity].append(await say(m, group_id, "after"))
        await until(lambda: after in texts_from(m, group_id, x.identity),
                    "m reading x after the restart", 90, poll=0.1)
        stored = [t for t in texts_from(m, group_id, x.identity) if t.startswith("during ")]
        assert isinstance(outcome, BaseException) or stored == [outcome], (outcome, stored)
        said[x.identity] += [*stored, after]
        await everyone_read(people, group_id, said)
        epoch, _ = await converge(people, group_id, timeout=90)

        # and so does the plain client's puppet (its leaf in the relay's namespace),
        # both ways
        puppet = relay_identity(plain.identity)
        line = f"plain after {secrets.token_hex(3)}"
        plain.say(pairs[1].xmpp_room, line)
        await until(lambda: line in texts_from(m, relay.group_id, puppet),
                    "the MLS member reading the plain client", 90, poll=0.1)
        relayed.append(await say(m, relay.group_id, "relayed after"))
        await until(lambda: relayed[-1] in plain_read(plain),
                    "the plain client reading the MLS member", 90, poll=0.1)
        assert not [t for t, n in Counter(plain_read(plain)).items() if n > 1]
        from_plain = texts_from(m, relay.group_id, puppet)
        assert from_plain in ([line], ["plain during", line]), from_plain
        relay_epoch, _ = await converge([m], relay.group_id)

        check_graceful_stop(bridge)
        log = await verify_log(store_backend.url, group_id, epoch)
        logged = sum(1 for entry in log if entry.kind == "application")
        assert logged == sum(len(texts) for texts in said.values())
        await verify_log(store_backend.url, relay.group_id, relay_epoch)
    finally:
        if servers_down:
            store_backend.start_again()
            prosody_server.start()
            synapse_server.start()
        for person in people:
            await person.close()
        await plain.close()
        bridge.stop()
