"""Network identities in MLS credentials.

A member's credential names the user its network authenticated, as a URI:
``xmpp:alice@example.org`` for an XMPP account, ``matrix:u/alice:example.org`` for a
Matrix user (the scheme of RFC 9420 §5.3's BasicCredential ``identity``, chosen by this
project; the transports build the URIs). The hub, the member client and the relay read
identities through :func:`identity_of` only.
"""

from __future__ import annotations

import hashlib

from mls.enums import CredentialType
from mls.messages.credentials import Credential


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
