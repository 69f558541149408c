"""Micro-benchmark of the cryptographic primitives of every MLS cipher suite.

Run as ``python -m benchmarks.primitives``.  For each suite 1-7 it prints a markdown
table of HPKE seal/open, DeriveKeyPair, sign, verify and ExpandWithLabel, in µs per
operation (median of several timed runs).  This is a measurement, not a test.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend

from mls.crypto.suite import CipherSuite, suite
from mls.enums import CipherSuiteId

RUNS = 5
#: Target wall-clock time of one timed run, in seconds.
RUN_SECONDS = 0.03


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    return (f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}; cryptography {cryptography.__version__} "
            f"({openssl_backend.openssl_version_text()})")


def median_seconds(operation: Callable[[], object], runs: int = RUNS,
                   target: float = RUN_SECONDS, max_iterations: int = 1 << 20) -> float:
    """Median seconds per call over ``runs`` runs, each sized to about ``target``
    seconds (the first call warms caches: parsed keys, cipher objects)."""
    operation()
    iterations = 1
    while True:
        start = time.perf_counter()
        for _ in range(iterations):
            operation()
        elapsed = time.perf_counter() - start
        if elapsed >= target / 4 or iterations >= max_iterations:
            break
        iterations *= 2
    iterations = max(1, int(iterations * target / max(elapsed, 1e-9)))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iterations):
            operation()
        samples.append((time.perf_counter() - start) / iterations)
    return statistics.median(samples)


def time_op(operation: Callable[[], object]) -> float:
    """Median µs per call over RUNS runs, each sized to about RUN_SECONDS."""
    return median_seconds(operation) * 1e6


def suite_operations(cs: CipherSuite) -> list[tuple[str, Callable[[], object]]]:
    """The operations measured for one suite, on fixed inputs."""
    info = b"\x00" * 64  # about the size of an EncryptContext
    plaintext = b"\x11" * cs.hash_len  # a path secret
    hpke_priv, hpke_pub = cs.derive_key_pair(b"\x22" * cs.hash_len)
    kem_output, ciphertext = cs.kem.seal(hpke_pub, info, plaintext)
    sig_priv, sig_pub = cs.signature.generate_key_pair(lambda n: b"\x33" * n)
    message = b"\x44" * 256  # a LeafNodeTBS-sized message
    signature = cs.signature.sign(sig_priv, message)
    secret = b"\x55" * cs.hash_len
    ikm = b"\x66" * cs.hash_len
    operations: list[tuple[str, Callable[[], object]]] = [
        ("HPKE seal", lambda: cs.kem.seal(hpke_pub, info, plaintext)),
        ("HPKE open", lambda: cs.kem.open(hpke_priv, info, kem_output, ciphertext)),
        ("DeriveKeyPair", lambda: cs.kem.derive_key_pair(ikm)),
        ("sign", lambda: cs.signature.sign(sig_priv, message)),
        ("verify", lambda: cs.signature.verify(sig_pub, message, signature)),
        ("ExpandWithLabel", lambda: cs.expand_with_label(secret, b"key", b"", cs.key_size)),
    ]
    return operations


def main() -> int:
    print(machine_line())
    print(f"Median of {RUNS} runs of ~{RUN_SECONDS * 1000:.0f} ms each; µs per operation.")
    started = time.perf_counter()
    for suite_id in CipherSuiteId:
        cs = suite(suite_id)
        print()
        print(f"### Suite {int(suite_id)}: {suite_id.name} (HPKE: {cs.kem.backend})")
        print()
        print("| operation | µs/op | ops/s |")
        print("|---|---:|---:|")
        for name, operation in suite_operations(cs):
            micros = time_op(operation)
            print(f"| {name} | {micros:.1f} | {1e6 / micros:,.0f} |")
        sys.stdout.flush()
    print()
    print(f"Total benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
