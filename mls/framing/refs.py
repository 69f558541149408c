"""Hash-based identifiers (RFC 9420 §5.2)."""

from __future__ import annotations

from mls.codec import encode
from mls.crypto import CipherSuite
from mls.messages.framing import AuthenticatedContent
from mls.messages.key_package import KeyPackage

KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"
PROPOSAL_REF_LABEL = b"MLS 1.0 Proposal Reference"


def key_package_ref(cs: CipherSuite, key_package: KeyPackage | bytes) -> bytes:
    """KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)."""
    data = key_package if isinstance(key_package, bytes) else encode(key_package)
    return cs.ref_hash(KEY_PACKAGE_REF_LABEL, data)


def proposal_ref(cs: CipherSuite, authenticated: AuthenticatedContent | bytes) -> bytes:
    """ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent)."""
    data = authenticated if isinstance(authenticated, bytes) else encode(authenticated)
    return cs.ref_hash(PROPOSAL_REF_LABEL, data)
