"""The relay's puppet secrets live in their own file, never in the hub's store
(bridge/relay/secrets_file.py; finding of issue 16: the puppets' signing keys and epoch
secrets sat in the hub store, which docs/ARCHITECTURE.md says holds only public
metadata). The file is created 0600 and atomically, an unsafe one is refused, and
puppets an earlier version kept in the hub store's cursors are moved out on start --
and, since their leaves named the legacy user's own network identity, retired by the
hub (reason "replaced") so the user gets a ``relay+`` puppet instead."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from bridge.errors import NotMember
from bridge.hub.removals import REPLACED, Removal
from bridge.member import Member, MemoryMemberStore
from bridge.relay import PuppetSecrets, Relay
from bridge.relay.secrets_file import SecretsFileError, SecretsMemberStore
from bridge.relay.upgrade import OLD_PUPPETS_CURSOR, migrate_from_cursors
from mls.codec import decode
from mls.messages.framing import MLSMessage, PublicMessage
from tests.bridge.conftest import Harness
from transports.interface import DeliverySink

DAVE = "xmpp:dave@example.org"


class NoRouting:
    """:class:`bridge.relay.routing.LocalRouting` for a relay that runs no puppet."""

    def __init__(self) -> None:
        self.local: dict[str, DeliverySink] = {}

    def add_local(self, identity: str, sink: DeliverySink) -> None:
        self.local[identity] = sink

    def remove_local(self, identity: str) -> None:
        self.local.pop(identity, None)


async def test_the_secrets_file_is_created_0600_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "relay-secrets"
    secrets = await PuppetSecrets.open(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []
        store = SecretsMemberStore(secrets, "relay+xmpp:dave@example.org")
        await store.save("signature", b"\x01" * 32)
        await secrets.add_puppet("relay+xmpp:dave@example.org")
    finally:
        await secrets.close()
    secrets = await PuppetSecrets.open(path)  # reopened: what was saved is there
    try:
        store = SecretsMemberStore(secrets, "relay+xmpp:dave@example.org")
        assert await store.load("signature") == b"\x01" * 32
        assert await store.keys("") == ["signature"]
        assert await secrets.puppets() == ["relay+xmpp:dave@example.org"]
        await secrets.remove_puppet("relay+xmpp:dave@example.org")
        assert (await secrets.puppets(), await store.keys("")) == ([], [])
    finally:
        await secrets.close()
    os.chmod(path, 0o640)  # readable by the group: refused, and left as it is
    with pytest.raises(SecretsFileError, match="chmod 600"):
        await PuppetSecrets.open(path)
    with pytest.raises(SecretsFileError):
        await PuppetSecrets.open(tmp_path / "missing" / "relay-secrets")


async def old_puppet(harness: Harness) -> tuple[Member, bytes, dict[str, bytes]]:
    """Alice's group with dave's puppet as versions before the relay namespace made it:
    a member named by dave's own XMPP identity, whose keys end up in the hub store's
    cursors in their layout (``relay:puppets``; base64 values under
    ``relay:<identity>:`` with a ``#keys`` index)."""
    alice = await harness.member("alice")
    kept = MemoryMemberStore()
    dave = await harness.member("dave", store=kept)
    group_id = await alice.create_group()
    await alice.add_members(group_id, [DAVE])
    await harness.quiesce()
    assert dave.group(group_id).active
    await dave.stop()
    harness.members.remove(dave)
    saved = {key: value for key in await kept.keys("")
             if (value := await kept.load(key)) is not None}
    store = harness.store
    assert store is not None
    for key, value in saved.items():
        await store.set_cursor(f"relay:{DAVE}:{key}", base64.b64encode(value).decode())
    await store.set_cursor(f"relay:{DAVE}:#keys", json.dumps(sorted(saved)))
    await store.set_cursor(OLD_PUPPETS_CURSOR, json.dumps([DAVE]))
    return alice, group_id, saved


async def test_old_puppets_move_out_of_the_hub_store_and_are_retired(
        harness: Harness, tmp_path: Path) -> None:
    """On start the relay moves the old puppet out of the hub's cursors; its leaf --
    exactly that leaf, by its signature key -- is removed by the hub, saying why
    (``replaced``, by the puppet's ``relay+`` successor), and its secrets are forgotten.
    Nothing of it is left in the hub store's files."""
    alice, group_id, saved = await old_puppet(harness)
    store, hub = harness.store, harness.hub
    assert store is not None and hub is not None
    secrets = await PuppetSecrets.open(tmp_path / "relay-secrets")
    relay = Relay(store, hub, NoRouting(), secrets=secrets)
    try:
        await relay.start()
        assert await store.get_cursor(OLD_PUPPETS_CURSOR) == ""
        for key in [*saved, "#keys"]:
            assert await store.get_cursor(f"relay:{DAVE}:{key}") == ""
        assert await secrets.puppets() == []
        (queued,) = await store.queued_proposals(group_id, alice.group(group_id).epoch)
        assert queued.sender == "hub"
        body = decode(MLSMessage, queued.payload).body
        assert isinstance(body, PublicMessage)
        assert Removal.decode(body.content.authenticated_data) == \
            Removal(REPLACED, "relay+" + DAVE)
        with pytest.raises(NotMember):  # another key: no such leaf
            await hub.remove_member(group_id, DAVE, signature_key=b"\x00" * 32)
        await harness.quiesce()
        assert await alice.commit_pending(group_id)
        await harness.quiesce()
        assert [m.identity for m in await store.get_members(group_id)] == [alice.identity]
    finally:
        await relay.stop()
        await secrets.close()
    await harness.stop_hub()
    hub_files = b"".join(p.read_bytes() for p in tmp_path.iterdir()
                         if p.name.startswith("hub.db"))
    for value in saved.values():
        assert base64.b64encode(value) not in hub_files


async def test_the_migration_copies_before_it_blanks(harness: Harness,
                                                     tmp_path: Path) -> None:
    """A crash between the copy and the blanking repeats the copy: same result."""
    _, _, saved = await old_puppet(harness)
    store = harness.store
    assert store is not None
    secrets = await PuppetSecrets.open(tmp_path / "relay-secrets")
    try:
        for _ in range(2):  # the second run is the run after a crash mid-way
            await secrets.import_puppet(DAVE, {k: v for k, v in saved.items()})
        assert await migrate_from_cursors(store, secrets) == [DAVE]
        dave = SecretsMemberStore(secrets, DAVE)
        assert {key: await dave.load(key) for key in await dave.keys("")} == saved
        assert await secrets.puppets() == [DAVE]
        assert await migrate_from_cursors(store, secrets) == []  # nothing left to move
    finally:
        await secrets.close()
