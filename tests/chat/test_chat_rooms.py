"""Leaving a room (the bridge proposes the Remove, a member commits it, everyone is
told), and the banner of a relayed room (not end-to-end encrypted)."""

from __future__ import annotations

import asyncio
import secrets

from bridge.app.services.bridge import BridgeService, RoomPair
from bridge.chat.app import RELAY_BANNER, ChatApp
from bridge.chat.membership import short
from tests.chat.conftest import Accounts, eventually, only_room, shows, submit


async def test_leave_is_announced(accounts: Accounts) -> None:
    bob = await accounts.started(accounts.new("matrix", "bob"))
    carol = await accounts.started(accounts.new("xmpp", "carol"))
    app = ChatApp(await accounts.client(accounts.new("xmpp", "alice")))
    async with app.run_test(size=(150, 50)) as pilot:
        await shows(app, "● connected as")
        await submit(pilot, "/create farewell")
        await submit(pilot, f"/add {short(bob.me)}")
        await shows(app, f"you added {short(bob.me)}")
        await submit(pilot, f"/add {short(carol.me)}")
        await eventually(lambda: carol.rooms, "Carol to join")
        await carol.leave(only_room(carol))
        await shows(app, f"{short(carol.me)} left the room (the bridge proposed the "
                         f"removal; ")
        group_id = only_room(carol).group_id
        await eventually(lambda: not carol.member.group(group_id).active,
                         "Carol's removal to reach her")
        assert any("you left the group" in getattr(item, "text", "")
                   for item in only_room(carol).timeline.items)
        await eventually(lambda: set(only_room(bob).roster.leaves.values()) ==
                         {bob.me, app.chat.me}, "Bob's roster without Carol")


async def test_relayed_room_shows_a_banner(accounts: Accounts,
                                           bridge: BridgeService) -> None:
    owner = await accounts.started(accounts.new("matrix", "owner"))
    room = await owner.create("relayed")
    xmpp_room = f"relay{secrets.token_hex(3)}@{accounts.prosody.component_name}"
    await bridge.attach_rooms([RoomPair(xmpp_room, room.room_id, relay=True)])
    app = ChatApp(await accounts.client(accounts.new("xmpp", "alice")))
    async with app.run_test(size=(150, 50)) as pilot:
        await shows(app, "● connected as")
        await key_packages_published(bridge, app.chat.me)
        await owner.add(room, short(app.chat.me))
        await eventually(lambda: app.chat.rooms, "Alice to join from the Welcome")
        await submit(pilot, f"/room {xmpp_room}")
        await shows(app, RELAY_BANNER)


async def key_packages_published(bridge: BridgeService, identity: str,
                                 timeout: float = 30.0) -> None:
    """Wait until ``identity``'s client has published KeyPackages (it does once it is
    connected and its key attested), so that it can be added."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await bridge.store.list_key_packages(identity):
        assert asyncio.get_running_loop().time() < deadline, f"{identity} published nothing"
        await asyncio.sleep(0.05)
