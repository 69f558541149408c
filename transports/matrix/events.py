"""Event contents of the Matrix binding: builders and strict parsers.

MLS bytes travel as unpadded base64 in JSON (the Matrix convention). Builders return a
content ``dict`` whose binary fields are still ``bytes``: :func:`transports.matrix.media.pack`
turns each into base64 or, when the content would exceed the event size budget, into a
media-repository reference ``{"url": "mxc://...", "sha256": "<unpadded b64>", "size": n}``.
Parsers are coroutines taking a :data:`BlobReader` that decodes inline base64 and fetches
(and verifies) references.

Formats (``v`` is :data:`~transports.matrix.namespace.VERSION`; optional keys are omitted
when empty)::

    to-device im.mlsbridge.request   {v, request_id, op, reply_device, group_id?, payload?,
                                      welcome?, group_info?, ratchet_tree?, target?,
                                      device?, transport?, room_id?, cipher_suite?,
                                      after_seq?, limit?, last_resort?, seq?, reason?}
    to-device im.mlsbridge.response  {v, request_id, ok, code?, reason?, epoch, seq,
                                      group_id?, sender?, payload?, ratchet_tree?, rooms?,
                                      entries?: [delivery], key_packages?: [...]}
    to-device im.mlsbridge.welcome   {v, group_id, seq, epoch, sender, welcome,
                                      ratchet_tree?, rooms?}
    to-device im.mlsbridge.delivery  {v, kind, group_id, seq, epoch, sender, payload}
    room  im.mlsbridge.commit        {v, group_id, seq, epoch, sender, commit}
    room  im.mlsbridge.proposal      {v, group_id, seq, epoch, sender, proposal}
    room  m.room.encrypted           {algorithm: im.mlsbridge.mls.v1, v, group_id, seq,
                                      epoch, sender, ciphertext, sender_key: ""}
    room  im.mlsbridge.send          a member's request (op "send") posted into the
                                     group's room: the request's keys, as to-device
    room  im.mlsbridge.batch         {v, group_id, entries: [delivery]}: consecutive
                                     entries the hub had waiting for the room
    to-device im.mlsbridge.ack       {v, group_id, room_id, entries: [{kind, seq, epoch,
                                      sender, event_id}]}: sends of the room it logged
    state im.mlsbridge.group ("")    {v, group_id, cipher_suite, hub, hub_user, hub_device,
                                      algorithm}

``delivery`` (inside ``entries``) is ``{kind, group_id, seq, epoch, sender, payload,
ratchet_tree?}``. The ``sender`` inside content is the identity the hub vouches for; the
transport trusts it only in events whose Matrix ``sender`` is the hub itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transports.interface import Inbound, KeyPackageListing, Kind, Outbound
from transports.matrix import namespace as ns
from transports.matrix.errors import MalformedEvent, RequestTooLarge

BlobReader = Callable[[object], Awaitable[bytes]]
Content = dict[str, Any]

_B64_CHARS = re.compile(r"^[A-Za-z0-9+/]*$")
_MAX_INT = (1 << 53) - 1  # canonical JSON integers in Matrix


# -- base64 and identities --------

def b64encode(data: bytes) -> str:
    """Unpadded standard base64 (the Matrix convention)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """Decode unpadded (or padded) standard base64; :class:`MalformedEvent` otherwise."""
    stripped = text.rstrip("=")
    if not _B64_CHARS.match(stripped) or len(stripped) % 4 == 1:
        raise MalformedEvent("invalid base64")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except binascii.Error as exc:
        raise MalformedEvent("invalid base64") from exc


def user_uri(user_id: str) -> str:
    """``@alice:example.org`` -> ``matrix:u/alice:example.org`` (the credential identity)."""
    if not user_id.startswith("@") or ":" not in user_id:
        raise MalformedEvent(f"not a Matrix user id: {user_id!r}")
    return ns.URI_SCHEME + user_id[1:]


def uri_user(uri: str) -> str | None:
    """The Matrix user id an identity URI names, or None if it is not a Matrix identity."""
    if not uri.startswith(ns.URI_SCHEME) or ":" not in uri[len(ns.URI_SCHEME):]:
        return None
    return "@" + uri[len(ns.URI_SCHEME):]


async def inline_blob(value: object) -> bytes:
    """A :data:`BlobReader` that accepts inline base64 only (no media repository)."""
    if not isinstance(value, str):
        raise MalformedEvent("expected inline base64")
    return b64decode(value)


# -- field access --------

