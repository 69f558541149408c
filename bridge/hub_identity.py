"""What a :class:`bridge.hub.Hub` is given: its identity (name and signing keys, which
groups list as their external sender, RFC 9420 §12.1.8.1), its local policy, and the
observer that watches it (metrics)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bridge import public_view
from bridge.errors import Unsupported
from mls.crypto.suite import Rng
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalSender
from transports.interface import Inbound, Outbound


@dataclass(frozen=True, slots=True)
class HubIdentity:
    """The hub's name and signing keys (one per cipher suite), which groups list in
    their external_senders extension. Keep it across restarts: groups trust its key."""

    name: str
    signature_keys: Mapping[int, bytes] = field(repr=False)

    @classmethod
    def generate(cls, name: str, suites: tuple[int, ...] = (1,), rng: Rng = os.urandom
                 ) -> HubIdentity:
        keys = {}
        for suite_id in suites:
            private, _ = public_view.cipher_suite(suite_id).generate_signature_key_pair(rng)
            keys[suite_id] = private
        return cls(name, keys)

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


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Local policy. ``max_epoch_lag``: how many epochs an application message may be
    behind the current one. ``allow_external_join(group_id, identity)`` decides who may
    fetch the GroupInfo and join by external commit (members may always resync)."""

    max_payload: int = 1 << 20
    max_epoch_lag: int = 1
    log_page_limit: int = 500
    allow_external_join: Callable[[bytes, str], bool] = field(
        default=lambda group_id, identity: True)


class HubObserver(Protocol):
    """Watches the hub from outside (metrics): every request and every delivery."""

    def request_started(self, request: Inbound) -> None: ...

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None: ...

    def delivery_started(self, message: Outbound) -> None: ...

    def delivery_finished(self, message: Outbound, ok: bool) -> None: ...
