"""Network identities in MLS credentials, and the relay's marked identities.

A member's credential names the user its network authenticated, as a URI:
``xmpp:alice@example.org`` for an XMPP account, ``matrix:u/alice:example.org`` for a
Matrix user (the scheme of RFC 9420 §5.3's BasicCredential ``identity``, chosen by this
project; the transports build the URIs). The hub, the member client and the relay read
identities through :func:`identity_of` only.

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

from mls.enums import CredentialType
from mls.messages.credentials import Credential
from transports.interface import IDENTITY_SCHEMES, Network, network_of

#: The namespace of relay puppets: ``relay+`` + the legacy user's network identity.
RELAY_PREFIX = "relay+"
#: How members see a relayed identity: the legacy user's name and this mark.
RELAYED_MARK = " (relayed)"


def identity_of(credential: Credential) -> str:
    """The user a credential names: a basic credential's identity as text (a URI such
    as ``xmpp:alice@example.org``); an x509 chain by the hash of its leaf certificate."""
    if credential.credential_type == CredentialType.BASIC:
        try:
            return credential.identity.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid-utf8:" + credential.identity.hex()
    if credential.credential_type == CredentialType.X509 and credential.certificates:
        return "x509:" + hashlib.sha256(credential.certificates[0]).hexdigest()
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
