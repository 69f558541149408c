"""The device store: created 0600 (and its log), one process at a time, and a member
resumes from it after a restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import StoreError
from bridge.hub import Hub, HubIdentity
from bridge.hub.store import SqliteStore
from bridge.member import Member, SqliteMemberStore
from transports.interface import Inbound, Outbound
from transports.memory import MemoryNetwork


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_created_private_with_its_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "mls-bridge" / "alice.sqlite3"
    old = os.umask(0)  # the widest umask: the modes must not come from it
    try:
        store = await SqliteMemberStore.open(path)
        await store.save("k", b"v")
    finally:
        os.umask(old)
    try:
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700
        for extra in path.parent.iterdir():
            assert _mode(extra) == 0o600, extra.name
    finally:
        await store.close()


async def test_an_existing_wide_file_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "dev.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = await SqliteMemberStore.open(path)
    await store.close()
    assert _mode(path) == 0o600


async def test_a_second_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dev.sqlite3"
    store = await SqliteMemberStore.open(path)
    try:
        with pytest.raises(StoreError, match="in use"):
            await SqliteMemberStore.open(path)
    finally:
        await store.close()
    again = await SqliteMemberStore.open(path)
    await again.close()


async def test_key_value_contract(tmp_path: Path) -> None:
    store = await SqliteMemberStore.open(tmp_path / "d.sqlite3")
    try:
        assert await store.load("a") is None
        await store.save("group:1", b"x")
        await store.save("group:2", b"y")
        await store.save("kp:1", b"z")
        await store.save("group:1", b"x2")
        assert await store.keys("group:") == ["group:1", "group:2"]
        assert await store.load("group:1") == b"x2"
        await store.delete("group:1")
        assert await store.keys("group:") == ["group:2"]
        assert await store.keys("group_") == []  # a prefix, not a LIKE pattern
    finally:
        await store.close()


async def test_a_member_resumes_its_groups_and_keys(tmp_path: Path) -> None:
    network = MemoryNetwork()
    hub_store = await SqliteStore.open(tmp_path / "hub.db")
    network.attach(Hub(hub_store, HubIdentity.generate("hub.example.org"), network))
    path = tmp_path / "alice.sqlite3"

    async def started(store: SqliteMemberStore) -> Member:
        member = Member(network.link("xmpp:alice@example.org"), store=store)
        network.register(member.identity, member)
        await member.start()
        return member

    store = await SqliteMemberStore.open(path)
    alice = await started(store)
    group_id = await alice.create_group()
    await alice.publish_key_packages(2)
    signature = await store.load("signature")
    authenticator = alice.group(group_id).epoch_authenticator()
    await alice.stop()
    network.unregister(alice.identity, alice)
    await store.close()

    store = await SqliteMemberStore.open(path)
    again = await started(store)
    try:
        assert again.group_ids() == [group_id]
        assert again.group(group_id).epoch_authenticator() == authenticator
        assert await store.load("signature") == signature
        assert len(await store.keys("kp:")) == 2
        await again.send_text(group_id, "after the restart")
    finally:
        await again.stop()
        await store.close()
        await network.close()
        await hub_store.close()


async def test_request_ids_do_not_repeat_after_a_restart(tmp_path: Path) -> None:
    """A transport may deduplicate requests by sender and id (the Matrix bot does, for
    a week): a restarted device must not reuse the ids of its previous run."""
    network = MemoryNetwork()
    hub_store = await SqliteStore.open(tmp_path / "hub.db")
    network.attach(Hub(hub_store, HubIdentity.generate("hub.example.org"), network))
    seen: list[list[str]] = []
    try:
        for _ in range(2):
            store = await SqliteMemberStore.open(tmp_path / "dev.sqlite3")
            link = network.link("xmpp:alice@example.org")
            ids: list[str] = []
            forward = link.request

            async def recording(request: Inbound, forward: Any = forward,
                                ids: list[str] = ids) -> Outbound:
                ids.append(request.request_id)
                return await forward(request)

            link.request = recording  # type: ignore[method-assign]
            member = Member(link, store=store, device="laptop")
            await member.start()
            await member.publish_key_packages(2)
            await member.stop()
            await store.close()
            seen.append(ids)
        assert len(seen[0]) == 4  # hub-info, attest (an X.509 member), two publications
        assert not set(seen[0]) & set(seen[1])
    finally:
        await network.close()
        await hub_store.close()
