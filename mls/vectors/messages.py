"""messages.json: every wire struct decodes and re-encodes byte-exactly
(RFC 9420 §§6-12)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from mls import codec
from mls.codec import Writer
from mls.enums import ContentType, WireFormat
from mls.messages.framing import MLSMessage, PublicMessage
from mls.messages.proposals import (
    Add,
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from mls.messages.tree_nodes import decode_ratchet_tree, encode_ratchet_tree
from mls.messages.welcome import GroupSecrets

_STRUCTS: dict[str, type[codec.Encodable]] = {
    "group_secrets": GroupSecrets,
    "add_proposal": Add,
    "update_proposal": Update,
    "remove_proposal": Remove,
    "pre_shared_key_proposal": PreSharedKey,
    "re_init_proposal": ReInit,
    "external_init_proposal": ExternalInit,
    "group_context_extensions_proposal": GroupContextExtensions,
    "commit": Commit,
}

_MESSAGES: dict[str, WireFormat] = {
    "mls_welcome": WireFormat.WELCOME,
    "mls_group_info": WireFormat.GROUP_INFO,
    "mls_key_package": WireFormat.KEY_PACKAGE,
    "public_message_application": WireFormat.PUBLIC_MESSAGE,
    "public_message_proposal": WireFormat.PUBLIC_MESSAGE,
    "public_message_commit": WireFormat.PUBLIC_MESSAGE,
    "private_message": WireFormat.PRIVATE_MESSAGE,
}

_PUBLIC_CONTENT_TYPES: dict[str, ContentType] = {
    "public_message_application": ContentType.APPLICATION,
    "public_message_proposal": ContentType.PROPOSAL,
    "public_message_commit": ContentType.COMMIT,
}


def rebuild(value: Any) -> Any:
    """A structurally equal copy built from the constructor fields only, so that no
    encoding cached at decode time survives: encoding it exercises the encoders."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)(**{f.name: rebuild(getattr(value, f.name))
                              for f in dataclasses.fields(value) if f.init})
    if isinstance(value, tuple):
        return tuple(rebuild(item) for item in value)
    return value


def _round_trip(name: str, data: bytes, decode: Callable[[bytes], Any],
                encode: Callable[[Any], bytes]) -> Any:
    """Decode, then encode both the decoded value and a fresh rebuild of it: some
    structs keep the bytes they were decoded from, the rebuild must not need them."""
    value = decode(data)
    assert encode(value) == data, f"{name}: re-encoding differs from the vector"
    fresh = rebuild(value)
    assert fresh == value, f"{name}: rebuilt value differs"
    assert encode(fresh) == data, f"{name}: encoding a fresh copy differs from the vector"
    return value


def _encode_struct(value: codec.Encodable) -> bytes:
    w = Writer()
    value.encode(w)
    return w.getvalue()


def check(case: dict[str, Any]) -> None:
    for name, wire_format in _MESSAGES.items():
        message = _round_trip(name, bytes.fromhex(case[name]),
                              partial(codec.decode, MLSMessage), _encode_struct)
        assert message.wire_format == wire_format, f"{name}: wire format {message.wire_format}"
        if name in _PUBLIC_CONTENT_TYPES:
            assert isinstance(message.body, PublicMessage)
            assert message.body.content.content_type == _PUBLIC_CONTENT_TYPES[name], name
    for name, cls in _STRUCTS.items():
        _round_trip(name, bytes.fromhex(case[name]),
                    partial(codec.decode, cls), _encode_struct)
    _round_trip("ratchet_tree", bytes.fromhex(case["ratchet_tree"]),
                decode_ratchet_tree, encode_ratchet_tree)
