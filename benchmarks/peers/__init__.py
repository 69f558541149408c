"""Adapters that let :mod:`benchmarks.group_ops` drive one MLS implementation.

Every adapter implements :class:`Driver`.  The benchmark keeps the orchestration (which
member commits, who processes, how many repetitions) in one place, so every
implementation is measured on exactly the same scenario; an adapter only performs one
protocol operation and says how long the *measured* part took.

Rules every adapter follows (see benchmarks/README.md):

* KeyPackages are generated (untimed) by :meth:`Driver.make_members`.
* Every message crosses between members as bytes: the sender serializes inside the
  timed region, the receiver parses inside its timed region.
* Handshake messages are PublicMessages (where the implementation lets us choose).
* The committer's own "merge" of a commit is *not* part of the create time.
"""

from __future__ import annotations

from typing import Any


class PeerUnavailable(Exception):
    """The implementation is not installed or cannot be started (message says why)."""


class Driver:
    """One MLS implementation.  Members and groups are opaque objects of the adapter."""

    #: Short name used in the table.
    name = "?"

    def describe(self) -> str:
        """Version and notes for the table header."""
        return self.name

    def close(self) -> None:
        """Release processes or other resources."""

    # -- untimed helpers -------------------------------------------------------------

    def make_members(self, count: int, first_index: int = 0) -> list[Any]:
        """``count`` fresh members, each with one KeyPackage (untimed)."""
        raise NotImplementedError

    def key_package(self, member: Any) -> bytes:
        """The member's KeyPackage as the bytes a delivery service would carry."""
        raise NotImplementedError

    # -- timed operations: each returns the seconds of its measured part first -------

    def create_and_add(self, creator: Any, key_packages: list[bytes]
                       ) -> tuple[float, Any, bytes]:
        """Create a group and add every KeyPackage in one Commit.

        Timed: parse the KeyPackages, create, commit, serialize Commit and Welcome.
        Returns (seconds, creator's group in the new epoch, Welcome bytes)."""
        raise NotImplementedError

    def join(self, member: Any, welcome: bytes) -> tuple[float, Any]:
        """Join from Welcome bytes (ratchet tree in the Welcome).  Timed: parse + join."""
        raise NotImplementedError

    def commit_empty(self, group: Any) -> tuple[float, Any, bytes]:
        """An empty Commit with an UpdatePath.  Timed: create + serialize.
        Returns (seconds, committer's group in the new epoch, Commit bytes)."""
        raise NotImplementedError

    def process(self, group: Any, commit: bytes) -> tuple[float, Any]:
        """Process Commit bytes.  Timed: parse + process.  Returns (seconds, group)."""
        raise NotImplementedError

    def app_messages(self, sender: Any, receiver: Any, count: int, size: int
                     ) -> tuple[float, Any, Any]:
        """``count`` application messages of ``size`` bytes, each encrypted and
        serialized by ``sender`` and parsed and decrypted by ``receiver``.
        Returns (total seconds, sender, receiver)."""
        raise NotImplementedError

    def state_size(self, group: Any) -> int | None:
        """Bytes of the member's serialized state, or None if not available."""
        return None

    def join_peak_memory(self, member: Any, welcome: bytes) -> int | None:
        """tracemalloc peak (bytes) during a join, or None if not measurable."""
        return None

    def leaf_of(self, group: Any) -> int | None:
        """The member's own leaf index (for sanity checks), if known."""
        return None
