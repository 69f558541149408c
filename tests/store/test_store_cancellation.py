"""Every Store method, cancelled at each of its database await points, on both backends.

For a method and a fault mode (see ``tests/store/faults.py``) the call is repeated with the
fault at the 1st, 2nd, ... database call it enters, until it completes without reaching
it; each repetition works on keys of its own (a group, user, cursor... named ``#n#``) in
one store. After every cancellation: nothing is left half-open (no transaction, no
connection checked out) and the store still works (a write and a read succeed); the keys'
state is exactly the state before the call or exactly the state after an undisturbed
call (all or nothing, the effect 0 or 1 times); a call that returned or raised a store
error did so as an undisturbed one does; only a cancelled caller sees CancelledError.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.hub.store import (
    LogKind,
    Member,
    PendingWelcome,
    Store,
    StoreError,
    StoreUnavailable,
    StoreUsageError,
    UnknownGroup,
)
from bridge.hub.store.base import load_migrations
from tests.store.conftest import BACKENDS, StoreFactory
from tests.store.faults import (
    Fault,
    FaultInjector,
    Outcome,
    Target,
    assert_nothing_inherited,
    quiesce,
)

SUITE = 1
NOW = 1_700_000_000
MODES = (
    (Target.CALLER, False),
    (Target.CALLER, True),
    (Target.AWAITER, False),
    (Target.AWAITER, True),
)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultInjector]:
    injector = FaultInjector()
    injector.install(monkeypatch)
    yield injector
    injector.release_holds()  # a failed test must not leave a transaction held


@dataclass(frozen=True)
class Keys:
    """The names one repetition works on; ``token`` is what tells repetitions apart."""

    n: int

    @property
    def token(self) -> str:
        return f"#{self.n}#"

    @property
    def gid(self) -> bytes:
        return f"group{self.token}".encode()

    @property
    def other_gid(self) -> bytes:
        return f"other{self.token}".encode()

    def name(self, what: str) -> str:
        return f"{what}{self.token}"

    def ref(self, what: str) -> bytes:
        return self.name(what).encode()

    def same(self, value: object) -> str:
        """``value`` with this repetition's token replaced, comparable across keys."""
        return repr(value).replace(self.token, "#k#")


# -- what a call may change, read back after it --------------------------------------


async def group_view(store: Store, k: Keys) -> object:
    try:
        record = await store.get_group(k.gid)
    except UnknownGroup:
        return "no group"
    queued = [await store.queued_proposals(k.gid, epoch) for epoch in range(record.epoch + 1)]
    welcomes = [
        without_id(welcome)
        for recipient in (k.name("bob"), k.name("carol"))
        for welcome in await store.pending_welcomes(recipient)
    ]
    return (
        record,
        await store.log_since(k.gid, 0, 1000),
        queued,
        await store.get_members(k.gid),
        welcomes,
    )


async def rooms_view(store: Store, k: Keys) -> object:
    return (
        [await store.room_group("xmpp", k.name(f"room{i}")) for i in range(2)],
        await store.group_rooms(k.gid),
    )


async def key_package_view(store: Store, k: Keys) -> object:
    """Alice's KeyPackages, and who the directory remembers as the publisher of each."""
    return (await store.list_key_packages(k.name("alice")),
            [await store.key_package_publisher(k.ref(name))
             for name in ("late", "soon", "lr", "old", "new", "lr2", "more")])


async def cursor_view(store: Store, k: Keys) -> object:
    return await store.get_cursor(k.name("cursor"))


async def seen_view(store: Store, k: Keys) -> object:
    return [await store.is_seen(k.name("scope"), key) for key in ("old", "new", "fresh")]


def without_id(welcome: PendingWelcome) -> tuple[object, ...]:
    """A pending Welcome without its database id (ids are not reused after a rollback)."""
    return (welcome.recipient, welcome.group_id, welcome.epoch, welcome.commit_seq,
            welcome.welcome)  # fmt: skip


async def faults_view(store: Store, k: Keys) -> object:
    """The group's bans and who reported its commit at seq 1."""
    try:
        return await store.bans(k.gid), await store.fault_reporters(k.gid, 1)
    except UnknownGroup:
        return "no group"


