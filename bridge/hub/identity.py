"""The hub's identity: its name, the signing keys which groups list as their external
sender (RFC 9420 §12.1.8.1), and the per-bridge CA with which it attests members'
signature keys (RFC 9420 §5.3, :mod:`bridge.credentials`)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.credentials import CertificateAuthority, HubInfo
from bridge.errors import Unsupported
from bridge.hub import public_view
from mls.crypto.suite import Rng
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender


@dataclass(frozen=True, slots=True)
class HubIdentity:
    """The hub's name, signing keys (one per cipher suite), which groups list in their
    external_senders extension, and CA, which members pin. Keep it across restarts:
    groups trust its keys and members its CA."""

    name: str
    signature_keys: Mapping[int, bytes] = field(repr=False)
    ca: CertificateAuthority = field(repr=False)

    @classmethod
    def generate(cls, name: str, suites: tuple[int, ...] = (1,), rng: Rng = os.urandom,
                 now: int | None = None) -> HubIdentity:
        keys = {}
        for suite_id in suites:
            private, _ = public_view.cipher_suite(suite_id).generate_signature_key_pair(rng)
            keys[suite_id] = private
        ca = CertificateAuthority.generate(
            name, now=int(time.time()) if now is None else now, rng=rng)
        return cls(name, keys, ca)

    @property
    def credential(self) -> Credential:
        return Credential.basic(self.name.encode("utf-8"))

    def signature_priv(self, suite_id: int) -> bytes:
        try:
            return self.signature_keys[suite_id]
        except KeyError:
            raise Unsupported(f"the hub has no key for cipher suite {suite_id}") from None

    def signature_public(self, suite_id: int) -> bytes:
        cs = public_view.cipher_suite(suite_id)
        return cs.signature_public_key(self.signature_priv(suite_id))

    def external_sender(self, suite_id: int) -> ExternalSender:
        """RFC 9420 §12.1.8.1: what a group creator lists in external_senders."""
        return ExternalSender(self.signature_public(suite_id), self.credential)

    def hub_info(self, suite_id: int) -> HubInfo:
        """What ``hub-info`` answers: the external sender and the CA certificate."""
        return HubInfo(self.external_sender(suite_id), self.ca.certificate)
