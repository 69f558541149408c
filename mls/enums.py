"""Registered MLS code points (RFC 9420 §17).

Open registries (extension, proposal and credential types) may carry values we do not
know -- GREASE (§13.5) and private use -- so wire structs keep those as plain ``int``
and compare with these enums.  Closed enumerations (content type, sender type, node
type, leaf node source, PSK type, resumption usage) reject unknown values on decode.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar, cast

from mls.errors import DecodeError


class CipherSuiteId(IntEnum):
    """RFC 9420 §17.1."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 0x0001
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 0x0002
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 0x0003
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 0x0004
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 0x0005
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 0x0006
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 0x0007


class ProtocolVersion(IntEnum):
    """RFC 9420 §6."""

    RESERVED = 0
    MLS10 = 1


class WireFormat(IntEnum):
    """RFC 9420 §17.2."""

    PUBLIC_MESSAGE = 0x0001
    PRIVATE_MESSAGE = 0x0002
    WELCOME = 0x0003
    GROUP_INFO = 0x0004
    KEY_PACKAGE = 0x0005


class ExtensionType(IntEnum):
    """RFC 9420 §17.3."""

    APPLICATION_ID = 0x0001
    RATCHET_TREE = 0x0002
    REQUIRED_CAPABILITIES = 0x0003
    EXTERNAL_PUB = 0x0004
    EXTERNAL_SENDERS = 0x0005


class ProposalType(IntEnum):
    """RFC 9420 §17.4."""

    ADD = 0x0001
    UPDATE = 0x0002
    REMOVE = 0x0003
    PSK = 0x0004
    REINIT = 0x0005
    EXTERNAL_INIT = 0x0006
    GROUP_CONTEXT_EXTENSIONS = 0x0007


class CredentialType(IntEnum):
    """RFC 9420 §17.5."""

    BASIC = 0x0001
    X509 = 0x0002


class ContentType(IntEnum):
    """RFC 9420 §6."""

    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    """RFC 9420 §6."""

    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


class NodeType(IntEnum):
    """RFC 9420 §7.8."""

    LEAF = 1
    PARENT = 2


class LeafNodeSource(IntEnum):
    """RFC 9420 §7.2."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


class PSKType(IntEnum):
    """RFC 9420 §8.4."""

    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    """RFC 9420 §8.4."""

    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


class ProposalOrRefType(IntEnum):
    """RFC 9420 §12.4."""

    PROPOSAL = 1
    REFERENCE = 2


#: GREASE values reserved in every open registry (RFC 9420 §13.5).
GREASE_VALUES = frozenset(0x0A0A + 0x1010 * i for i in range(15))


_E = TypeVar("_E", bound=IntEnum)


def closed_enum(cls: type[_E], value: int) -> _E:
    """Map ``value`` into a closed enumeration or raise :class:`DecodeError`."""
    member = cls._value2member_map_.get(value)  # the fast path of cls(value)
    if member is not None:
        return cast(_E, member)
    try:
        return cls(value)
    except ValueError:
        raise DecodeError(f"unknown {cls.__name__} value {value}") from None