async def affiliations_view(store: Store, k: Keys) -> object:
    return (await store.room_affiliations()).get(k.name("room0"))


async def since_view(store: Store, k: Keys) -> object:
    return [await store.member_since(k.gid, who) for who in ("alice", "bob", "dave")]


GROUP, ROOMS, KEY_PACKAGES, CURSOR, SEEN, FAULTS, AFFILIATIONS, SINCE = (
    group_view,
    rooms_view,
    key_package_view,
    cursor_view,
    seen_view,
    faults_view,
    affiliations_view,
    since_view,
)

# -- preconditions -----------------------------------------------------------------------

MEMBERS = [Member(0, "alice"), Member(1, "bob")]


async def nothing(store: Store, k: Keys) -> Any:
    return None


async def group(store: Store, k: Keys) -> Any:
    await store.create_group(k.gid, SUITE, group_info=b"gi0", ratchet_tree=b"tree0",
                             hub_state=b"hs0", members=MEMBERS)  # fmt: skip


async def busy_group(store: Store, k: Keys) -> Any:
    """A group at epoch 0 with messages, two queued proposals and an attached room."""
    await group(store, k)
    await store.append_message(k.gid, 0, LogKind.APPLICATION, b"hi", "alice")
    await store.queue_proposal(k.gid, 0, b"ref-1", b"prop-1", "bob")
    await store.queue_proposal(k.gid, 0, b"ref-2", b"prop-2", "alice")
    await store.attach_room("xmpp", k.name("room0"), k.gid)


async def welcomed_group(store: Store, k: Keys) -> Any:
    """A group whose commit left a Welcome for bob and carol; returns its id."""
    await busy_group(store, k)
    await store.accept_commit(k.gid, 0, b"commit-0", hub_state=b"hs1", welcome=b"welcome",
                              welcome_recipients=[k.name("bob"), k.name("carol")])  # fmt: skip
    return (await store.pending_welcomes(k.name("bob")))[0].welcome_id


async def one_recipient_left(store: Store, k: Keys) -> Any:
    welcome_id = await welcomed_group(store, k)
    await store.mark_delivered(welcome_id, k.name("carol"))
    return welcome_id


async def key_packages(store: Store, k: Keys) -> Any:
    user = k.name("alice")
    await store.publish_key_package(user, "phone", SUITE, k.ref("late"), b"kp-late", NOW + 300)
    await store.publish_key_package(user, "phone", SUITE, k.ref("soon"), b"kp-soon", NOW + 100)
    await store.publish_key_package(user, "phone", SUITE, k.ref("lr"), b"kp-lr", NOW + 50, True)
    await store.publish_key_package(user, "phone", SUITE, k.ref("old"), b"kp-old", NOW - 5)


async def last_resort_only(store: Store, k: Keys) -> Any:
    user = k.name("alice")
    await store.publish_key_package(user, "phone", SUITE, k.ref("lr"), b"kp-lr", NOW + 50, True)


async def attached_elsewhere(store: Store, k: Keys) -> Any:
    await group(store, k)
    await store.create_group(k.other_gid, SUITE)
    await store.attach_room("xmpp", k.name("room0"), k.other_gid)


async def cursor_set(store: Store, k: Keys) -> Any:
    await store.set_cursor(k.name("cursor"), "old-position")


async def seen_keys(store: Store, k: Keys) -> Any:
    await store.mark_seen(k.name("scope"), "old", 100)
    await store.mark_seen(k.name("scope"), "new", 5000)


async def reported_group(store: Store, k: Keys) -> Any:
    """A busy group whose commit at seq 1 was reported once, with one ban."""
    await busy_group(store, k)
    await store.add_fault_report(k.gid, 1, k.name("bob"), "membership-tag", NOW)
    await store.ban(k.gid, k.name("mallory"), "fault", NOW)


async def claimable(store: Store, k: Keys) -> Any:
    """A group and alice's KeyPackages, one of which bob already claimed for it."""
    await group(store, k)
    await key_packages(store, k)
    await store.claim_key_package(k.name("alice"), SUITE, NOW, group_id=k.gid,
                                  claimer=k.name("bob"))


