"""Shared steps of the end-to-end tests: waiting, chatting, checking what arrived."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError

from tests.xmpp.conftest import Peer
from transports.xmpp.namespace import NS_MUC_ADMIN


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def room_jid(domain: str) -> str:
    return f"room{secrets.token_hex(3)}@{domain}"


def in_group(peer: Peer, group_id: bytes) -> bool:
    return group_id in peer.member.group_ids() and peer.member.group(group_id).active


def roster(peer: Peer, group_id: bytes) -> set[str]:
    return set(peer.member.roster(group_id))


async def converge(peers: Sequence[Peer], group_id: bytes, timeout: float = 20.0) -> None:
    """Every peer reaches the same epoch (the highest any of them has)."""

    def same() -> bool:
        epochs = {p.member.group(group_id).epoch for p in peers}
        return len(epochs) == 1

    await until(same, "members to reach the same epoch", timeout)
    for peer in peers:
        await peer.member.idle()


def texts(peer: Peer, group_id: bytes) -> list[tuple[str, str]]:
    return [(r.sender, r.content.body or "") for r in peer.member.received(group_id)]


async def chat(peers: Sequence[Peer], group_id: bytes, sent: dict[str, list[tuple[str, str]]],
               rounds: int = 2, tag: str = "") -> None:
    """Each peer sends ``rounds`` texts; record them for every other current member."""
    for n in range(rounds):
        for peer in peers:
            text = f"{tag}{n} from {peer.identity} {secrets.token_hex(2)}"
            await peer.member.send_text(group_id, text)
            for other in peers:
                if other is not peer:
                    sent.setdefault(other.identity, []).append((peer.identity, text))


async def received_all(peers: Sequence[Peer], group_id: bytes,
                       sent: dict[str, list[tuple[str, str]]], timeout: float = 20.0) -> None:
    """Each peer received exactly what was sent to it, in sending order per sender."""
    for peer in peers:
        expected = sent.get(peer.identity, [])
        await until(_has_at_least(peer, group_id, len(expected)),
                    f"{peer.identity} to receive {len(expected)} messages", timeout)
        got = texts(peer, group_id)
        assert sorted(got) == sorted(expected), (peer.identity, got, expected)
        for sender in {s for s, _ in expected}:
            assert [t for s, t in got if s == sender] == [t for s, t in expected if s == sender]


def _has_at_least(peer: Peer, group_id: bytes, count: int) -> Callable[[], bool]:
    return lambda: len(texts(peer, group_id)) >= count


async def muc_admin(peer: Peer, room: str, **item: str) -> str:
    """One muc#admin set (XEP-0045 §8.2 kick: ``role="none", nick=...``; §9
    affiliations: ``affiliation=..., jid=...``) from ``peer`` to ``room``; returns
    ``""`` on success, else the stanza error condition."""
    iq = peer.client.Iq()
    iq["to"], iq["type"] = room, "set"
    query = ET.SubElement(iq.xml, f"{{{NS_MUC_ADMIN}}}query")
    ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", item)
    try:
        await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    except IqError as exc:
        return str(exc.iq["error"]["condition"])
    return ""


def nick_of(peer: Peer) -> str:
    """The nick the MLS client plugin takes in rooms."""
    bound = peer.client.boundjid
    return peer.plugin.nick or f"{bound.user}-{bound.resource[:8]}"


async def muc_admin_list(peer: Peer, room: str, affiliation: str) -> list[str] | str:
    """The bare JIDs holding ``affiliation`` in ``room`` (XEP-0045 §9.5), as ``peer``
    asks; the stanza error condition if refused."""
    iq = peer.client.Iq()
    iq["to"], iq["type"] = room, "get"
    query = ET.SubElement(iq.xml, f"{{{NS_MUC_ADMIN}}}query")
    ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"affiliation": affiliation})
    try:
        result = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    except IqError as exc:
        return str(exc.iq["error"]["condition"])
    return sorted(item.get("jid", "") for item in
                  result.xml.iter(f"{{{NS_MUC_ADMIN}}}item"))
