"""The member holds its group lock only to read and change state, never across the
hub's round trip: its inbox applies deliveries while its own send or commit is in
flight, and a commit still merges only on acceptance."""

from __future__ import annotations

import asyncio

from bridge.member import Member
from tests.bridge.conftest import Harness, domain
from transports.interface import HubLink, Inbound, Op, Outbound


class HeldLink:
    """``link`` with the requests of one op held (before they reach the hub) until
    :attr:`release` is set; :attr:`waiting` is set when one is held."""

    def __init__(self, link: HubLink, op: str) -> None:
        self.link, self.op = link, op
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    @property
    def identity(self) -> str:
        return self.link.identity

    async def request(self, request: Inbound) -> Outbound:
        if request.op == self.op:
            self.waiting.set()
            await self.release.wait()
        return await self.link.request(request)


def hold(member: Member, op: str) -> HeldLink:
    held = HeldLink(member.link, op)
    member.link = held
    return held


async def group_of_three(harness: Harness) -> tuple[bytes, Member, Member, Member]:
    alice = await harness.member("alice")
    bob = await harness.member("bob")
    carol = await harness.member("carol")
    group_id = await alice.create_group(
        transport="xmpp", room_id=harness.room("locks@mls.example.org", alice))
    await alice.add_members(group_id, [domain("bob"), domain("carol")])
    await harness.quiesce()
    return group_id, alice, bob, carol


async def test_inbox_applies_deliveries_while_own_send_is_in_flight(
        harness: Harness) -> None:
    group_id, alice, bob, carol = await group_of_three(harness)
    held = hold(alice, Op.SEND)
    sending = asyncio.create_task(alice.send_text(group_id, "from alice"))
    await held.waiting.wait()
    from_bob = await bob.send_text(group_id, "from bob")
    await harness.quiesce()
    assert not sending.done()
    assert [r.content for r in alice.received(group_id)] == [from_bob]
    held.release.set()
    mine = await sending
    await harness.quiesce()
    assert [r.content for r in carol.received(group_id)] == [from_bob, mine]
    assert [r.content for r in bob.received(group_id)] == [mine]
    assert [r.content for r in alice.received(group_id)] == [from_bob]  # no echo


async def test_own_commit_in_flight_merges_after_entries_before_it(
        harness: Harness) -> None:
    group_id, alice, bob, carol = await group_of_three(harness)
    held = hold(alice, Op.SUBMIT_COMMIT)
    committing = asyncio.create_task(alice.update(group_id))
    await held.waiting.wait()
    from_bob = await bob.send_text(group_id, "before the commit")
    await harness.quiesce()
    assert [r.content for r in alice.received(group_id)] == [from_bob]
    assert alice.group(group_id).epoch == 1  # not merged while pending
    held.release.set()
    seq = await committing
    await harness.quiesce()
    assert seq == 3
    assert {m.group(group_id).epoch_authenticator() for m in (alice, bob, carol)} == {
        alice.group(group_id).epoch_authenticator()}
    after = await alice.send_text(group_id, "after the commit")
    await harness.quiesce()
    assert [r.content for r in bob.received(group_id)] == [after]


async def test_foreign_commit_while_ours_is_pending_drops_ours_then_retries(
        harness: Harness) -> None:
    group_id, alice, bob, carol = await group_of_three(harness)
    held = hold(alice, Op.SUBMIT_COMMIT)
    committing = asyncio.create_task(alice.update(group_id))
    await held.waiting.wait()
    assert await bob.update(group_id) == 2  # Bob's commit wins epoch 1
    await harness.quiesce()
    assert alice.group(group_id).epoch == 2  # applied; Alice's staged commit dropped
    held.release.set()
    assert await committing == 3  # refused (wrong epoch), re-planned, accepted
    await harness.quiesce()
    assert alice.group(group_id).epoch == 3
    assert {m.group(group_id).epoch_authenticator() for m in (alice, bob, carol)} == {
        alice.group(group_id).epoch_authenticator()}
