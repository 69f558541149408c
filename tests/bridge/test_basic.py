"""A small group end to end: create, add, messages, a lost reply, catch-up."""

from __future__ import annotations

from bridge.hub.store import LogKind
from tests.bridge.conftest import Harness, domain
from transports.interface import Kind, Outbound


async def test_small_group_end_to_end(harness: Harness) -> None:
    alice = await harness.member("alice")
    bob = await harness.member("bob")
    carol = await harness.member("carol")
    group_id = await alice.create_group(
        transport="xmpp", room_id=harness.room("room@mls.example.org", alice))
    seq = await alice.add_members(group_id, [domain("bob"), domain("carol")])
    assert seq == 1
    await harness.quiesce()
    assert {m.group(group_id).epoch_authenticator() for m in (alice, bob, carol)} == {
        alice.group(group_id).epoch_authenticator()}
    sent = await bob.send_text(group_id, "hi")
    await harness.quiesce()
    for member in (alice, carol):
        (got,) = member.received(group_id)
        assert got.content == sent and got.sender == domain("bob")
    assert bob.received(group_id) == []  # its own echo is not a received message

    # Alice's reply is lost after the hub accepted her commit: she finds it in the log.
    harness.network.drop_next_reply(alice.identity)
    await alice.update(group_id)
    await harness.quiesce()
    assert alice.group(group_id).epoch == 2
    assert {m.group(group_id).epoch_authenticator() for m in (alice, bob, carol)} == {
        alice.group(group_id).epoch_authenticator()}
    assert harness.store is not None
    log = await harness.store.log_since(group_id, 0, 100)
    assert [e.kind for e in log] == [LogKind.COMMIT, LogKind.APPLICATION, LogKind.COMMIT]

    # Adding someone already in is a no-op after re-checking.
    assert await carol.add_members(group_id, [domain("bob")]) is None


async def test_inbox_survives_an_unreachable_hub_during_catch_up(harness: Harness) -> None:
    """A delivery ahead of a member's position makes it fetch the log; if the hub is
    unreachable then, the failure is logged and the member keeps applying deliveries."""
    alice, bob, group_id = await harness.alice_and_bob()
    await harness.stop_hub()
    harness.network.request_timeout = 0.05
    ahead = Outbound(Kind.APPLICATION, group_id=group_id, seq=bob.next_seq(group_id) + 3,
                     epoch=1, sender=alice.identity, payload=b"not yet fetched")
    await bob.deliver(ahead)
    await bob.idle()
    assert bob.inbox.running
    await harness.start_hub()
    sent = await alice.send_text(group_id, "after the outage")
    await harness.quiesce()
    assert [r.content for r in bob.received(group_id)] == [sent]
