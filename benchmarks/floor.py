"""The cryptographic floor of each group-operation benchmark row.

For every row of :mod:`benchmarks.group_ops` this module counts the public-key
operations, hashes and AEAD bytes that RFC 9420 obliges an implementation to perform,
times each primitive alone with :mod:`mls.crypto` (median of several runs), and
returns count x unit cost.  The difference between a row's measured time and its floor
is the implementation's overhead (encoding, tree handling, Python itself).

The counts are the *minimum* a conforming implementation must do; they assume cached
subtree hashes (only the changed path is re-hashed after a commit) and skip optional
work (e.g. the signed GroupInfo that a plain commit does not need).  Run
``python -m benchmarks.floor`` to print the unit costs and counts.

Counts per row (N members, leaves 0..N-1; committer = leaf N-1, processor = leaf 0):

1. create + add N-1 (no path): per KeyPackage 2 verifies (KeyPackage, LeafNode) and
   1 KeyPackageRef hash, per joiner 1 HPKE seal of its GroupSecrets; 2 signs (Commit,
   GroupInfo); tree hash over 2N-1 nodes; AEAD of the GroupInfo (~tree size); key
   schedule.
2. join: 1 HPKE open, 1 verify (GroupInfo) + N verifies (every leaf, §12.4.3.1 /
   §7.3), tree hash over 2N-1 nodes, 1 KeyPackageRef hash, AEAD-decrypt of the
   GroupInfo, key schedule.
3./4. empty commit with path, create: 1 DeriveKeyPair per filtered direct-path node
   and for the leaf, 1 HPKE seal per node in the resolution of each copath child
   (N-1 for the sparse tree), 2 signs (LeafNode, Commit), parent + tree hashes along
   the path, path-secret derivations, key schedule.  Process: 2 verifies, 1 HPKE open,
   1 DeriveKeyPair per path node from the common ancestor up, path hashes, key
   schedule.
5. application message (encrypt + decrypt): 1 sign, 1 verify, AEAD of the content
   each way, AEAD of the sender data each way, ratchet derivations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.primitives import median_seconds
from mls.crypto.suite import CipherSuite, suite
from mls.tree.math import LeafIndex, NodeIndex, copath, direct_path, leaf_to_node, left, right

#: Key-schedule derivations of one epoch (joiner, welcome, epoch, ten derived secrets,
#: confirmation tag, interim hashes): a round number of HKDF operations.
KEY_SCHEDULE_KDF = 20
#: Bytes of one leaf in the ratchet tree / GroupInfo (suite 1, basic credential).
LEAF_BYTES = 200
#: Bytes hashed per tree-hash / parent-hash node (an encoded TreeHashInput on average).
NODE_HASH_BYTES = 150
#: Bytes of a KeyPackage (for KeyPackageRef hashing).
KEY_PACKAGE_BYTES = 300


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per primitive, measured alone."""

    sign: float
    verify: float
    seal: float
    open: float
    derive_key_pair: float
    kdf: float
    hash_node: float
    hash_key_package: float
    aead_per_byte: float
    aead_fixed: float

    def aead(self, size: int) -> float:
        return self.aead_fixed + self.aead_per_byte * size


def _time(operation: Callable[[], object], runs: int = 5, target: float = 0.02) -> float:
    """Median seconds per call (see :func:`benchmarks.primitives.median_seconds`)."""
    return median_seconds(operation, runs, target, max_iterations=1 << 16)


