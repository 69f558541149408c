"""One fuzz target per decoder family, and what may escape it.

A target takes arbitrary bytes. It returns normally when the input was accepted or
rejected the way the family promises (only the family's error root escapes the
decoder), and raises anything else: that is a crash, a bug. Accepted inputs are also
checked: MLS structs re-encode to exactly the bytes they came from (the codec is
canonical), and ``group-process`` leaves the group state byte-identical and never puts
a secret into an exception message.

Families: ``mls-message`` (MLSMessage, all five wire formats), ``key-package``,
``welcome``, ``group-info``, ``group-secrets``, ``ratchet-tree`` (decode, then the tree
hash and full validation on the parsed tree), ``xmpp-stanza`` (every parser of
:mod:`transports.xmpp.stanzas` on the element of an XML text), ``matrix-event`` (every
parser of :mod:`transports.matrix.events` on a JSON event), ``cbor-content``
(:meth:`bridge.member.content.Content.decode`) and ``group-process`` (``Group.process`` on a
real member's state).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

from bridge.errors import ContentError
from fuzz import mutate as m
from fuzz import seeds as s
from mls.codec import decode, encode
from mls.crypto import suite
from mls.errors import DecodeError, MLSError
from mls.group.group import Group
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from mls.messages.tree_nodes import decode_ratchet_tree, encode_ratchet_tree
from mls.messages.welcome import GroupInfo, GroupSecrets, Welcome
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import validate_tree
from transports.matrix import events
from transports.matrix.errors import MatrixTransportError
from transports.xmpp import stanzas
from transports.xmpp.errors import XmppTransportError


class FuzzFailure(AssertionError):
    """A target's post-condition failed on an input the decoder accepted."""


@dataclass(frozen=True)
class Family:
    name: str
    target: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    mutator: m.Mutator
    description: str


# -- MLS structs ----------------------------------------------------------------------------

def _struct_target(cls: Any) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        try:
            value = decode(cls, data)
        except DecodeError:
            return
        if encode(value) != data:
            raise FuzzFailure(f"{cls.__name__} accepted a non-canonical encoding")
    return target


def ratchet_tree_target(data: bytes) -> None:
    try:
        nodes = decode_ratchet_tree(data)
    except DecodeError:
        return
    if encode_ratchet_tree(nodes) != data:
        raise FuzzFailure("ratchet tree accepted a non-canonical encoding")
    tree = RatchetTree(suite(1), nodes)
    try:
        tree.tree_hash()
        validate_tree(tree, b"fuzz group")
    except MLSError:
        return


# -- Group.process on a real member ---------------------------------------------------------

@functools.cache
def _process_fixture() -> tuple[Group, bytes, tuple[bytes, ...]]:
    scenario = s.scenario()
    bob = scenario.bob
    state = bob.state
    secrets = [state.signature_priv, *state.hpke_keys.values(), *scenario.plaintexts]
    secrets.extend(getattr(state.secrets, name) for name in (
        "sender_data_secret", "encryption_secret", "exporter_secret", "epoch_authenticator",
        "external_secret", "confirmation_key", "membership_key", "resumption_psk",
        "init_secret"))
    return bob, bob.to_bytes(), tuple(secret for secret in secrets if len(secret) >= 8)


def leaks(text: str, secrets: tuple[bytes, ...]) -> bytes | None:
    """The first secret that appears in ``text`` (hex, repr or latin-1 form)."""
    for secret in secrets:
        if secret.hex() in text or repr(secret)[2:-1] in text \
                or secret.decode("latin-1") in text:
            return secret
    return None


def group_process_target(data: bytes) -> None:
    bob, before, secrets = _process_fixture()
    try:
        bob.process(data, now=s.NOW)
    except MLSError as exc:
        if leaks(f"{exc} {exc!r}", secrets) is not None:
            raise FuzzFailure(f"a secret appears in {type(exc).__name__}'s message") from exc
    finally:
        if bob.to_bytes() != before:
            raise FuzzFailure("Group.process changed the group state in place")


# -- transports ------------------------------------------------------------------------------

def _resolve_refs(value: stanzas.BytesValue) -> bytes:
    """A resolver that 'downloads' references as a few bytes (to reach past them)."""
    return value if isinstance(value, bytes) else b"\x00\x01"


