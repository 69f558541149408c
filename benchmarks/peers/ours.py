"""Adapter for this project's ``mls`` package (the implementation under test)."""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Any

from benchmarks.peers import Driver
from mls.codec import decode, encode
from mls.crypto.suite import suite
from mls.group.events import ApplicationEvent
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle, create_key_package
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage

GROUP_ID = b"benchmark group"


class OursDriver(Driver):
    """mls (this project), cipher suite 1, handshakes as PublicMessage (the default)."""

    name = "ours"

    def __init__(self, suite_id: int = 1) -> None:
        self.cs = suite(suite_id)
        self.rng = os.urandom
        self.now = int(time.time())
        self._groups = 0

    def describe(self) -> str:
        return "ours (mls, this project)"

    def make_members(self, count: int, first_index: int = 0) -> list[Any]:
        members = []
        for index in range(first_index, first_index + count):
            signature_priv, _ = self.cs.generate_signature_key_pair(self.rng)
            members.append(create_key_package(
                self.cs, Credential.basic(b"member %d" % index), signature_priv,
                rng=self.rng, now=self.now))
        return members

    def key_package(self, member: Any) -> bytes:
        bundle: KeyPackageBundle = member
        return encode(MLSMessage.wrap(bundle.key_package))

    def create_and_add(self, creator: Any, key_packages: list[bytes]
                       ) -> tuple[float, Any, bytes]:
        self._groups += 1
        group_id = GROUP_ID + b" %d" % self._groups
        start = time.perf_counter()
        parsed = []
        for data in key_packages:
            body = decode(MLSMessage, data).body
            assert isinstance(body, KeyPackage)
            parsed.append(body)
        group = Group.create(creator, group_id=group_id, rng=self.rng)
        staged = group.commit(rng=self.rng, add=parsed, now=self.now)
        encode(staged.message)
        assert staged.welcome is not None
        welcome = encode(staged.welcome)
        elapsed = time.perf_counter() - start
        return elapsed, group.merge(staged), welcome

    def join(self, member: Any, welcome: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        group = Group.join(decode(MLSMessage, welcome), member, now=self.now)
        return time.perf_counter() - start, group

    def commit_empty(self, group: Any) -> tuple[float, Any, bytes]:
        start = time.perf_counter()
        staged = group.commit(rng=self.rng, force_path=True, now=self.now)
        data = encode(staged.message)
        elapsed = time.perf_counter() - start
        return elapsed, group.merge(staged), data

    def process(self, group: Any, commit: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        new_group, _ = group.process(decode(MLSMessage, commit), now=self.now)
        return time.perf_counter() - start, new_group

    def app_messages(self, sender: Any, receiver: Any, count: int, size: int
                     ) -> tuple[float, Any, Any]:
        payload = b"\xa5" * size
        start = time.perf_counter()
        for _ in range(count):
            sender, message = sender.encrypt(payload, rng=self.rng)
            data = encode(message)
            receiver, event = receiver.process(decode(MLSMessage, data))
            assert isinstance(event, ApplicationEvent) and len(event.data) == size
        return time.perf_counter() - start, sender, receiver

    def state_size(self, group: Any) -> int | None:
        return len(group.to_bytes())

    def join_peak_memory(self, member: Any, welcome: bytes) -> int | None:
        tracemalloc.start()
        try:
            Group.join(decode(MLSMessage, welcome), member, now=self.now)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def leaf_of(self, group: Any) -> int | None:
        return int(group.own_leaf)