def measure_units(cs: CipherSuite) -> UnitCosts:
    """Time every primitive the rows need, alone, with :mod:`mls.crypto`."""
    secret = b"\x11" * cs.hash_len
    context = b"\x22" * 120  # about an encoded GroupContext
    hpke_priv, hpke_pub = cs.derive_key_pair(b"\x33" * cs.hash_len)
    kem_output, ciphertext = cs.encrypt_with_label(hpke_pub, b"UpdatePathNode", context,
                                                   secret)
    sig_priv, sig_pub = cs.generate_signature_key_pair(lambda n: b"\x44" * n)
    tbs = b"\x55" * 250  # about a LeafNodeTBS / FramedContentTBS
    signature = cs.sign_with_label(sig_priv, b"LeafNodeTBS", tbs)
    key = b"\x66" * cs.key_size
    nonce = b"\x77" * cs.nonce_size
    small, large = b"\x88" * 64, b"\x99" * 65536
    node_input = b"\xaa" * NODE_HASH_BYTES
    kp_input = b"\xbb" * KEY_PACKAGE_BYTES
    aead_small = _time(lambda: cs.aead_encrypt(key, nonce, b"", small))
    aead_large = _time(lambda: cs.aead_encrypt(key, nonce, b"", large))
    per_byte = max(0.0, (aead_large - aead_small) / (len(large) - len(small)))
    return UnitCosts(
        sign=_time(lambda: cs.sign_with_label(sig_priv, b"LeafNodeTBS", tbs)),
        verify=_time(lambda: cs.verify_with_label(sig_pub, b"LeafNodeTBS", tbs, signature)),
        seal=_time(lambda: cs.encrypt_with_label(hpke_pub, b"UpdatePathNode", context,
                                                 secret)),
        open=_time(lambda: cs.decrypt_with_label(hpke_priv, b"UpdatePathNode", context,
                                                 kem_output, ciphertext)),
        derive_key_pair=_time(lambda: cs.derive_key_pair(secret)),
        kdf=_time(lambda: cs.expand_with_label(secret, b"key", b"", cs.key_size)),
        hash_node=_time(lambda: cs.hash(node_input)),
        hash_key_package=_time(lambda: cs.ref_hash(b"MLS 1.0 KeyPackage Reference",
                                                   kp_input)),
        aead_per_byte=per_byte,
        aead_fixed=max(0.0, aead_small - per_byte * len(small)),
    )


# -- the tree shape a commit sees ------------------------------------------------------

def _width_leaves(n_members: int) -> int:
    """Leaves of the (full, power-of-two) tree holding ``n_members`` leaves."""
    width = 1
    while width < n_members:
        width *= 2
    return width


def _resolution_size(node: NodeIndex, n_members: int, filled: set[int]) -> int:
    """|resolution(node)| when leaves 0..n_members-1 are occupied, parents in
    ``filled`` are non-blank and no parent has unmerged leaves."""
    if node % 2 == 0:
        return 1 if node // 2 < n_members else 0
    if node in filled:
        return 1
    return (_resolution_size(left(node), n_members, filled)
            + _resolution_size(right(node), n_members, filled))


@dataclass(frozen=True)
class PathShape:
    """What one empty commit by ``committer`` costs in the given tree."""

    filtered_path: int  # nodes of the committer's filtered direct path
    seals: int          # HPKE encryptions (sum of copath resolutions)
    processor_derives: int  # DeriveKeyPair calls of the processor (common ancestor up)


def path_shape(n_members: int, committer: int, processor: int,
               filled: set[int]) -> PathShape:
    """RFC 9420 §7.5 / §7.6 for one committer and one processor."""
    n_leaves = _width_leaves(n_members)
    node = leaf_to_node(LeafIndex(committer))
    path = direct_path(node, n_leaves)
    siblings = copath(node, n_leaves)
    kept = [(p, s) for p, s in zip(path, siblings, strict=True)
            if _resolution_size(s, n_members, filled) > 0]
    seals = sum(_resolution_size(s, n_members, filled) for _, s in kept)
    processor_node = leaf_to_node(LeafIndex(processor))
    derives = 0
    for index, (_, sibling) in enumerate(kept):
        if _covers(sibling, processor_node):
            derives = len(kept) - index
            break
    return PathShape(len(kept), seals, derives)


