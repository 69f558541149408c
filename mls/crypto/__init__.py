"""Cryptographic layer of ``mls``: cipher suites, HPKE, signatures (RFC 9420 §5)."""

from mls.crypto.suite import CipherSuite, Rng, suite

__all__ = ["CipherSuite", "Rng", "suite"]
