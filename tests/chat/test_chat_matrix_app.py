"""The app on Matrix (Bob) with XMPP peers: a Matrix room made by /create, members and
fingerprints, the safety number both sides compute, a second device of one account as
a second leaf joining by external commit, and bad input that changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.chat import messages
from bridge.chat.app import ChatApp
from bridge.chat.membership import short
from bridge.member import fingerprint, group_safety_number
from tests.chat.conftest import Accounts, eventually, only_room, screen, shows, submit


async def test_matrix_app_members_safety_and_devices(accounts: Accounts) -> None:
    bob_account = accounts.new("matrix", "bob")
    alice = await accounts.started(accounts.new("xmpp", "alice"))
    app = ChatApp(await accounts.client(bob_account))
    async with app.run_test(size=(150, 50)) as pilot:
        bob = app.chat
        await shows(app, "● connected as")
        await submit(pilot, "/create Bob's room")
        await shows(app, "you created Bob's room")
        room = only_room(bob)
        assert room.room_id.startswith("!")
        await submit(pilot, f"/add {short(alice.me)}")
        await eventually(lambda: alice.rooms, "Alice to join")
        await messages.text(alice, only_room(alice), "hi from XMPP")
        await shows(app, "hi from XMPP")

        await submit(pilot, "/members")
        text = await shows(app, "2 members of Bob's room")
        group = bob.member.group(room.group_id)
        for _, leaf in group.members():
            assert fingerprint(leaf.signature_key) in text
        assert f"{short(bob.me)} (you), leaf 0" in text

        await submit(pilot, "/safety")
        text = await shows(app, "safety number of Bob's room")
        number = re.search(r"epoch \d+:\n.*? ((?:\d{5} ){11}\d{5})", text)
        assert number is not None, text
        await alice.member.idle()
        assert number.group(1) == group_safety_number(
            alice.member.group(only_room(alice).group_id))

        # a second device of Bob's account: its own store, its own leaf
        second = await accounts.client(accounts.new_device(bob_account, "bob2"))
        await second.start()
        await second.join(room.room_id)
        await shows(app, f"{short(bob.me)} joined by external commit")
        await submit(pilot, "/members")
        text = await shows(app, "3 members of Bob's room")
        assert text.count(f"{short(bob.me)}") >= 3
        await messages.text(second, only_room(second), "from my other device")
        await shows(app, "from my other device")

        # a room Bob was not invited to: the homeserver's refusal, nothing changes
        stranger = await accounts.started(accounts.new("matrix", "stranger"))
        private = await stranger.create("private")
        await submit(pilot, f"/join {private.room_id}")
        await shows(app, f"! cannot enter {private.room_id}:")
        assert len(bob.rooms) == 1

        # unread counts: a message in a room that is not on the screen
        await stranger.add(private, short(bob.me))
        await eventually(lambda: len(bob.rooms) == 2, "Bob in the private room")
        await messages.text(stranger, private, "psst")
        await shows(app, "private (")
        # the hub answers once "psst" is logged; its delivery follows (bridge.hub.fanout)
        await eventually(
            lambda: "(1)" in screen(app).split("\n")[2] + screen(app).split("\n")[3],
            "the private room's unread count", app=app)


async def test_bad_input_changes_nothing(accounts: Accounts, tmp_path: Path) -> None:
    nobody = accounts.new("xmpp", "nokeys")  # an account that never opened a client
    app = ChatApp(await accounts.client(accounts.new("xmpp", "dave")))
    async with app.run_test(size=(150, 50)) as pilot:
        chat = app.chat
        await shows(app, "● connected as")
        await submit(pilot, "hello?")
        await shows(app, "! no room selected")
        await submit(pilot, "/join nosuchroom")
        await shows(app, "! there is no MLS group in nosuchroom@")
        assert chat.rooms == {} and chat.waiting == {}
        await submit(pilot, "/frobnicate")
        await shows(app, "! unknown command /frobnicate")
        await submit(pilot, "/create tests")
        await shows(app, "you created tests@")
        room = only_room(chat)
        epoch = chat.member.group(room.group_id).epoch
        await submit(pilot, f"/add {nobody.address}")
        await shows(app, f"! {nobody.address} has no KeyPackage")
        await submit(pilot, "/add not an address")
        await shows(app, "is not a user address")
        await submit(pilot, "/remove erin@localhost")
        await shows(app, "! erin@localhost is not a member of tests@")
        big = tmp_path / "big.bin"
        big.write_bytes(b"\0" * (4 * 1024 * 1024 + 1))
        await submit(pilot, f"/file {big}")
        await shows(app, "! big.bin is 4194305 bytes: over the server's limit")
        await submit(pilot, f"/file {tmp_path / 'missing.txt'}")
        await shows(app, "! no such file")
        await submit(pilot, "/edit 7 nothing there")
        await shows(app, "! there is no message 7 in tests@")
        assert chat.member.group(room.group_id).epoch == epoch
        assert room.timeline.messages == []
        await submit(pilot, "/help")
        await shows(app, "/react N EMOJI")
        assert "Traceback" not in screen(app)
