"""Adapter for ``rfc9420`` (PyPI; pure-Python RFC 9420, a.k.a. PyMLS).

API learned from the installed package (``rfc9420/__init__.py``, ``group/mls_group/
group.py`` and ``processing.py`` docstrings): ``MLSGroup.create(config, group_id,
key_package)``, ``add(key_package, signing_key)`` -> Add proposal (then
``process_proposal`` so it is pending), ``create_commit(signing_key)`` ->
``StagedCommit`` with ``commit_message`` / ``welcomes``, ``apply_staged_commit``,
``process_commit``, ``protect`` / ``unprotect``; messages ``serialize()`` /
``deserialize()``.  rfc9420 1.3.0 has no KeyPackage generator, so its KeyPackages are
made by our ``create_key_package`` and handed over as RFC 9420 KeyPackage bytes (which
it parses itself, in the timed region).  Its wire bytes are the bare PublicMessage /
Welcome / PrivateMessage structs (no MLSMessage header); parsing uses
``MLSPlaintext.deserialize`` directly, not ``decode_handshake`` (which keeps a cache
of messages it encoded).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
import tracemalloc
from typing import Any

from benchmarks.peers import Driver, PeerUnavailable
from benchmarks.peers.ours import OursDriver
from mls.codec import encode

try:
    from rfc9420 import DefaultCryptoProvider, MemoryStorageProvider, ProtocolMLSGroup
    from rfc9420 import GroupConfig as RfcConfig
    from rfc9420 import MLSGroup as RfcGroup
    from rfc9420.messages.data_structures import Welcome as RfcWelcome
    from rfc9420.messages.key_packages import KeyPackage as RfcKeyPackage
    from rfc9420.messages.messages import MLSCiphertext, MLSPlaintext
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PeerUnavailable("rfc9420 is not installed") from exc




class Member:
    __slots__ = ("bundle", "key_package")

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.key_package = encode(bundle.key_package)


class Group:
    __slots__ = ("group", "member")

    def __init__(self, group: Any, member: Member) -> None:
        self.group, self.member = group, member


class Rfc9420Driver(Driver):
    name = "rfc9420"

    def __init__(self) -> None:
        self.config = RfcConfig(crypto_provider=DefaultCryptoProvider(),
                                storage_provider=MemoryStorageProvider())
        self.keys = OursDriver()
        self._groups = 0

    def describe(self) -> str:
        return f"rfc9420 {importlib.metadata.version('rfc9420')} (PyPI, pure Python)"

    def make_members(self, count: int, first_index: int = 0) -> list[Any]:
        return [Member(b) for b in self.keys.make_members(count, first_index)]

    def key_package(self, member: Any) -> bytes:
        return bytes(member.key_package)

    def _merge(self, group: Any, staged: Any) -> None:
        asyncio.run(staged.merge(self.config.storage_provider))
        group.apply_staged_commit(staged)

    def create_and_add(self, creator: Any, key_packages: list[bytes]
                       ) -> tuple[float, Any, bytes]:
        self._groups += 1
        signing_key = creator.bundle.signature_priv
        start = time.perf_counter()
        group = RfcGroup.create(self.config, b"benchmark group %d" % self._groups,
                                RfcKeyPackage.deserialize(creator.key_package))
        for data in key_packages:
            proposal = group.add(RfcKeyPackage.deserialize(data), signing_key)
            group.process_proposal(proposal, group.own_leaf_index)
        staged = group.create_commit(signing_key)
        staged.commit_message.serialize()
        welcomes = staged.welcomes
        if len(welcomes) != 1:
            raise RuntimeError(f"expected one Welcome, got {len(welcomes)}")
        welcome = welcomes[0].serialize()
        elapsed = time.perf_counter() - start
        self._merge(group, staged)
        return elapsed, Group(group, creator), welcome

    def _join(self, member: Any, welcome: bytes) -> Any:
        inner = ProtocolMLSGroup.from_welcome(
            welcome=RfcWelcome.deserialize(welcome),
            hpke_private_key=member.bundle.init_priv,
            crypto_provider=self.config.crypto_provider,
            rand_provider=self.config.resolved_rand_provider(),
            tree_backend=self.config.tree_backend_id,
            key_package=RfcKeyPackage.deserialize(member.key_package),
            encryption_private_key=member.bundle.encryption_priv)
        return RfcGroup(self.config, inner)

    def join(self, member: Any, welcome: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        group = self._join(member, welcome)
        return time.perf_counter() - start, Group(group, member)

    def commit_empty(self, group: Any) -> tuple[float, Any, bytes]:
        start = time.perf_counter()
        staged = group.group.create_commit(group.member.bundle.signature_priv)
        data = staged.commit_message.serialize()
        elapsed = time.perf_counter() - start
        self._merge(group.group, staged)
        return elapsed, group, data

    def process(self, group: Any, commit: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        group.group.process_commit(MLSPlaintext.deserialize(commit))
        return time.perf_counter() - start, group

    def app_messages(self, sender: Any, receiver: Any, count: int, size: int
                     ) -> tuple[float, Any, Any]:
        payload = b"\xa5" * size
        signing_key = sender.member.bundle.signature_priv
        start = time.perf_counter()
        for _ in range(count):
            data = sender.group.protect(payload, signing_key=signing_key).serialize()
            _, plaintext = receiver.group.unprotect(MLSCiphertext.deserialize(data))
            assert len(plaintext) == size
        return time.perf_counter() - start, sender, receiver

    def state_size(self, group: Any) -> int | None:
        return len(group.group._inner.to_bytes())

    def join_peak_memory(self, member: Any, welcome: bytes) -> int | None:
        tracemalloc.start()
        try:
            self._join(member, welcome)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
