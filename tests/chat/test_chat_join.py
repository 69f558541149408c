"""Joining by a room's address in the app: an external join where the room allows it,
"waiting for an invitation (Welcome)" where the bridge refuses, and a lost connection
that reconnects with backoff and shows its state."""

from __future__ import annotations

import asyncio
import secrets

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.chat import messages
from bridge.chat.app import ChatApp
from bridge.chat.membership import short
from bridge.hub.policy import JoinPolicy
from tests.chat.conftest import Accounts, bodies, eventually, only_room, shows, submit


async def test_join_by_external_commit(accounts: Accounts, bridge: BridgeService) -> None:
    """A configured room pair whose join policy is open: anyone may join by external
    commit, from either network."""
    owner = await accounts.started(accounts.new("matrix", "owner"))
    room = await owner.create("open house")
    xmpp_room = f"open{secrets.token_hex(3)}@{accounts.prosody.component_name}"
    await bridge.attach_rooms([RoomPair(xmpp_room, room.room_id, join=JoinPolicy.OPEN)])
    app = ChatApp(await accounts.client(accounts.new("xmpp", "dave")))
    async with app.run_test(size=(150, 50)) as pilot:
        dave = app.chat
        await shows(app, "● connected as")
        await submit(pilot, f"/join {xmpp_room}")
        await shows(app, f"you joined {xmpp_room} by external commit")
        await eventually(lambda: any(f"{short(dave.me)} joined by external commit" in
                                     getattr(item, "text", "") for item in
                                     only_room(owner).timeline.items),
                         "the owner's notice of Dave's join")
        await submit(pilot, "hello lobby")
        await eventually(lambda: bodies(owner) == ["hello lobby"], "the owner to receive")
        await submit(pilot, f"/join {xmpp_room}")
        await shows(app, f"! you are already in {xmpp_room}")


async def test_refused_join_waits_for_the_welcome(accounts: Accounts) -> None:
    alice = await accounts.started(accounts.new("xmpp", "alice"))
    room = await alice.create("club")  # an unconfigured room: joined by invitation only
    app = ChatApp(await accounts.client(accounts.new("xmpp", "erin")))
    async with app.run_test(size=(150, 50)) as pilot:
        erin = app.chat
        await shows(app, "● connected as")
        await submit(pilot, f"/join {room.room_id}")
        await shows(app, "waiting for an invitation (Welcome)")
        await shows(app, "(waiting)")
        assert erin.rooms == {}
        await alice.add(only_room(alice), short(erin.me))
        await eventually(lambda: erin.rooms, "Erin to join from the Welcome")
        await submit(pilot, f"/room {room.room_id}")
        await shows(app, f"from a Welcome (added by {short(alice.me)})")
        await eventually(lambda: not erin.waiting, "the waiting entry to go")
        await messages.text(alice, only_room(alice), "welcome, Erin")
        await shows(app, "welcome, Erin")


async def test_lost_connection_reconnects(accounts: Accounts) -> None:
    alice = await accounts.started(accounts.new("matrix", "alice"))
    app = ChatApp(await accounts.client(accounts.new("xmpp", "frank")))
    async with app.run_test(size=(150, 50)) as pilot:
        frank = app.chat
        await shows(app, "● connected as")
        await submit(pilot, "/create resilient")
        await submit(pilot, f"/add {short(alice.me)}")
        await eventually(lambda: alice.rooms, "Alice to join", app=app)
        shown: list[str] = []
        redraw = app.redraw

        def watching() -> None:  # every status line the screen showed
            redraw()
            shown.append(f"{'●' if frank.status.online else '○'} {frank.status.text}")

        frank.on_change = watching
        await asyncio.to_thread(accounts.prosody.restart)
        await eventually(lambda: any(line.startswith("○ disconnected") and
                                     "reconnecting in" in line for line in shown),
                         "the lost connection on the status line")
        await eventually(lambda: shown[-1].startswith("● connected as"), "the reconnect")
        await pilot.press("ctrl+p")  # the console keeps the connection's history
        await shows(app, "reconnecting in")
        await pilot.press("ctrl+n")
        await shows(app, "you added")
        await submit(pilot, "after the outage")
        await eventually(lambda: bodies(alice) == ["after the outage"],
                         "Alice to receive after the reconnect", timeout=60)
