"""``mls-bridge chat`` driven by Textual's pilot against real Prosody, Synapse and the
bridge: Alice in the app on XMPP, Bob (a second chat client, headless) on Matrix, Carol
on XMPP. Log in, create, add, send, receive, edit, react, a file, removal notices, a
restart that resumes -- and the bridge and the servers never saw a plaintext or the
file's bytes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bridge.app.services.bridge import BridgeService
from bridge.chat import messages
from bridge.chat.app import ChatApp
from bridge.chat.membership import short
from tests.chat.conftest import Accounts, bodies, eventually, only_room, shows, submit


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


async def test_xmpp_app_with_a_matrix_peer(accounts: Accounts, bridge: BridgeService,
                                           tmp_path: Path) -> None:
    alice_account = accounts.new("xmpp", "alice")
    bob = await accounts.started(accounts.new("matrix", "bob"))
    carol = await accounts.started(accounts.new("xmpp", "carol"))
    secret_words = [f"{word}-{secrets.token_hex(4)}" for word in
                    ("hello", "reply", "edited", "restart", "away")]
    picture = os.urandom(50_000) + b"PICTURE-" + secrets.token_hex(8).encode()
    path = tmp_path / "holiday.png"
    path.write_bytes(picture)

    app = ChatApp(await accounts.client(alice_account))
    async with app.run_test(size=(140, 45)) as pilot:
        alice = app.chat
        await shows(app, "● connected as")
        await submit(pilot, "/create lobby")
        await shows(app, "you created lobby@")
        await submit(pilot, f"/add {short(bob.me)}")
        await eventually(lambda: bob.rooms, "Bob to join from the Welcome")
        await shows(app, f"you added {short(bob.me)}")

        await submit(pilot, secret_words[0])  # send
        await eventually(lambda: bodies(bob) == [secret_words[0]], "Bob to receive")
        await messages.text(bob, only_room(bob), secret_words[1], reply_to=1)  # receive
        screen = await shows(app, "[2] ")
        assert secret_words[1] in screen and f"↱ [1] {short(alice.me)}" in screen

        await submit(pilot, f"/edit 1 {secret_words[2]}")  # edit
        await eventually(lambda: bodies(bob)[0] == secret_words[2], "Bob to see the edit")
        assert only_room(bob).timeline.message(1).edited  # type: ignore[union-attr]
        await shows(app, f"{secret_words[2]} (edited)")
        await messages.react(bob, only_room(bob), 1, "👍")
        await shows(app, "👍 1")

        await submit(pilot, f"/file {path}")  # a file, end-to-end encrypted
        await shows(app, "holiday.png (50024 bytes, image/png")
        await eventually(lambda: len(only_room(bob).timeline.messages) == 3,
                         "Bob to receive the file message")
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        saved = await messages.save(bob, only_room(bob), 3, str(downloads))
        assert saved.read_bytes() == picture and saved == downloads / "holiday.png"

        await submit(pilot, f"/add {short(carol.me)}")  # add a member
        await eventually(lambda: carol.rooms, "Carol to join")
        await shows(app, f"you added {short(carol.me)}")
        await submit(pilot, f"/remove {short(carol.me)}")  # Alice owns the room: she may
        await shows(app, f"you removed {short(carol.me)}")
        await eventually(lambda: any(f"{short(alice.me)} removed {short(carol.me)}" in
                                     getattr(item, "text", "")
                                     for item in only_room(bob).timeline.items),
                         "Bob's notice of the removal")
        await eventually(lambda: not carol.member.group(only_room(carol).group_id).active,
                         "Carol to see her removal")
        await submit(pilot, "/quit")
    await accounts.close(alice)

    # restart: the same device store; what Bob says meanwhile comes from the hub's log
    await messages.text(bob, only_room(bob), secret_words[4])
    app = ChatApp(await accounts.client(alice_account))
    async with app.run_test(size=(140, 45)) as pilot:
        await shows(app, "● connected as")
        await shows(app, secret_words[2])  # the history, from the device store
        await shows(app, secret_words[4])  # what arrived while away, from the log
        await submit(pilot, secret_words[3])
        await eventually(lambda: secret_words[3] in bodies(bob), "Bob to receive again")
        await submit(pilot, "/quit")

    hub_files = [p for p in tmp_path.iterdir() if p.name.startswith("bridge.db")]
    server_files = files_under(accounts.prosody.data_dir, accounts.synapse.data_dir)
    blobs = [p.read_bytes() for p in hub_files + server_files]
    assert hub_files and server_files
    for word in secret_words:
        assert not any(word.encode() in blob for blob in blobs), word
    assert not any(picture[-24:] in blob or picture[:4096] in blob for blob in blobs)