async def affiliated(store: Store, k: Keys) -> Any:
    await store.set_affiliation(k.name("room0"), k.name("alice"), "owner")
    await store.set_affiliation(k.name("room0"), k.name("bob"), "member")


async def purge(store: Store, k: Keys) -> None:
    await store.purge_expired(NOW)


async def prune(store: Store, k: Keys) -> None:
    await store.prune_seen(1000)


async def welcomes_of_bob(store: Store, k: Keys) -> object:
    return [without_id(welcome) for welcome in await store.pending_welcomes(k.name("bob"))]


# -- the cases ---------------------------------------------------------------------------

Act = Callable[[Store, Keys, Any], Awaitable[object]]


@dataclass(frozen=True)
class Case:
    name: str
    views: tuple[Callable[[Store, Keys], Awaitable[object]], ...]
    act: Act
    setup: Callable[[Store, Keys], Awaitable[Any]] = nothing
    cleanup: Callable[[Store, Keys], Awaitable[None]] = field(default=nothing)


CASES = [
    Case("create_group", (GROUP,), lambda s, k, _: s.create_group(
        k.gid, SUITE, group_info=b"gi0", ratchet_tree=b"tree0", hub_state=b"hs0",
        members=MEMBERS)),
    Case("create_group/exists", (GROUP,), lambda s, k, _: s.create_group(k.gid, SUITE), group),
    Case("get_group", (GROUP,), lambda s, k, _: s.get_group(k.gid), busy_group),
    Case("delete_group", (GROUP, ROOMS), lambda s, k, _: s.delete_group(k.gid), welcomed_group),
    Case("accept_commit", (GROUP,), lambda s, k, _: s.accept_commit(
        k.gid, 0, b"commit-0", hub_state=b"hs1", group_info=b"gi1", ratchet_tree=b"tree1",
        welcome=b"welcome", welcome_recipients=[k.name("bob"), k.name("carol")],
        sender="alice", covered_proposals=[b"ref-1", b"ref-2"],
        members=[Member(0, "alice"), Member(2, "carol")]), busy_group),
    Case("accept_commit/wrong_epoch", (GROUP,), lambda s, k, _: s.accept_commit(
        k.gid, 3, b"late", hub_state=b"x", members=[]), busy_group),
    Case("accept_commit/not_covered", (GROUP,), lambda s, k, _: s.accept_commit(
        k.gid, 0, b"partial", hub_state=b"x", covered_proposals=[b"ref-2"]), busy_group),
    Case("append_message", (GROUP,), lambda s, k, _: s.append_message(
        k.gid, 0, LogKind.APPLICATION, b"hello", "bob"), busy_group),
    Case("append_message/future_epoch", (GROUP,), lambda s, k, _: s.append_message(
        k.gid, 1, LogKind.APPLICATION, b"early", "bob"), busy_group),
    Case("append_message/epoch_moved", (GROUP,), lambda s, k, _: s.append_message(
        k.gid, 0, LogKind.APPLICATION, b"stale", "bob", at_epoch=1), busy_group),
    Case("log_since", (GROUP,), lambda s, k, _: s.log_since(k.gid, 1, 10), busy_group),
    Case("queue_proposal", (GROUP,), lambda s, k, _: s.queue_proposal(
        k.gid, 0, b"ref-3", b"prop-3", "carol"), busy_group),
    Case("queue_proposal/duplicate", (GROUP,), lambda s, k, _: s.queue_proposal(
        k.gid, 0, b"ref-1", b"again", "carol"), busy_group),
    Case("queued_proposals", (GROUP,), lambda s, k, _: s.queued_proposals(k.gid, 0), busy_group),
    Case("set_members", (GROUP,), lambda s, k, _: s.set_members(
        k.gid, [Member(0, "alice"), Member(3, "dave")]), busy_group),
    Case("get_members", (GROUP,), lambda s, k, _: s.get_members(k.gid), busy_group),
    Case("publish_key_package", (KEY_PACKAGES,), lambda s, k, _: s.publish_key_package(
        k.name("alice"), "laptop", SUITE, k.ref("new"), b"kp-new", NOW + 900), key_packages),
    Case("publish_key_package/last_resort", (KEY_PACKAGES,), lambda s, k, _:
         s.publish_key_package(k.name("alice"), "phone", SUITE, k.ref("lr2"), b"kp-lr2",
                               NOW + 900, True), key_packages),
    # Deletes the old last resort, then finds the ref taken: all of it rolls back.
    Case("publish_key_package/duplicate", (KEY_PACKAGES,), lambda s, k, _:
         s.publish_key_package(k.name("alice"), "phone", SUITE, k.ref("soon"), b"kp-x",
                               NOW + 900, True), key_packages),
    Case("claim_key_package", (KEY_PACKAGES,), lambda s, k, _: s.claim_key_package(
        k.name("alice"), SUITE, NOW), key_packages),
    Case("claim_key_package/last_resort", (KEY_PACKAGES,), lambda s, k, _:
         s.claim_key_package(k.name("alice"), SUITE, NOW), last_resort_only),
    Case("claim_key_package/none", (KEY_PACKAGES,), lambda s, k, _: s.claim_key_package(
        k.name("alice"), SUITE, NOW)),
    Case("list_key_packages", (KEY_PACKAGES,), lambda s, k, _: s.list_key_packages(
        k.name("alice")), key_packages),
    Case("purge_expired", (KEY_PACKAGES,), lambda s, k, _: s.purge_expired(NOW),
         key_packages, purge),
    Case("key_package_publisher", (KEY_PACKAGES,), lambda s, k, _: s.key_package_publisher(
        k.ref("soon")), key_packages),
    Case("attach_room", (ROOMS,), lambda s, k, _: s.attach_room(
        "xmpp", k.name("room1"), k.gid), busy_group),
    Case("attach_room/taken", (ROOMS,), lambda s, k, _: s.attach_room(
        "xmpp", k.name("room0"), k.gid), attached_elsewhere),
    Case("room_group", (ROOMS,), lambda s, k, _: s.room_group(
        "xmpp", k.name("room0")), busy_group),
    Case("group_rooms", (ROOMS,), lambda s, k, _: s.group_rooms(k.gid), busy_group),
    Case("detach_room", (ROOMS,), lambda s, k, _: s.detach_room(
        "xmpp", k.name("room0")), busy_group),
    Case("pending_welcomes", (GROUP,), lambda s, k, _: welcomes_of_bob(s, k), welcomed_group),
    Case("mark_delivered/one_of_two", (GROUP,), lambda s, k, welcome_id: s.mark_delivered(
        welcome_id, k.name("bob")), welcomed_group),
    Case("mark_delivered/last", (GROUP,), lambda s, k, welcome_id: s.mark_delivered(
        welcome_id, k.name("bob")), one_recipient_left),
    Case("get_cursor", (CURSOR,), lambda s, k, _: s.get_cursor(k.name("cursor")), cursor_set),
    Case("set_cursor", (CURSOR,), lambda s, k, _: s.set_cursor(
        k.name("cursor"), "new-position"), cursor_set),
    Case("mark_seen", (SEEN,), lambda s, k, _: s.mark_seen(
        k.name("scope"), "fresh", 3000), seen_keys, prune),
    Case("mark_seen/again", (SEEN,), lambda s, k, _: s.mark_seen(
        k.name("scope"), "old", 3000), seen_keys, prune),
    Case("is_seen", (SEEN,), lambda s, k, _: s.is_seen(k.name("scope"), "new"),
         seen_keys, prune),
    Case("prune_seen", (SEEN,), lambda s, k, _: s.prune_seen(1000), seen_keys, prune),
    Case("schema_version", (), lambda s, k, _: s.schema_version()),
    Case("epoch_proposals", (GROUP,), lambda s, k, _: s.epoch_proposals(k.gid, 0), busy_group),
    Case("add_fault_report", (GROUP, FAULTS), lambda s, k, _: s.add_fault_report(
        k.gid, 1, k.name("carol"), "membership-tag", NOW), reported_group),
    Case("add_fault_report/duplicate", (GROUP, FAULTS), lambda s, k, _: s.add_fault_report(
        k.gid, 1, k.name("bob"), "membership-tag", NOW), reported_group),
    Case("ban", (GROUP, FAULTS), lambda s, k, _: s.ban(k.gid, k.name("eve"), "fault", NOW),
         reported_group),
    Case("ban/again", (GROUP, FAULTS), lambda s, k, _: s.ban(
        k.gid, k.name("mallory"), "fault", NOW), reported_group),
    Case("bans", (FAULTS,), lambda s, k, _: s.bans(k.gid), reported_group),
    Case("fault_reporters", (FAULTS,), lambda s, k, _: s.fault_reporters(k.gid, 1),
         reported_group),
    Case("member_since", (SINCE,), lambda s, k, _: s.member_since(k.gid, "bob"), busy_group),
    Case("publish_key_package/quota", (KEY_PACKAGES,), lambda s, k, _: s.publish_key_package(
        k.name("alice"), "phone", SUITE, k.ref("more"), b"kp-more", NOW + 900, now=NOW,
        max_per_device=3), key_packages),
    Case("claim_key_package/for_group", (KEY_PACKAGES,), lambda s, k, _: s.claim_key_package(
        k.name("alice"), SUITE, NOW, group_id=k.gid, claimer=k.name("carol"),
        max_outstanding=2), claimable),
    Case("claim_key_package/bounded", (KEY_PACKAGES,), lambda s, k, _: s.claim_key_package(
        k.name("alice"), SUITE, NOW, group_id=k.gid, claimer=k.name("carol"),
        max_outstanding=1), claimable),
    Case("set_affiliation", (AFFILIATIONS,), lambda s, k, _: s.set_affiliation(
        k.name("room0"), k.name("bob"), "admin"), affiliated),
    Case("set_affiliation/none", (AFFILIATIONS,), lambda s, k, _: s.set_affiliation(
        k.name("room0"), k.name("bob"), "none"), affiliated),
    Case("room_affiliations", (AFFILIATIONS,), lambda s, k, _: affiliations_view(s, k),
         affiliated),
]  # fmt: skip

