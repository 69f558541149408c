"""Adapter for mls-rs through its UniFFI Python bindings (PyPI agentvault-mls-rs-uniffi).

API learned from the package's own ``mls_rs_uniffi.py`` (docstrings and signatures):
``Client(id, signature_keypair, ClientConfig(group_state_storage, use_ratchet_tree_
extension))``, ``generate_key_package_message``, ``create_group``, ``Group.add_members``
/ ``commit`` (returning ``CommitOutput``), ``Client.join_group``,
``Group.process_incoming_message`` and ``Message.to_bytes`` / ``from_bytes``.  The
committer applies its own pending commit by processing its own commit message (that
"merge" is outside the timed region).  mls-rs sends handshakes as PublicMessage by
default (checked from the wire format bytes).  State size = the group state mls-rs
writes to its ``GroupStateStorage`` (our in-memory implementation) on
``write_to_storage``.
"""

from __future__ import annotations

import importlib.metadata
import time
from typing import Any

from benchmarks.peers import Driver, PeerUnavailable

try:
    import mls_rs_uniffi as rs
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PeerUnavailable("agentvault-mls-rs-uniffi is not installed") from exc

PUBLIC_MESSAGE = b"\x00\x01\x00\x01"  # mls10, mls_public_message


class MemoryStorage(rs.GroupStateStorage):  # type: ignore[misc]
    """In-memory GroupStateStorage (the interface mls-rs persists group state to)."""

    def __init__(self) -> None:
        self.states: dict[bytes, bytes] = {}
        self.epochs: dict[tuple[bytes, int], bytes] = {}

    def state(self, group_id: bytes) -> bytes | None:
        return self.states.get(group_id)

    def epoch(self, group_id: bytes, epoch_id: int) -> bytes | None:
        return self.epochs.get((group_id, epoch_id))

    def write(self, group_id: bytes, group_state: bytes, epoch_inserts: list[Any],
              epoch_updates: list[Any]) -> None:
        self.states[group_id] = group_state
        for record in (*epoch_inserts, *epoch_updates):
            self.epochs[(group_id, record.id)] = record.data

    def max_epoch_id(self, group_id: bytes) -> int | None:
        ids = [epoch for (gid, epoch) in self.epochs if gid == group_id]
        return max(ids) if ids else None


class Member:
    __slots__ = ("client", "key_package", "storage")

    def __init__(self, client: Any, storage: MemoryStorage, key_package: bytes) -> None:
        self.client, self.storage, self.key_package = client, storage, key_package


class Group:
    __slots__ = ("group", "id", "member")

    def __init__(self, group: Any, member: Member, group_id: bytes) -> None:
        self.group, self.member, self.id = group, member, group_id


class MlsRsDriver(Driver):
    name = "mls-rs"

    def __init__(self) -> None:
        self.suite = rs.CipherSuite.CURVE25519_AES128
        self._groups = 0

    def describe(self) -> str:
        version = importlib.metadata.version("agentvault-mls-rs-uniffi")
        return f"mls-rs via agentvault-mls-rs-uniffi {version} (Rust, UniFFI)"

    def make_members(self, count: int, first_index: int = 0) -> list[Any]:
        members = []
        for index in range(first_index, first_index + count):
            storage = MemoryStorage()
            config = rs.ClientConfig(group_state_storage=storage,
                                     use_ratchet_tree_extension=True)
            client = rs.Client(b"member %d" % index, rs.generate_signature_keypair(self.suite),
                               config)
            members.append(Member(client, storage,
                                  client.generate_key_package_message().to_bytes()))
        return members

    def key_package(self, member: Any) -> bytes:
        return bytes(member.key_package)

    def create_and_add(self, creator: Any, key_packages: list[bytes]
                       ) -> tuple[float, Any, bytes]:
        self._groups += 1
        group_id = b"benchmark group %d" % self._groups
        start = time.perf_counter()
        parsed = [rs.Message.from_bytes(data) for data in key_packages]
        group = creator.client.create_group(group_id)
        output = group.add_members(parsed)
        commit = output.commit_message.to_bytes()
        welcome = output.welcome_message.to_bytes()
        elapsed = time.perf_counter() - start
        if commit[:4] != PUBLIC_MESSAGE:
            raise RuntimeError("mls-rs did not send the commit as a PublicMessage")
        group.process_incoming_message(output.commit_message)  # merge our own commit
        return elapsed, Group(group, creator, group_id), welcome

    def join(self, member: Any, welcome: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        info = member.client.join_group(None, rs.Message.from_bytes(welcome))
        elapsed = time.perf_counter() - start
        return elapsed, Group(info.group, member, b"")

    def commit_empty(self, group: Any) -> tuple[float, Any, bytes]:
        start = time.perf_counter()
        output = group.group.commit()
        data = output.commit_message.to_bytes()
        elapsed = time.perf_counter() - start
        group.group.process_incoming_message(output.commit_message)  # merge
        return elapsed, group, data

    def process(self, group: Any, commit: bytes) -> tuple[float, Any]:
        start = time.perf_counter()
        group.group.process_incoming_message(rs.Message.from_bytes(commit))
        return time.perf_counter() - start, group

    def app_messages(self, sender: Any, receiver: Any, count: int, size: int
                     ) -> tuple[float, Any, Any]:
        payload = b"\xa5" * size
        start = time.perf_counter()
        for _ in range(count):
            data = sender.group.encrypt_application_message(payload).to_bytes()
            received = receiver.group.process_incoming_message(rs.Message.from_bytes(data))
            assert received.is_application_message()
        return time.perf_counter() - start, sender, receiver

    def state_size(self, group: Any) -> int | None:
        group.group.write_to_storage()
        states = group.member.storage.states
        return max((len(s) for s in states.values()), default=None)