def xmpp_target(data: bytes) -> None:
    try:
        el = ET.fromstring(data)
    except ET.ParseError:
        return  # not XML at all: slixmpp's parser never hands that over
    calls: list[Callable[[], object]] = [
        lambda: stanzas.decode_request(el, "xmpp:fuzz@example.org"),
        lambda: stanzas.decode_request(el, "xmpp:fuzz@example.org", _resolve_refs),
        lambda: stanzas.decode_reply(el),
        lambda: stanzas.decode_reply(el, _resolve_refs),
        lambda: stanzas.decode_delivery(el),
        lambda: stanzas.collect_refs(el),
        lambda: stanzas.decode_rejected(el, "text", "bad-request", "r1"),
    ]
    for call in calls:
        try:
            call()
        except XmppTransportError:
            continue


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a parser coroutine whose blob reader never suspends."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise FuzzFailure("an event parser suspended on an inline blob reader")


async def _media_blob(value: object) -> bytes:
    """A blob reader accepting inline base64 and media references (as a few bytes)."""
    if isinstance(value, dict):
        return b"\x00\x01"
    return await events.inline_blob(value)


def matrix_target(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: the homeserver client never hands that over
    event_type, content = "im.mlsbridge.commit", doc
    if isinstance(doc, dict) and "content" in doc:
        event_type = doc.get("type") if isinstance(doc.get("type"), str) else event_type
        content = doc["content"]
    calls: list[Callable[[], object]] = [
        lambda: events.is_mls_room_event(event_type, content),
        lambda: events.response_request_id(content),
        lambda: events.parse_group_state(content),
    ]
    for read in (events.inline_blob, _media_blob):
        calls.extend([
            lambda read=read: _drive(events.parse_request(content, "matrix:u/f:example.org",
                                                          read)),
            lambda read=read: _drive(events.parse_room_event(event_type, content, read)),
            lambda read=read: _drive(events.parse_welcome(content, read)),
            lambda read=read: _drive(events.parse_delivery(content, read)),
            lambda read=read: _drive(events.parse_response(content, read)),
        ])
    for call in calls:
        try:
            call()
        except MatrixTransportError:
            continue


def cbor_target(data: bytes) -> None:
    from bridge.member.content import Content

    try:
        content = Content.decode(data)
    except ContentError:
        return
    if content.encode() != data:
        raise FuzzFailure("content accepted a non-canonical encoding")


# -- registry ----------------------------------------------------------------------------------

def _mls_seeds(name: str, own: Callable[[s.Scenario], list[bytes]]) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        return own(s.scenario()) + s.vector_seeds().get(name, [])
    return seeds


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("mls-message", _struct_target(MLSMessage),
           _mls_seeds("mls-message", lambda sc: list(sc.messages)), m.mutate_tls,
           "decode(MLSMessage): PublicMessage, PrivateMessage, Welcome, GroupInfo, "
           "KeyPackage"),
    Family("key-package", _struct_target(KeyPackage),
           _mls_seeds("key-package", lambda sc: [sc.key_package]), m.mutate_tls,
           "decode(KeyPackage)"),
    Family("welcome", _struct_target(Welcome),
           _mls_seeds("welcome", lambda sc: [sc.welcome]), m.mutate_tls, "decode(Welcome)"),
    Family("group-info", _struct_target(GroupInfo),
           _mls_seeds("group-info", lambda sc: [sc.group_info]), m.mutate_tls,
           "decode(GroupInfo)"),
    Family("group-secrets", _struct_target(GroupSecrets),
           _mls_seeds("group-secrets", lambda sc: [sc.group_secrets]), m.mutate_tls,
           "decode(GroupSecrets)"),
    Family("ratchet-tree", ratchet_tree_target,
           _mls_seeds("ratchet-tree", lambda sc: [sc.ratchet_tree]), m.mutate_tls,
           "decode_ratchet_tree, then tree hash and validate_tree"),
    Family("group-process", group_process_target,
           lambda: list(s.scenario().messages), m.mutate_tls,
           "Group.process on a member's real state (epoch 1 of a 3-member group)"),
    Family("xmpp-stanza", xmpp_target, s.xml_seeds, m.mutate_xml,
           "every transports.xmpp.stanzas parser on an XML element"),
    Family("matrix-event", matrix_target, s.json_seeds, m.mutate_json,
           "every transports.matrix.events parser on a JSON event"),
    Family("cbor-content", cbor_target, s.cbor_seeds, m.mutate_cbor,
           "bridge.member.content.Content.decode"),
)}
