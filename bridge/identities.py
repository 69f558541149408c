"""Network identities in MLS credentials, and the relay's marked identities.

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

A relay puppet (:mod:`bridge.relay`) -- the leaf the bridge holds for a legacy user who
runs no MLS client -- is named in a namespace of its own: ``relay+`` followed by the
legacy user's network identity (``relay+xmpp:alice@example.org``,
``relay+matrix:u/bob:example.org``, :func:`relay_identity`). No network authenticates
anyone under ``relay+`` (the schemes are ``xmpp:`` and ``matrix:u/``), so a relayed
identity never equals a member's, on either network; the hub accepts relayed
identities only from the bridge's in-process relay link (``docs/SECURITY.md``). Members
show them with a mark: ``alice@example.org (relayed)`` (:func:`display`).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from mls.enums import CredentialType
from mls.errors import ValidationError
from mls.messages.credentials import Credential
from transports.interface import IDENTITY_SCHEMES, Network, network_of

#: The namespace of relay puppets: ``relay+`` + the legacy user's network identity.
RELAY_PREFIX = "relay+"
#: How members see a relayed identity: the legacy user's name and this mark.
RELAYED_MARK = " (relayed)"

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


def is_network_identity(identity: str) -> bool:
    """Whether ``identity`` is one a network authenticates (a scheme and a name)."""
    scheme = IDENTITY_SCHEMES.get(network_of(identity))
    return scheme is not None and len(identity) > len(scheme)


def relay_identity(legacy: str) -> str:
    """The relay puppet's identity for the legacy user ``legacy`` (a network
    identity); ValueError for anything else."""
    if not is_network_identity(legacy):
        raise ValueError("a relay identity stands for a network identity")
    return RELAY_PREFIX + legacy


def relayed_user(identity: str) -> str | None:
    """The legacy user a relay identity stands for (None if ``identity`` is not a
    well-formed relay identity)."""
    if not identity.startswith(RELAY_PREFIX):
        return None
    legacy = identity.removeprefix(RELAY_PREFIX)
    return legacy if is_network_identity(legacy) else None


def is_relayed(identity: str) -> bool:
    """Whether ``identity`` is a relay puppet's (well formed)."""
    return relayed_user(identity) is not None


def display(identity: str) -> str:
    """How an identity is shown to people: ``alice@example.org`` for
    ``xmpp:alice@example.org``, ``@bob:example.org`` for ``matrix:u/bob:example.org``,
    ``alice@example.org (relayed)`` for ``relay+xmpp:alice@example.org``; anything
    else as it is."""
    legacy = relayed_user(identity)
    if legacy is not None:
        return display(legacy) + RELAYED_MARK
    network = network_of(identity)
    if network and is_network_identity(identity):
        name = identity.removeprefix(IDENTITY_SCHEMES[network])
        return "@" + name if network == Network.MATRIX else name
    return identity
