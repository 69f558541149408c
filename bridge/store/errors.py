"""Errors raised by the hub's stores (``bridge.store``).

One root, :class:`StoreError`; every backend raises the same subclasses, so the hub never
catches ``sqlite3`` or ``asyncpg`` exceptions. Driver errors that are not one of the
specific cases below surface as :class:`StoreUnavailable`, chained to the original.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by a :class:`bridge.store.Store`."""


class UnknownGroup(StoreError):
    """The group id is not in the store."""

    def __init__(self, group_id: bytes) -> None:
        super().__init__(f"unknown group {group_id.hex()}")
        self.group_id = group_id


class WrongEpoch(StoreError):
    """A commit or proposal named an epoch other than the group's current one.

    RFC 9750 §5.2: the hub accepts exactly one commit per epoch; the loser of a race is told
    the current epoch so it can apply the winner and retry.
    """

    def __init__(self, current_epoch: int) -> None:
        super().__init__(f"wrong epoch (current {current_epoch})")
        self.current_epoch = current_epoch


class ProposalsNotCovered(StoreError):
    """A commit did not include every proposal the hub queued for its epoch."""

    def __init__(self, missing: tuple[bytes, ...]) -> None:
        refs = ", ".join(ref.hex() for ref in missing)
        super().__init__(f"commit does not cover queued proposals: {refs}")
        self.missing = missing


class KeyPackageUnavailable(StoreError):
    """No unexpired KeyPackage (not even a last-resort one) is left for the user."""

    def __init__(self, user: str, cipher_suite: int, device: str | None = None) -> None:
        who = user if device is None else f"{user} device {device}"
        super().__init__(f"no KeyPackage for {who} with cipher suite {cipher_suite}")
        self.user = user
        self.cipher_suite = cipher_suite
        self.device = device


class Conflict(StoreError):
    """The write would clash with an existing row (duplicate group, KeyPackage ref, room...)."""


class StoreUsageError(StoreError):
    """The caller passed arguments the store contract does not allow (local misuse)."""


class StoreUnavailable(StoreError):
    """The database failed (locked past the busy timeout, connection lost, disk error...)."""