def _str(content: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = content.get(key, default)
    if not isinstance(value, str):
        raise MalformedEvent(f"{key!r} must be a string")
    return value


def _int(content: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = content.get(key, default)
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise MalformedEvent(f"{key!r} must be a non-negative integer")
    return value


def _bool(content: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = content.get(key, default)
    if not isinstance(value, bool):
        raise MalformedEvent(f"{key!r} must be a boolean")
    return value


def _b64(content: Mapping[str, Any], key: str) -> bytes:
    return b64decode(_str(content, key, "")) if key in content else b""


async def _blob(content: Mapping[str, Any], key: str, read: BlobReader) -> bytes:
    return await read(content[key]) if key in content else b""


def declared_size(value: object) -> int:
    """The bytes a payload field says it holds, without fetching anything: inline
    base64 its decoded length, a media reference its ``size``."""
    if isinstance(value, str):
        return len(value.rstrip("=")) * 3 // 4
    if isinstance(value, Mapping):
        size = value.get(ns.K_MEDIA_SIZE)
        if type(size) is not int or size < 0:
            raise MalformedEvent("media reference needs a size")
        return size
    raise MalformedEvent("a payload must be base64 or a media reference")


def _check_version(content: Mapping[str, Any]) -> None:
    if not isinstance(content, Mapping):
        raise MalformedEvent("content must be an object")
    if content.get(ns.K_VERSION) != ns.VERSION:
        raise MalformedEvent(f"unsupported binding version {content.get(ns.K_VERSION)!r}")


def _put(content: Content, key: str, value: object) -> None:
    """Set an optional key only when it holds something."""
    if value:
        content[key] = value


def _rooms(content: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = content.get(ns.K_ROOMS, [])
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in value
    ):
        raise MalformedEvent("'rooms' must be a list of [transport, room id] pairs")
    return tuple((pair[0], pair[1]) for pair in value)


# -- requests --------

def request_content(request: Inbound, reply_device: str) -> Content:
    """The to-device content of one request (``sender`` is never sent: the network says)."""
    content: Content = {ns.K_VERSION: ns.VERSION, ns.K_REQUEST_ID: request.request_id,
                        ns.K_OP: str(request.op), ns.K_REPLY_DEVICE: reply_device}
    _put(content, ns.K_GROUP_ID, b64encode(request.group_id) if request.group_id else "")
    for key, blob in ((ns.K_PAYLOAD, request.payload), (ns.K_WELCOME, request.welcome),
                      (ns.K_GROUP_INFO, request.group_info),
                      (ns.K_RATCHET_TREE, request.ratchet_tree)):
        _put(content, key, blob)
    for key, value in ((ns.K_TARGET, request.target), (ns.K_DEVICE, request.device),
                       (ns.K_TRANSPORT, request.transport), (ns.K_ROOM_ID, request.room_id),
                       (ns.K_CIPHER_SUITE, request.cipher_suite),
                       (ns.K_AFTER_SEQ, request.after_seq), (ns.K_LIMIT, request.limit),
                       (ns.K_LAST_RESORT, request.last_resort), (ns.K_SEQ, request.seq),
                       (ns.K_REASON, request.reason)):
        _put(content, key, value)
    return content


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request as received: the hub's Inbound and where to send the response."""

    inbound: Inbound
    reply_device: str


_REQUEST_BLOBS = (ns.K_PAYLOAD, ns.K_WELCOME, ns.K_GROUP_INFO, ns.K_RATCHET_TREE)


async def parse_request(content: Mapping[str, Any], sender: str, read: BlobReader, *,
                        network: str = "", max_size: int = 0) -> ParsedRequest:
    """Parse a request; ``sender`` and ``network`` are the requester the bot built
    from the event's ``sender`` (:func:`transports.matrix.intake.requester`). With
    ``max_size``, :class:`RequestTooLarge` -- before any payload is fetched -- if the
    sizes its payloads declare add up to more."""
    _check_version(content)
    request_id = _str(content, ns.K_REQUEST_ID)
    if not request_id or len(request_id) > 128:
        raise MalformedEvent("request_id must be 1..128 characters")
    if max_size:
        total = sum(declared_size(content[key]) for key in _REQUEST_BLOBS if key in content)
        if total > max_size:
            raise RequestTooLarge(f"the request declares {total} bytes of payload; the "
                                  f"limit is {max_size}")
    inbound = Inbound(
        op=_str(content, ns.K_OP), sender=sender, request_id=request_id, network=network,
        group_id=_b64(content, ns.K_GROUP_ID),
        payload=await _blob(content, ns.K_PAYLOAD, read),
        welcome=await _blob(content, ns.K_WELCOME, read),
        group_info=await _blob(content, ns.K_GROUP_INFO, read),
        ratchet_tree=await _blob(content, ns.K_RATCHET_TREE, read),
        target=_str(content, ns.K_TARGET, ""), device=_str(content, ns.K_DEVICE, ""),
        transport=_str(content, ns.K_TRANSPORT, ""), room_id=_str(content, ns.K_ROOM_ID, ""),
        cipher_suite=_int(content, ns.K_CIPHER_SUITE, 0),
        after_seq=_int(content, ns.K_AFTER_SEQ, 0), limit=_int(content, ns.K_LIMIT, 0),
        last_resort=_bool(content, ns.K_LAST_RESORT, False),
        seq=_int(content, ns.K_SEQ, 0), reason=_str(content, ns.K_REASON, ""),
    )
    return ParsedRequest(inbound, _str(content, ns.K_REPLY_DEVICE, "*") or "*")


# -- deliveries (room events, Welcome, log entries) --------

_ROOM_KEYS = {Kind.COMMIT: (ns.COMMIT_EVENT, ns.K_COMMIT),
              Kind.PROPOSAL: (ns.PROPOSAL_EVENT, ns.K_PROPOSAL),
              Kind.APPLICATION: (ns.ENCRYPTED_EVENT, ns.K_CIPHERTEXT)}
_KIND_OF_TYPE = {event_type: kind for kind, (event_type, _) in _ROOM_KEYS.items()}


def _delivery_header(message: Outbound) -> Content:
    return {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(message.group_id),
            ns.K_SEQ: message.seq, ns.K_EPOCH: message.epoch, ns.K_SENDER: message.sender}


def room_event(message: Outbound) -> tuple[str, Content]:
    """The room event (type, content) for a commit, proposal or application message."""
    event_type, key = _ROOM_KEYS[Kind(message.kind)]
    content = _delivery_header(message)
    if message.kind == Kind.APPLICATION:
        content[ns.K_ALGORITHM] = ns.MLS_ALGORITHM
        content[ns.K_SENDER_KEY] = ""  # required by m.room.encrypted validators; unused
    content[key] = message.payload
    return event_type, content


def is_mls_room_event(event_type: str, content: Mapping[str, Any]) -> bool:
    """True for the binding's room events that only the hub posts (m.room.encrypted
    only with our algorithm)."""
    if event_type == ns.ENCRYPTED_EVENT:
        return isinstance(content, Mapping) and content.get(ns.K_ALGORITHM) == ns.MLS_ALGORITHM
    return event_type in (ns.COMMIT_EVENT, ns.PROPOSAL_EVENT, ns.BATCH_EVENT)


def batch_content(messages: Sequence[Outbound]) -> Content:
    """One room event for consecutive log entries of one group (bytes left for
    :func:`transports.matrix.media.pack`)."""
    return {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(messages[0].group_id),
            ns.K_ENTRIES: [_entry_content(m) for m in messages]}


async def parse_batch(content: Mapping[str, Any], read: BlobReader) -> list[Outbound]:
    """The entries of a batch, in its order (the caller checked that the hub sent it);
    :class:`MalformedEvent` if one names another group."""
    _check_version(content)
    group_id = _b64(content, ns.K_GROUP_ID)
    entries = content.get(ns.K_ENTRIES)
    if not isinstance(entries, list) or not entries:
        raise MalformedEvent("a batch lists its entries")
    parsed = [await _parse_entry(entry, read) for entry in entries]
    if any(entry.group_id != group_id for entry in parsed):
        raise MalformedEvent("a batch carries one group's entries")
    return parsed


@dataclass(frozen=True, slots=True)
class Ack:
    """One entry of an ``im.mlsbridge.ack``: the hub logged the send event ``event_id``
    of ``room_id`` as ``seq`` of ``group_id``, sent by ``sender`` (the identity the hub
    authenticated: the send event's Matrix sender)."""

    kind: str
    group_id: bytes
    room_id: str
    seq: int
    epoch: int
    sender: str
    event_id: str


def ack_content(messages: Sequence[Outbound], room_id: str) -> Content:
    """One ack for deliveries of one group posted by their senders into ``room_id``."""
    return {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(messages[0].group_id),
            ns.K_ROOM_ID: room_id,
            ns.K_ENTRIES: [{ns.K_KIND: str(m.kind), ns.K_SEQ: m.seq, ns.K_EPOCH: m.epoch,
                            ns.K_SENDER: m.sender, ns.K_EVENT_ID: m.origin[2]}
                           for m in messages]}


def parse_ack(content: Mapping[str, Any]) -> list[Ack]:
    """The entries of an ack (the caller checked that the hub sent it)."""
    _check_version(content)
    group_id = _b64(content, ns.K_GROUP_ID)
    room_id = _str(content, ns.K_ROOM_ID)
    entries = content.get(ns.K_ENTRIES)
    if not isinstance(entries, list) or not entries:
        raise MalformedEvent("an ack lists its entries")
    acks = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise MalformedEvent("an ack entry must be an object")
        kind = _str(entry, ns.K_KIND)
        if kind not in (Kind.APPLICATION, Kind.PROPOSAL):
            raise MalformedEvent(f"an ack confirms sends, not {kind!r}")
        acks.append(Ack(kind, group_id, room_id, _int(entry, ns.K_SEQ),
                        _int(entry, ns.K_EPOCH), _str(entry, ns.K_SENDER),
                        _str(entry, ns.K_EVENT_ID)))
    return acks


async def parse_room_event(event_type: str, content: Mapping[str, Any],
                           read: BlobReader) -> Outbound:
    """A room event of the binding back into a delivery (the caller checked the sender)."""
    _check_version(content)
    kind = _KIND_OF_TYPE.get(event_type)
    if kind is None:
        raise MalformedEvent(f"not an MLS room event type: {event_type!r}")
    key = _ROOM_KEYS[kind][1]
    if key not in content:
        raise MalformedEvent(f"{event_type} without {key!r}")
    return Outbound(kind=str(kind), group_id=_b64(content, ns.K_GROUP_ID),
                    seq=_int(content, ns.K_SEQ), epoch=_int(content, ns.K_EPOCH),
                    sender=_str(content, ns.K_SENDER, ""), payload=await read(content[key]))


def welcome_content(message: Outbound) -> Content:
    """The to-device content delivering a Welcome to a joiner."""
    content = _delivery_header(message)
    content[ns.K_WELCOME] = message.payload
    _put(content, ns.K_RATCHET_TREE, message.ratchet_tree)
    _put(content, ns.K_ROOMS, [list(pair) for pair in message.rooms])
    return content


async def parse_welcome(content: Mapping[str, Any], read: BlobReader) -> Outbound:
    _check_version(content)
    if ns.K_WELCOME not in content:
        raise MalformedEvent("welcome without 'welcome'")
    return Outbound(kind=str(Kind.WELCOME), group_id=_b64(content, ns.K_GROUP_ID),
                    seq=_int(content, ns.K_SEQ, 0), epoch=_int(content, ns.K_EPOCH, 0),
                    sender=_str(content, ns.K_SENDER, ""),
                    payload=await read(content[ns.K_WELCOME]),
                    ratchet_tree=await _blob(content, ns.K_RATCHET_TREE, read),
                    rooms=_rooms(content))


def delivery_content(message: Outbound) -> Content:
    """The to-device content of one log entry (a group with no Matrix room)."""
    content = _entry_content(message)
    content[ns.K_VERSION] = ns.VERSION
    return content


async def parse_delivery(content: Mapping[str, Any], read: BlobReader) -> Outbound:
    _check_version(content)
    return await _parse_entry(content, read)


def _entry_content(entry: Outbound) -> Content:
    content: Content = {ns.K_KIND: str(entry.kind), ns.K_GROUP_ID: b64encode(entry.group_id),
                        ns.K_SEQ: entry.seq, ns.K_EPOCH: entry.epoch,
                        ns.K_SENDER: entry.sender, ns.K_PAYLOAD: entry.payload}
    _put(content, ns.K_RATCHET_TREE, entry.ratchet_tree)
    return content


async def _parse_entry(content: object, read: BlobReader) -> Outbound:
    if not isinstance(content, Mapping):
        raise MalformedEvent("log entry must be an object")
    kind = _str(content, ns.K_KIND)
    if kind not in set(Kind):
        raise MalformedEvent(f"unknown delivery kind {kind!r}")
    return Outbound(kind=kind, group_id=_b64(content, ns.K_GROUP_ID),
                    seq=_int(content, ns.K_SEQ), epoch=_int(content, ns.K_EPOCH),
                    sender=_str(content, ns.K_SENDER, ""),
                    payload=await _blob(content, ns.K_PAYLOAD, read),
                    ratchet_tree=await _blob(content, ns.K_RATCHET_TREE, read))


# -- responses --------

def response_content(reply: Outbound) -> Content:
    """The to-device content of the hub's reply to one request."""
    content: Content = {ns.K_VERSION: ns.VERSION, ns.K_REQUEST_ID: reply.request_id,
                        ns.K_OK: reply.ok, ns.K_EPOCH: reply.epoch, ns.K_SEQ: reply.seq}
    for key, value in ((ns.K_CODE, reply.code), (ns.K_REASON, reply.reason),
                       (ns.K_SENDER, reply.sender), (ns.K_PAYLOAD, reply.payload),
                       (ns.K_RATCHET_TREE, reply.ratchet_tree)):
        _put(content, key, value)
    _put(content, ns.K_GROUP_ID, b64encode(reply.group_id) if reply.group_id else "")
    _put(content, ns.K_ROOMS, [list(pair) for pair in reply.rooms])
    _put(content, ns.K_ENTRIES, [_entry_content(entry) for entry in reply.entries])
    _put(content, ns.K_KEY_PACKAGES, [
        {ns.K_REF: b64encode(kp.ref), ns.K_USER: kp.user, ns.K_DEVICE: kp.device,
         ns.K_CIPHER_SUITE: kp.cipher_suite, ns.K_EXPIRES_AT: kp.expires_at,
         ns.K_LAST_RESORT: kp.last_resort} for kp in reply.key_packages])
    return content


def _parse_listing(value: object) -> KeyPackageListing:
    if not isinstance(value, Mapping):
        raise MalformedEvent("key package listing must be an object")
    return KeyPackageListing(ref=_b64(value, ns.K_REF), user=_str(value, ns.K_USER),
                             device=_str(value, ns.K_DEVICE, ""),
                             cipher_suite=_int(value, ns.K_CIPHER_SUITE),
                             expires_at=_int(value, ns.K_EXPIRES_AT),
                             last_resort=_bool(value, ns.K_LAST_RESORT, False))


def response_request_id(content: Mapping[str, Any]) -> str:
    """The request id a response answers (to find its waiter before parsing the rest)."""
    _check_version(content)
    return _str(content, ns.K_REQUEST_ID)


async def parse_response(content: Mapping[str, Any], read: BlobReader) -> Outbound:
    _check_version(content)
    entries = content.get(ns.K_ENTRIES, [])
    listings = content.get(ns.K_KEY_PACKAGES, [])
    if not isinstance(entries, list) or not isinstance(listings, list):
        raise MalformedEvent("'entries' and 'key_packages' must be lists")
    return Outbound(
        kind=str(Kind.REPLY), request_id=_str(content, ns.K_REQUEST_ID),
        group_id=_b64(content, ns.K_GROUP_ID), seq=_int(content, ns.K_SEQ, 0),
        epoch=_int(content, ns.K_EPOCH, 0), sender=_str(content, ns.K_SENDER, ""),
        payload=await _blob(content, ns.K_PAYLOAD, read),
        ratchet_tree=await _blob(content, ns.K_RATCHET_TREE, read),
        ok=_bool(content, ns.K_OK), code=_str(content, ns.K_CODE, ""),
        reason=_str(content, ns.K_REASON, ""), rooms=_rooms(content),
        entries=tuple([await _parse_entry(entry, read) for entry in entries]),
        key_packages=tuple(_parse_listing(listing) for listing in listings),
    )


# -- group state --------

@dataclass(frozen=True, slots=True)
class GroupState:
    """The ``im.mlsbridge.group`` room state: which MLS group the room carries, and its hub."""

    group_id: bytes
    cipher_suite: int
    hub: str
    hub_user: str
    hub_device: str


def group_state_content(state: GroupState) -> Content:
    return {ns.K_VERSION: ns.VERSION, ns.K_GROUP_ID: b64encode(state.group_id),
            ns.K_CIPHER_SUITE: state.cipher_suite, ns.K_HUB: state.hub,
            ns.K_HUB_USER: state.hub_user, ns.K_HUB_DEVICE: state.hub_device,
            ns.K_ALGORITHM: ns.MLS_ALGORITHM}


def parse_group_state(content: Mapping[str, Any]) -> GroupState:
    _check_version(content)
    return GroupState(group_id=_b64(content, ns.K_GROUP_ID),
                      cipher_suite=_int(content, ns.K_CIPHER_SUITE, 0),
                      hub=_str(content, ns.K_HUB), hub_user=_str(content, ns.K_HUB_USER),
                      hub_device=_str(content, ns.K_HUB_DEVICE, "*"))
