"""What the bot sends for hub deliveries (transports/matrix/output.py): a message posted
by its sender into the group's room is not copied there but confirmed by an ack naming
its event, to-device to the group's Matrix members; handed several, the acks for one
room go in one message, in order with the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import nio

from transports.interface import Kind, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.client import MatrixMemberLink
from transports.matrix.output import MatrixOutput

ROOM = "!group:example.org"
GROUP = b"g" * 16


class Posts:
    """What the output sends, in order: room events and (as room "to-device")
    to-device messages to several users."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, dict[str, Any], str]] = []
        self.users: list[tuple[str, ...]] = []

    async def post(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn: str) -> None:
        self.posted.append((room_id, event_type, content, txn))

    async def to_many(self, event_type: str, users: Sequence[str],
                      content: dict[str, Any], txn: str) -> None:
        self.posted.append(("to-device", event_type, content, txn))
        self.users.append(tuple(users))


async def _upload(data: bytes) -> str:
    raise AssertionError("nothing here is large")


async def _nothing(*args: Any) -> None:
    return None


def output(posts: Posts) -> MatrixOutput:
    out = MatrixOutput(upload=_upload, to_device=_nothing, post=posts.post,
                       invite=_nothing, to_many=posts.to_many)
    out.add_room(GROUP, ROOM)
    return out


def message(seq: int, posted: bool, kind: str = Kind.APPLICATION) -> Outbound:
    origin = (ns.TRANSPORT_NAME, ROOM, f"$event{seq}") if posted else ()
    return Outbound(kind, ("matrix:u/bob:example.org", "matrix:u/alice:example.org",
                           "xmpp:carol@example.org"), group_id=GROUP, seq=seq, epoch=1,
                    sender="matrix:u/alice:example.org", payload=b"ciphertext",
                    rooms=((ns.TRANSPORT_NAME, ROOM), ("xmpp", "room@muc.example.org")),
                    origin=origin)


async def test_a_posted_message_is_acked_and_acks_are_coalesced_in_order() -> None:
    posts = Posts()
    out = output(posts)
    await out.deliver(message(1, posted=True))
    await out.deliver_many([message(2, True), message(3, True), message(4, False),
                            message(5, True), message(6, False, Kind.COMMIT)])
    kinds = [(where, event_type, [a.seq for a in events.parse_ack(content)]
              if event_type == ns.ACK_TO_DEVICE else content[ns.K_SEQ])
             for where, event_type, content, _ in posts.posted]
    ack = ("to-device", ns.ACK_TO_DEVICE)
    assert kinds == [(*ack, [1]), (*ack, [2, 3]), (ROOM, ns.ENCRYPTED_EVENT, 4),
                     (*ack, [5]), (ROOM, ns.COMMIT_EVENT, 6)]
    acked = events.parse_ack(posts.posted[1][2])
    assert [(a.event_id, a.room_id, a.sender, a.group_id) for a in acked] == [
        ("$event2", ROOM, "matrix:u/alice:example.org", GROUP),
        ("$event3", ROOM, "matrix:u/alice:example.org", GROUP)]
    assert set(posts.users) == {("@alice:example.org", "@bob:example.org")}
    assert len({txn for *_, txn in posts.posted}) == len(posts.posted)  # distinct txns


async def test_a_send_posted_elsewhere_is_copied_into_the_groups_room() -> None:
    """The origin names another room than the group's (the hub refuses that; were
    it delivered, the group's room would still need the message): a full copy (two
    waiting: in one batch)."""
    posts = Posts()
    out = output(posts)
    stray = Outbound(Kind.APPLICATION, (), group_id=GROUP, seq=7, epoch=1, sender="s",
                     payload=b"c", rooms=((ns.TRANSPORT_NAME, ROOM),),
                     origin=(ns.TRANSPORT_NAME, "!other:example.org", "$e"))
    await out.deliver(stray)
    await out.deliver_many([stray, dataclasses.replace(stray, seq=8)])
    assert [event_type for _, event_type, _, _ in posts.posted] == [ns.ENCRYPTED_EVENT,
                                                                    ns.BATCH_EVENT]


async def test_messages_waiting_for_the_room_go_in_one_batch_event_in_order() -> None:
    """What waits in the lane for the room (other network's messages) goes as one
    im.mlsbridge.batch per run, cut by an ack, a commit or the batch's bounds; a
    member reads it back as the same entries, in order."""
    posts = Posts()
    out = output(posts)
    big = dataclasses.replace(message(5, False), payload=b"x" * 5000)
    await out.deliver_many([message(1, False), message(2, False), message(3, True),
                            message(4, False), big, message(6, False), message(7, False),
                            message(8, False, Kind.COMMIT)])
    sent = [(event_type, [e[ns.K_SEQ] for e in content[ns.K_ENTRIES]]
             if ns.K_ENTRIES in content else content[ns.K_SEQ])
            for _, event_type, content, _ in posts.posted]
    assert sent == [(ns.BATCH_EVENT, [1, 2]), (ns.ACK_TO_DEVICE, [3]),
                    (ns.ENCRYPTED_EVENT, 4), (ns.ENCRYPTED_EVENT, 5),
                    (ns.BATCH_EVENT, [6, 7]), (ns.COMMIT_EVENT, 8)]
    entries = await events.parse_batch(posts.posted[0][2], events.inline_blob)
    assert [(e.seq, e.kind, e.sender, e.payload, e.group_id) for e in entries] == [
        (n, Kind.APPLICATION, "matrix:u/alice:example.org", b"ciphertext", GROUP)
        for n in (1, 2)]
    many = [message(n, False) for n in range(10, 50)]
    posts.posted.clear()
    await out.deliver_many(many)
    assert [len(content[ns.K_ENTRIES]) for _, _, content, _ in posts.posted] == [32, 8]


async def test_a_member_hands_a_batch_of_the_hub_over_in_order_and_ignores_others() -> None:
    posts = Posts()
    await output(posts).deliver_many([message(1, False), message(2, False)])
    (_, event_type, content, _), = posts.posted
    client = nio.AsyncClient("http://127.0.0.1:9", "@bob:example.org")
    link = MatrixMemberLink(client, "@hub:example.org", fill_gaps=False)
    try:
        forged = link._on_room_event(ROOM, {"type": event_type, "content": content,
                                            "sender": "@mallory:example.org",
                                            "event_id": "$forged"})
        assert forged == [] and link.ignored == [("not sent by the hub", "$forged")]
        items = link._on_room_event(ROOM, {"type": event_type, "content": content,
                                           "sender": "@hub:example.org", "event_id": "$b"})
        for item in items:
            await link._hand_over(*item)
        assert [(m.seq, m.payload) for m in link.delivered] == [(1, b"ciphertext"),
                                                                (2, b"ciphertext")]
        assert link.group_rooms == {GROUP: ROOM}
    finally:
        await link.media.close()
        await client.close()
