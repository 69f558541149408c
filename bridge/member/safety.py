"""What two people compare out of band: a group's safety number and each member's key
fingerprint.

The safety number is derived from the epoch authenticator (RFC 9420 §8.7: a secret of
the epoch that "can be used to confirm that two members have the same view of the
group", e.g. by comparing it over another channel). Members in the same epoch with the
same transcript compute the same number; a member a delivery service has split off
onto another view computes a different one. It changes with every epoch, so it is
shown with the epoch number. Derivation (60 decimal digits, 12 groups of 5)::

    h = SHA-512("mls-bridge safety number v1" || epoch_authenticator)
    group i (0..11) = int.from_bytes(h[5i : 5i+5], "big") mod 100000, zero-padded

(2^40 mod 10^5 makes the bias of each group below 10^-7.) A fingerprint is the first 16
bytes of SHA-256 over the member's signature public key, in 8 groups of 4 hex digits:
the key that signs everything the member sends (RFC 9420 §5.1.2, §7.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bridge.identities import IdentityVerifier, identity_of
from mls.group.group import Group

SAFETY_LABEL = b"mls-bridge safety number v1"
SAFETY_GROUPS = 12
SAFETY_GROUP_DIGITS = 5


def safety_number(epoch_authenticator: bytes) -> str:
    """60 digits in 12 space-separated groups of 5 (see the module docstring)."""
    h = hashlib.sha512(SAFETY_LABEL + epoch_authenticator).digest()
    modulus = 10 ** SAFETY_GROUP_DIGITS
    return " ".join(f"{int.from_bytes(h[5 * i:5 * i + 5], 'big') % modulus:05d}"
                    for i in range(SAFETY_GROUPS))


def fingerprint(signature_key: bytes) -> str:
    """SHA-256 of a signature public key, first 16 bytes as 8 groups of 4 hex digits."""
    digest = hashlib.sha256(signature_key).hexdigest()[:32]
    return " ".join(digest[i:i + 4] for i in range(0, 32, 4))


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One leaf of a group as a person sees it."""

    leaf: int
    identity: str
    fingerprint: str
    own: bool


def group_safety_number(group: Group) -> str:
    return safety_number(group.epoch_authenticator())


def member_list(group: Group, verifier: IdentityVerifier | None) -> list[MemberInfo]:
    """Every leaf: its index, network identity (X.509: read through ``verifier``, the
    member's pinned CA), key fingerprint, and whether it is ours."""
    own = int(group.own_leaf)
    return [MemberInfo(int(leaf), identity_of(node.credential, verifier),
                       fingerprint(node.signature_key), int(leaf) == own)
            for leaf, node in group.members()]
