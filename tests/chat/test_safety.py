"""Safety numbers and fingerprints: two members of one epoch see the same ones."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.hub import Hub, HubIdentity
from bridge.hub.store import SqliteStore
from bridge.member import Member, group_safety_number, member_list, safety_number
from transports.memory import MemoryNetwork


def test_format_is_60_digits_in_groups_of_5() -> None:
    number = safety_number(b"\x01" * 32)
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", number)
    assert safety_number(b"\x01" * 32) == number
    assert safety_number(b"\x02" + b"\x01" * 31) != number


async def test_members_agree_and_the_number_changes_with_the_epoch(tmp_path: Path) -> None:
    network = MemoryNetwork()
    store = await SqliteStore.open(tmp_path / "hub.db")
    network.attach(Hub(store, HubIdentity.generate("hub.example.org"), network))
    people = []
    for name in ("alice", "bob"):
        member = Member(network.link(f"xmpp:{name}@example.org"))
        network.register(member.identity, member)
        await member.start()
        people.append(member)
    alice, bob = people
    try:
        await bob.publish_key_packages(1)
        group_id = await alice.create_group()
        before = group_safety_number(alice.group(group_id))
        await alice.add_members(group_id, [bob.identity])
        await network.settle()
        await bob.idle()
        assert group_safety_number(alice.group(group_id)) == \
            group_safety_number(bob.group(group_id)) != before
        seen_by_alice = member_list(alice.group(group_id), alice.trust.anchor)
        seen_by_bob = member_list(bob.group(group_id), bob.trust.anchor)
        assert {m.identity for m in seen_by_alice} == {alice.identity, bob.identity}
        assert [(m.identity, m.fingerprint) for m in seen_by_alice] == \
            [(m.identity, m.fingerprint) for m in seen_by_bob]
        assert [m.own for m in seen_by_alice] == [True, False]
        assert [m.own for m in seen_by_bob] == [False, True]
    finally:
        for member in people:
            await member.stop()
        await network.close()
        await store.close()