# The reads and the refused calls: an undisturbed call leaves the state as it was (every
# other case must change it, or its "0 or 1 times" check would prove nothing).
UNCHANGED = frozenset({
    "create_group/exists", "get_group", "accept_commit/wrong_epoch", "accept_commit/not_covered",
    "append_message/future_epoch", "append_message/epoch_moved", "log_since",
    "queue_proposal/duplicate", "queued_proposals",
    "get_members", "publish_key_package/duplicate", "claim_key_package/last_resort",
    "claim_key_package/none", "list_key_packages", "attach_room/taken", "room_group",
    "group_rooms", "pending_welcomes", "get_cursor", "mark_seen/again", "is_seen",
    "schema_version", "epoch_proposals", "add_fault_report/duplicate", "ban/again", "bans",
    "fault_reporters", "member_since", "publish_key_package/quota", "claim_key_package/bounded",
    "room_affiliations", "key_package_publisher",
})  # fmt: skip


# -- running a case ------------------------------------------------------------------------


async def observe(store: Store, case: Case, k: Keys) -> str:
    return k.same([await view(store, k) for view in case.views])


def result_of(outcome: Outcome, k: Keys) -> str:
    """What the caller got, comparable across keys (errors by type: their text may
    carry an id)."""
    if outcome.error is not None:
        return f"raised {type(outcome.error).__name__}"
    return k.same(outcome.value)


