"""Network identities in MLS credentials.

A member's credential names the user its network authenticated, as a URI:
``xmpp:alice@example.org`` for an XMPP account, ``matrix:u/alice:example.org`` for a
Matrix user (this project's choice of presented identifier, RFC 9420 §5.3; the
transports build the URIs). The hub, the member client and the relay read identities
through :func:`identity_of` only.

A basic credential's identity is a bare assertion (vouched for by the hub's KeyPackage
directory only). An X.509 credential's identity is its certificate's subjectAltName URI,
and :func:`identity_of` returns it only when an :class:`IdentityVerifier` (the pinned CA:
:class:`bridge.credentials.TrustAnchor`) verified the chain; otherwise it returns a
string starting with :data:`UNVERIFIED`, which is never a network identity and so never
matches one.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from mls.enums import CredentialType
from mls.errors import ValidationError
from mls.messages.credentials import Credential

#: The prefix of what :func:`identity_of` returns for an X.509 credential it could not
#: verify (followed by the SHA-256 of its end-entity certificate).
UNVERIFIED = "unverified-x509:"


class IdentityVerifier(Protocol):
    """Verifies an X.509 credential's chain and returns the identity it names."""

    def identity(self, credential: Credential) -> str:
        """The verified identity; raises :class:`mls.errors.ValidationError` if not."""
        ...


def identity_of(credential: Credential, verifier: IdentityVerifier | None = None) -> str:
    """The user a credential names: a basic credential's identity as text (a URI such
    as ``xmpp:alice@example.org``); an X.509 credential's SAN URI once ``verifier``
    verified its chain, else ``unverified-x509:<hash of its certificate>``. Whether the
    certificate's key is the leaf's and its validity are the credential validator's
    checks, made when the leaf entered the group (:class:`bridge.credentials.CredentialPolicy`)."""
    if credential.credential_type == CredentialType.BASIC:
        try:
            return credential.identity.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid-utf8:" + credential.identity.hex()
    if credential.credential_type == CredentialType.X509 and credential.certificates:
        if verifier is not None:
            try:
                return verifier.identity(credential)
            except ValidationError:
                pass
        return UNVERIFIED + hashlib.sha256(credential.certificates[0]).hexdigest()
    return f"credential-type-{credential.credential_type}"
