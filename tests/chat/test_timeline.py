"""A room's timeline from decrypted messages: edits and retractions only by the sender,
reactions aggregated and taken back, replies, history records round trip."""

from __future__ import annotations

from bridge.chat.membership import Roster, Witness, describe, user_uri
from bridge.chat.model import Record, Timeline, decode_record, encode_record
from bridge.member import Content

A, B = "xmpp:alice@example.org", "matrix:u/bob:example.org"


def mid(n: int) -> bytes:
    return bytes([n]) * 16


def rec(seq: int, sender: str, **fields: object) -> Record:
    return Record(seq, sender, 1000.0 + seq, Content(mid(seq), **fields))  # type: ignore[arg-type]


def test_edit_retract_react_and_reply() -> None:
    t = Timeline()
    first = t.apply(rec(1, A, body="hello"))
    assert first is not None and first.number == 1
    t.apply(rec(2, B, body="hi", reply_to=mid(1)))
    t.apply(rec(3, B, body="hijack", replaces=mid(1)))  # not Bob's message: ignored
    assert first.body == "hello" and not first.edited
    t.apply(rec(4, A, body="hello!", replaces=mid(1)))
    assert first.body == "hello!" and first.edited
    t.apply(rec(5, B, reply_to=mid(1), reaction="👍"))
    t.apply(rec(6, A, reply_to=mid(1), reaction="👍"))
    assert first.reactions == {"👍": {A, B}}
    t.apply(rec(7, A, replaces=mid(5)))  # Alice cannot take back Bob's reaction
    assert first.reactions == {"👍": {A, B}}
    t.apply(rec(8, B, replaces=mid(5)))
    assert first.reactions == {"👍": {A}}
    assert t.own_reaction(mid(1), "👍", A) == mid(6)
    t.apply(rec(9, B, replaces=mid(1)))  # Bob cannot retract Alice's message
    assert not first.retracted
    t.apply(rec(10, A, replaces=mid(1)))
    assert first.retracted and first.body is None and first.reactions == {}
    reply = t.message(2)
    assert reply is not None and reply.reply_to == mid(1)
    assert [m.number for m in t.messages] == [1, 2]
    assert t.unread(0, A) == 1 and t.unread(2, A) == 0
    t.apply(rec(1, A, body="hello"))  # a duplicate changes nothing
    assert len(t.messages) == 2


def test_history_record_round_trip() -> None:
    record = rec(42, B, body="kept", reply_to=mid(1))
    assert decode_record(encode_record(record)) == record


def test_membership_notices() -> None:
    before = Roster(3, True, {0: A})
    added = Roster(4, True, {0: A, 1: B})
    assert describe(before, added, A, Witness(A)) == [
        "you added @bob:example.org (Welcome)"]
    assert describe(before, added, B, Witness(B)) == [
        "@bob:example.org joined by external commit"]
    assert describe(added, Roster(5, True, {0: A}), A, Witness(B, hub_removals=True)) == [
        "@bob:example.org left the room (the bridge proposed the removal; "
        "@bob:example.org committed the removal)"]
    assert describe(added, Roster(5, True, {0: A}), B, Witness(A)) == [
        "alice@example.org removed @bob:example.org"]
    assert describe(before, Roster(6, True, {0: A, 1: B}), A, None) == [
        "@bob:example.org was added"]  # two epochs at once: not attributed
    assert describe(added, Roster(5, False), B, Witness(A)) == [
        "you were removed from the group by alice@example.org; the room is read-only now"]
    assert describe(added, Roster(4, False), B, Witness(A, hub_removals=True)) == [
        "you left the group (the bridge's removal, committed by alice@example.org); the "
        "room is read-only now"]
    assert describe(added, Roster(5, True, {0: A, 2: B}), A, Witness(B)) == [
        "@bob:example.org rejoined with a new leaf (external commit, replacing their "
        "old one)"]


def test_user_addresses() -> None:
    assert user_uri("bob@example.org") == "xmpp:bob@example.org"
    assert user_uri("@bob:example.org") == "matrix:u/bob:example.org"
    assert user_uri("xmpp:bob@example.org") == "xmpp:bob@example.org"
    for bad in ("bob", "@bob", "a b@c", "x@y/z"):
        try:
            user_uri(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")