@dataclass(frozen=True)
class Reference:
    """An undisturbed call: state before and after, its result, its database calls."""

    before: str
    after: str
    result: str
    calls: int


async def reference(store: Store, faults: FaultInjector, case: Case, k: Keys) -> Reference:
    context = await case.setup(store, k)
    before = await observe(store, case, k)
    outcome = await faults.run(Fault(10**9, Target.CALLER), lambda: case.act(store, k, context))
    assert not outcome.cancelled
    after = await observe(store, case, k)
    await case.cleanup(store, k)
    return Reference(before, after, result_of(outcome, k), faults.last_entered)


async def still_works(store: Store, k: Keys) -> None:
    await assert_nothing_inherited(store)
    await store.set_cursor(k.name("probe"), "written")
    assert await store.get_cursor(k.name("probe")) == "written"


async def cancel_at_every_await_point(
    store: Store, faults: FaultInjector, case: Case, target: Target, again: bool,
    ref: Reference, numbers: itertools.count[int],
) -> None:  # fmt: skip
    at = 0
    while True:
        at += 1
        fault = Fault(at, target, again)
        k = Keys(next(numbers))
        context = await case.setup(store, k)
        assert await observe(store, case, k) == ref.before
        outcome = await faults.run(fault, lambda: case.act(store, k, context))  # noqa: B023
        await faults.settle(store)
        where = f"{case.name} cancelled {fault} of {ref.calls} calls: {outcome}"
        await still_works(store, k)
        state = await observe(store, case, k)
        assert state in (ref.before, ref.after), f"partial state after {where}"
        if outcome.cancelled:  # (SQLite: the awaiter of its one await is the caller)
            assert target is Target.CALLER or outcome.own_await, \
                f"a caller not cancelled saw it: {where}"
        elif isinstance(outcome.error, StoreUnavailable):
            assert target is Target.AWAITER and outcome.fired, where
        else:
            assert not (target is Target.CALLER and outcome.fired), where
            assert result_of(outcome, k) == ref.result, where
            assert state == ref.after, where
        await case.cleanup(store, k)
        if not outcome.fired:
            break
    # Calls 1..N-1 run as undisturbed ones do, so the N-th is reached iff N <= ref.calls.
    assert at == ref.calls + 1, f"{case.name}: stopped at {at} of {ref.calls} calls"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_cancelled_at_every_await_point(
    faults: FaultInjector, store: Store, case: Case
) -> None:  # faults first: the store's connection is made under the injector
    numbers = itertools.count(1)
    ref = await reference(store, faults, case, Keys(0))
    assert ref.calls >= 3  # at least BEGIN (SQLite: the hand-off), a statement, COMMIT
    assert (ref.before == ref.after) == (case.name in UNCHANGED), ref
    for target, again in MODES:
        await cancel_at_every_await_point(store, faults, case, target, again, ref, numbers)