def _covers(subtree_root: int, node: int) -> bool:
    """Is ``node`` in the subtree rooted at ``subtree_root``?"""
    level = 0
    while (subtree_root >> level) & 1:
        level += 1
    return abs(node - subtree_root) < (1 << level)


def populated_nodes(n_members: int, committers: list[int]) -> set[int]:
    """Parent nodes made non-blank by empty commits of ``committers``."""
    n_leaves = _width_leaves(n_members)
    filled: set[int] = set()
    for leaf in committers:
        shape_path = direct_path(leaf_to_node(LeafIndex(leaf)), n_leaves)
        siblings = copath(leaf_to_node(LeafIndex(leaf)), n_leaves)
        filled.update(int(p) for p, s in zip(shape_path, siblings, strict=True)
                      if _resolution_size(s, n_members, filled | {int(p)}) > 0)
    return filled


def populating_leaves(n_members: int) -> list[int]:
    """Leaves 1, 2, 4, 8, ... below n_members (the members that populate the tree)."""
    leaves, leaf = [], 1
    while leaf < n_members:
        leaves.append(leaf)
        leaf *= 2
    return leaves


# -- floors -------------------------------------------------------------------------

def floor_create_add(u: UnitCosts, n: int) -> float:
    joiners = n - 1
    return (joiners * (2 * u.verify + u.hash_key_package + u.seal) + 2 * u.sign
            + (2 * n - 1) * u.hash_node + u.aead(n * LEAF_BYTES) + KEY_SCHEDULE_KDF * u.kdf)


def floor_join(u: UnitCosts, n: int) -> float:
    return (u.open + (n + 1) * u.verify + (2 * n - 1) * u.hash_node + u.hash_key_package
            + u.aead(n * LEAF_BYTES) + KEY_SCHEDULE_KDF * u.kdf)


def floor_commit(u: UnitCosts, shape: PathShape) -> tuple[float, float]:
    """(create, process) floors of one empty commit with path."""
    path = shape.filtered_path
    create = ((path + 1) * u.derive_key_pair + shape.seals * u.seal + 2 * u.sign
              + (2 * path + 1) * u.hash_node + 2 * (path + 1) * u.kdf
              + KEY_SCHEDULE_KDF * u.kdf)
    process = (2 * u.verify + u.open + shape.processor_derives * u.derive_key_pair
               + (2 * path + 1) * u.hash_node + 2 * shape.processor_derives * u.kdf
               + KEY_SCHEDULE_KDF * u.kdf)
    return create, process


def floor_app_message(u: UnitCosts, size: int) -> float:
    """Seconds of crypto for one application message, encrypt + decrypt."""
    return (u.sign + u.verify + 2 * u.aead(size) + 4 * u.aead(16) + 10 * u.kdf)


@dataclass(frozen=True)
class RowFloors:
    create_add: float
    join: float
    sparse_create: float
    sparse_process: float
    populated_create: float
    populated_process: float
    sparse_shape: PathShape
    populated_shape: PathShape


def floors_for(u: UnitCosts, n: int) -> RowFloors:
    committer, processor = n - 1, 0
    sparse = path_shape(n, committer, processor, set())
    filled = populated_nodes(n, [*populating_leaves(n), committer])
    populated = path_shape(n, committer, processor, filled)
    sparse_create, sparse_process = floor_commit(u, sparse)
    populated_create, populated_process = floor_commit(u, populated)
    return RowFloors(floor_create_add(u, n), floor_join(u, n), sparse_create,
                     sparse_process, populated_create, populated_process, sparse, populated)


def main() -> None:
    units = measure_units(suite(1))
    for name, value in vars(units).items():
        print(f"{name:>18}: {value * 1e6:10.3f} µs")
    for n in (10, 100, 1000, 10000):
        floors = floors_for(units, n)
        print(f"N={n}: sparse {floors.sparse_shape}, populated {floors.populated_shape}")


if __name__ == "__main__":
    main()
