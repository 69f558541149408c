"""A SEND the hub acts on twice (the Matrix bot marks a to-device request handled in
a transaction after the one that logged it: a SIGKILL between the two makes the
restarted bot act on it again) is answered with its first seq, also when the group's
epoch has moved on since beyond the relayed lag -- refused as stale, its sender would
encrypt it anew and everyone would read it twice. (Found by the crash loop, seed 6009:
an XMPP member received a Matrix member's first message twice.)"""

from __future__ import annotations

from bridge.hub.store import LogKind
from tests.bridge.conftest import Harness
from transports.interface import AGAIN, Inbound, Op, Outbound


async def test_a_send_acted_on_again_epochs_later_is_answered_with_its_seq(
        harness: Harness) -> None:
    alice, bob, group_id = await harness.alice_and_bob("replay@mls.example.org")
    sent: list[Inbound] = []
    request = alice.link.request

    async def recording(inbound: Inbound) -> Outbound:
        if inbound.op == Op.SEND:
            sent.append(inbound)
        return await request(inbound)

    alice.link.request = recording  # type: ignore[method-assign]
    content = await alice.send_text(group_id, "said once")
    await bob.update(group_id)  # the epoch moves on twice: beyond max_epoch_lag (1)
    await bob.update(group_id)
    await harness.quiesce()
    assert harness.store is not None
    logged = [entry for entry in await harness.store.log_since(group_id, 0, 100)
              if entry.kind == LogKind.APPLICATION]
    assert [entry.payload for entry in logged] == [sent[0].payload]

    again = await harness.ask(sent[0])  # the same request, acted on again
    assert (again.ok, again.seq, again.code) == (True, logged[0].seq, AGAIN), again
    after = [entry for entry in await harness.store.log_since(group_id, 0, 100)
             if entry.kind == LogKind.APPLICATION]
    assert after == logged  # nothing appended
    await harness.quiesce()
    assert [r.content for r in bob.received(group_id)] == [content]