# -- the finding of issue 14, and the edges of a transaction's life ---------------------


async def test_cancelled_set_cursor_leaves_the_store_usable_300_times(
    store_factory: StoreFactory,
) -> None:
    """Issue 14: ``set_cursor`` cancelled after k event-loop turns, k = 0..299. A cancel
    that landed while BEGIN was in flight used to leave the shared SQLite connection inside
    a transaction, and every later write failed until a restart. Each run: the store must
    still write and read, and the cursor holds the old value or the new one."""
    store = await store_factory.open()
    unusable: list[int] = []
    raised: list[tuple[int, str]] = []  # the cancelled call ended with an error
    previous: str | None = None
    for k in range(300):
        task = asyncio.get_running_loop().create_task(store.set_cursor("relay", f"v{k}"))
        for _ in range(k):
            await asyncio.sleep(0)  # one event-loop turn, not a wait for time
        task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled() and task.exception() is not None:
            raised.append((k, repr(task.exception())))
        try:
            current = await store.get_cursor("relay")
            await store.set_cursor("probe", f"p{k}")
            usable = await store.get_cursor("probe") == f"p{k}"
        except StoreError:
            usable = False
        if not usable:
            unusable.append(k)
            await store.close()
            store = await store_factory.open()
            current = await store.get_cursor("relay")
        assert current in (previous, f"v{k}"), (k, previous, current)
        previous = current
    assert not unusable, f"unusable after {len(unusable)} of 300 cancelled calls: k={unusable}"
    assert not raised, f"{len(raised)} cancelled calls raised: {raised[:5]}"


