"""The hub's signing identity on disk, shared by every service (XMPP, Matrix).

Groups list the hub's ExternalSender key in their ``external_senders`` extension and
members pin the hub's CA certificate, so the same identity must survive restarts. It
lives in its own file (mode 0600), never in the store::

    {"name": "...", "keys": {"1": "<hex>", ...},
     "ca": {"key": "<hex Ed25519 private key>", "certificate": "<hex DER>"}}

A file written before the hub had a CA gets one added (and rewritten, 0600) on load.
The file follows :mod:`transports.private_files`: written atomically with mode 0600,
and refused (:class:`PermissionError`) when anyone else may access it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bridge.credentials import CertificateAuthority
from bridge.hub import HubIdentity
from transports.private_files import read_private, write_private

ALL_SUITES = (1, 2, 3, 4, 5, 6, 7)


def load_identity(path: Path, name: str, suites: tuple[int, ...] = ALL_SUITES) -> HubIdentity:
    """The hub's identity from ``path``; generated and written (0600) if absent."""
    text = read_private(path, "the hub's identity (its signing and CA keys)")
    if text is None:
        identity = HubIdentity.generate(name, suites)
        write_private(path, _text(identity))
        return identity
    data = json.loads(text)
    keys = {int(suite): bytes.fromhex(key) for suite, key in data["keys"].items()}
    if "ca" in data:
        ca = CertificateAuthority(bytes.fromhex(data["ca"]["key"]),
                                  bytes.fromhex(data["ca"]["certificate"]))
        return HubIdentity(data["name"], keys, ca)
    identity = HubIdentity(data["name"], keys, CertificateAuthority.generate(
        data["name"], now=int(time.time()), rng=os.urandom))
    write_private(path, _text(identity))
    return identity


def _text(identity: HubIdentity) -> str:
    return json.dumps({
        "name": identity.name,
        "keys": {str(s): k.hex() for s, k in identity.signature_keys.items()},
        "ca": {"key": identity.ca.private_key.hex(),
               "certificate": identity.ca.certificate.hex()}})


def default_identity_file(store_url: str) -> Path:
    """``<database>.hub-key`` beside a SQLite store, else ``hub.key``."""
    if store_url.startswith("sqlite:///") and ":memory:" not in store_url:
        return Path(store_url.removeprefix("sqlite:///") + ".hub-key")
    return Path("hub.key")