async def test_a_call_cancelled_before_its_transaction_began_ends_at_once_and_does_nothing(
    store_factory: StoreFactory, faults: FaultInjector
) -> None:
    """While one transaction holds the connection (SQLite's one connection, a pool of one),
    a second call that is cancelled while it waits must not wait for the first to end,
    and must leave no trace."""
    store = await store_factory.open(pool_size=1)
    hold = faults.hold(at=2)  # the first statement after BEGIN
    loop = asyncio.get_running_loop()
    first = loop.create_task(store.set_cursor("first", "done"))
    await hold.reached.wait()
    for k in range(6):
        second = loop.create_task(store.set_cursor("second", f"v{k}"))
        for _ in range(k):
            await asyncio.sleep(0)
        second.cancel()
        for _ in range(20):
            if second.done():
                break
            await asyncio.sleep(0)
        assert second.cancelled(), f"a call cancelled after {k} turns still waits"
    assert not first.done()
    hold.release()
    await first
    assert await store.get_cursor("first") == "done"
    assert await store.get_cursor("second") is None
    await quiesce()
    await assert_nothing_inherited(store)


async def test_a_call_made_while_handling_a_cancellation_runs(store: Store) -> None:
    """Cleanup: a task that catches its own cancellation may still write (only a
    cancellation arriving at the call's await cancels the call)."""
    started = asyncio.Event()

    async def worker() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await store.set_cursor("cleanup", "done")
            raise

    task = asyncio.get_running_loop().create_task(worker())
    await started.wait()
    task.cancel()
    await asyncio.wait((task,))
    assert task.cancelled()
    assert await store.get_cursor("cleanup") == "done"
    await assert_nothing_inherited(store)


@pytest.mark.parametrize("cancel_close", [False, True], ids=["close", "cancelled_close"])
async def test_close_waits_for_the_transaction_in_flight(
    store_factory: StoreFactory, faults: FaultInjector, cancel_close: bool
) -> None:
    """``close()`` refuses new calls at once, never closes the connection under the
    transaction in flight, and closes after it even if the ``close()`` call is cancelled
    (a later ``close()`` waits for that closing)."""
    store = await store_factory.open()
    hold = faults.hold(at=2)
    loop = asyncio.get_running_loop()
    write = loop.create_task(store.set_cursor("matrix", "kept"))
    await hold.reached.wait()
    closing = loop.create_task(store.close())
    await asyncio.sleep(0)
    refused = loop.create_task(store.get_cursor("matrix"))
    await asyncio.sleep(0)
    assert refused.done(), "a call made while closing waits instead of being refused"
    with pytest.raises(StoreUsageError, match="closed"):
        await refused
    assert not closing.done()
    if cancel_close:
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    hold.release()
    await write  # the connection was not closed under it
    await (store.close() if cancel_close else closing)
    with pytest.raises(StoreUsageError, match="closed"):
        await store.set_cursor("matrix", "late")
    reopened = await store_factory.open()
    assert await reopened.get_cursor("matrix") == "kept"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", [Target.CALLER, Target.AWAITER], ids=lambda t: t.value)
async def test_open_cancelled_at_every_await_point(
    request: pytest.FixtureRequest, tmp_path: Path, faults: FaultInjector, target: Target,
    backend: str,
) -> None:  # fmt: skip
    """Opening a new database (pragmas, migrations) cancelled at each database call: the
    next open finds the schema complete or applies it, and the store works."""
    server = request.getfixturevalue("pg_server") if backend == "postgres" else None
    at = 0
    while True:
        at += 1
        factory = StoreFactory(backend, tmp_path / f"open{at}", server)
        (tmp_path / f"open{at}").mkdir()
        await factory.location()  # the PostgreSQL database exists before arming
        outcome = await faults.run(Fault(at, target), factory.open)
        await quiesce()
        if outcome.error is None and not outcome.cancelled:
            assert isinstance(outcome.value, Store)
        else:
            assert outcome.fired and (outcome.cancelled or isinstance(outcome.error, StoreError))
        store = await factory.open()
        assert await store.schema_version() == len(load_migrations(backend))
        await still_works(store, Keys(at))
        await factory.close_all()
        if not outcome.fired:
            break
    assert at > 3
