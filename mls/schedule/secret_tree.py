"""The secret tree and its sender ratchets (RFC 9420 §9, §9.1, §9.2) and the sender
data key (RFC 9420 §6.3.2).

:class:`SecretTree` is **lazy**: it starts holding only the root secret
(``encryption_secret``) and derives, on first use of a leaf, just the nodes on the
path from the lowest secret it still holds down to that leaf -- O(log n) work per new
leaf, never the whole tree.  It follows the deletion schedule of §9.2:

* descending through a parent derives *both* children at once and deletes the parent;
* a leaf secret is deleted as soon as its two ratchets (handshake, application) are
  initialised;
* a ratchet secret is replaced by its successor as the ratchet advances;
* a key/nonce pair is deleted as soon as it is handed out.

Mutation model: a :class:`SecretTree` is **mutable**.  Exactly two methods mutate it:
:meth:`SecretTree.next_key` (sending) and :meth:`SecretTree.key_for` (receiving).
Both check everything that can fail *before* mutating, so a call that raises leaves
the tree untouched.  Because a key handed out by :meth:`~SecretTree.key_for` is gone,
a caller that may still fail afterwards (e.g. on an AEAD tag mismatch) must work on
:meth:`SecretTree.copy` -- a cheap shallow copy, O(held entries), since every stored
value is immutable -- and adopt the copy only on success.

Node indices follow the array representation of RFC 9420 Appendix C: leaf ``L`` is
node ``2L`` and the root of ``n`` leaves is ``root(n)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from mls.codec import Reader, Writer
from mls.crypto.suite import CipherSuite, suite
from mls.enums import closed_enum
from mls.errors import DecodeError, GenerationError, UsageError
from mls.tree.math import NodeIndex
from mls.tree.math import left as tree_left
from mls.tree.math import right as tree_right
from mls.tree.math import root as tree_root

#: Default number of skipped generations whose keys a receiving ratchet keeps.
DEFAULT_OUT_OF_ORDER_WINDOW = 32
#: Default largest jump ahead of the next expected generation a receiver accepts.
DEFAULT_MAX_FORWARD_DISTANCE = 1024

_MAX_GENERATION = 0xFFFFFFFF  # generations are uint32 (RFC 9420 §6.3.2 SenderData)
_MAX_LEAVES = 1 << 31  # node indices 2L must fit in uint32


class RatchetKind(IntEnum):
    """Which of a leaf's two sender ratchets (RFC 9420 §9)."""

    HANDSHAKE = 1
    APPLICATION = 2


_RATCHET_LABELS: dict[RatchetKind, bytes] = {
    RatchetKind.HANDSHAKE: b"handshake",
    RatchetKind.APPLICATION: b"application",
}


# -- one sender ratchet (RFC 9420 §9.1) ----------------------------------------------

@dataclass(frozen=True, slots=True)
class _Ratchet:
    """Immutable ratchet state: ``secret`` is ``ratchet_secret_[next_generation]``;
    ``skipped`` holds (key, nonce) of generations passed over but not yet used.
    ``skipped`` is never mutated after construction (copies share it)."""

    next_generation: int
    secret: bytes = field(repr=False)
    skipped: Mapping[int, tuple[bytes, bytes]] = field(repr=False)


def _next_secret(cs: CipherSuite, secret: bytes, generation: int) -> bytes:
    """DeriveTreeSecret(secret, "secret", generation, Nh) (RFC 9420 §9.1)."""
    return cs.next_ratchet_secret(secret, generation.to_bytes(4, "big"))


def _step(cs: CipherSuite, secret: bytes, generation: int) -> tuple[bytes, bytes, bytes]:
    """Key, nonce and next ratchet secret of one generation (RFC 9420 §9.1)."""
    return cs.ratchet_step(secret, generation.to_bytes(4, "big"))


def sender_data_key_nonce(cs: CipherSuite, sender_data_secret: bytes,
                          ciphertext: bytes) -> tuple[bytes, bytes]:
    """``sender_data_key``/``sender_data_nonce`` (RFC 9420 §6.3.2): keyed by the
    first ``KDF.Nh`` bytes of the content ciphertext (all of it if shorter)."""
    sample = Reader(ciphertext).raw(min(len(ciphertext), cs.hash_len))
    return cs.key_and_nonce(sender_data_secret, sample)


class SecretTree:
    """Lazy secret tree of one epoch with per-leaf handshake/application ratchets
    (RFC 9420 §9-§9.2).  See the module docstring for the mutation model.

    ``out_of_order_window``: how many generations behind the newest one received a
    skipped key is kept for late messages.  ``max_forward_distance``: how far past the
    next expected generation a received generation may jump.
    """

    __slots__ = ("_cs", "_n_leaves", "_nodes", "_ratchets", "_root",
                 "max_forward_distance", "out_of_order_window")

    def __init__(self, cs: CipherSuite, encryption_secret: bytes, n_leaves: int, *,
                 out_of_order_window: int = DEFAULT_OUT_OF_ORDER_WINDOW,
                 max_forward_distance: int = DEFAULT_MAX_FORWARD_DISTANCE) -> None:
        if not 1 <= n_leaves <= _MAX_LEAVES:
            raise UsageError(f"a secret tree needs 1..2^31 leaves, got {n_leaves}")
        if len(encryption_secret) != cs.hash_len:
            raise UsageError("encryption_secret must be KDF.Nh bytes")
        if not (0 <= out_of_order_window <= _MAX_GENERATION
                and 0 <= max_forward_distance <= _MAX_GENERATION):
            raise UsageError("window and forward distance must fit in uint32")
        self._cs = cs
        self._n_leaves = n_leaves
        self._root = tree_root(n_leaves)
        self._nodes: dict[int, bytes] = {self._root: encryption_secret}
        self._ratchets: dict[tuple[int, RatchetKind], _Ratchet] = {}
        self.out_of_order_window = out_of_order_window
        self.max_forward_distance = max_forward_distance

    # -- introspection (no secrets) --------------------------------------------------

    @property
    def cipher_suite(self) -> CipherSuite:
        return self._cs

    @property
    def n_leaves(self) -> int:
        return self._n_leaves

    def __repr__(self) -> str:
        return (f"SecretTree({self._cs.id.name}, n_leaves={self._n_leaves}, "
                f"node_secrets={len(self._nodes)}, ratchets={len(self._ratchets)})")

    def node_secret_count(self) -> int:
        """How many tree-node secrets (not ratchet secrets) are currently held."""
        return len(self._nodes)

    def holds_node_secret(self, node: int) -> bool:
        """Whether the secret of array node ``node`` is currently held."""
        return node in self._nodes

    def next_generation(self, leaf: int, kind: RatchetKind) -> int:
        """The generation the leaf's ratchet will produce next (0 if never used)."""
        self._check_leaf(leaf)
        ratchet = self._ratchets.get((leaf, kind))
        return 0 if ratchet is None else ratchet.next_generation

    def retained_generations(self, leaf: int, kind: RatchetKind) -> tuple[int, ...]:
        """Skipped generations whose keys are still held for late messages."""
        self._check_leaf(leaf)
        ratchet = self._ratchets.get((leaf, kind))
        return () if ratchet is None else tuple(sorted(ratchet.skipped))

    def copy(self) -> SecretTree:
        """An independent copy; O(held entries) because stored values are immutable."""
        other = SecretTree.__new__(SecretTree)
        other._cs = self._cs
        other._n_leaves = self._n_leaves
        other._root = self._root
        other._nodes = dict(self._nodes)
        other._ratchets = dict(self._ratchets)
        other.out_of_order_window = self.out_of_order_window
        other.max_forward_distance = self.max_forward_distance
        return other

    # -- the two mutating operations -------------------------------------------------

    def next_key(self, leaf: int, kind: RatchetKind) -> tuple[int, bytes, bytes]:
        """Sending (RFC 9420 §9.1): ``(generation, key, nonce)`` for the next
        generation of ``leaf``'s ratchet, which advances; the pair is not kept."""
        self._check_leaf(leaf)
        ratchet = self._ratchets.get((leaf, kind))
        if ratchet is None:
            ratchet = self._ratchet(leaf, kind)
        generation = ratchet.next_generation
        if generation > _MAX_GENERATION:
            raise GenerationError("sender ratchet exhausted (generation is uint32)")
        key, nonce, next_secret = _step(self._cs, ratchet.secret, generation)
        self._ratchets[(leaf, kind)] = _Ratchet(generation + 1, next_secret, ratchet.skipped)
        return generation, key, nonce

    def key_for(self, leaf: int, kind: RatchetKind, generation: int) -> tuple[bytes, bytes]:
        """Receiving (RFC 9420 §9.1, §9.2): ``(key, nonce)`` of ``generation``.

        The pair is deleted from the tree when returned.  Generations skipped on the
        way are kept for late messages within ``out_of_order_window``.  Raises
        :class:`~mls.errors.GenerationError`, leaving the tree untouched, for a
        generation already used or dropped, or more than ``max_forward_distance``
        past the next expected one.
        """
        self._check_leaf(leaf)
        if not 0 <= generation <= _MAX_GENERATION:
            raise GenerationError("generation out of uint32 range")
        existing = self._ratchets.get((leaf, kind))
        if existing is not None and generation in existing.skipped:
            skipped = dict(existing.skipped)
            key_nonce = skipped.pop(generation)
            self._ratchets[(leaf, kind)] = _Ratchet(
                existing.next_generation, existing.secret, skipped)
            return key_nonce
        expected = 0 if existing is None else existing.next_generation
        if existing is not None and generation == expected and not existing.skipped:
            # In-order message, nothing held back: one ratchet step.
            key, nonce, next_secret = _step(self._cs, existing.secret, generation)
            self._ratchets[(leaf, kind)] = _Ratchet(generation + 1, next_secret,
                                                    existing.skipped)
            return key, nonce
        if generation < expected:
            raise GenerationError("generation already used or no longer held")
        if generation - expected > self.max_forward_distance:
            raise GenerationError("generation too far ahead of the sender ratchet")
        ratchet = self._ratchet(leaf, kind)
        new_ratchet, key_nonce = self._advance_to(ratchet, generation)
        self._ratchets[(leaf, kind)] = new_ratchet
        return key_nonce

    # -- internals -------------------------------------------------------------------

    def _check_leaf(self, leaf: int) -> None:
        if not 0 <= leaf < self._n_leaves:
            raise UsageError(f"leaf {leaf} is outside a tree of {self._n_leaves} leaves")

    def _advance_to(self, ratchet: _Ratchet, generation: int
                    ) -> tuple[_Ratchet, tuple[bytes, bytes]]:
        """Ratchet forward to ``generation``, keeping skipped keys within the window."""
        cs = self._cs
        lowest_kept = generation - self.out_of_order_window
        skipped = {g: kn for g, kn in ratchet.skipped.items() if g >= lowest_kept}
        secret = ratchet.secret
        for g in range(ratchet.next_generation, generation):
            if g >= lowest_kept:
                key, nonce, secret = _step(cs, secret, g)
                skipped[g] = (key, nonce)
            else:
                secret = _next_secret(cs, secret, g)
        key, nonce, next_secret = _step(cs, secret, generation)
        return _Ratchet(generation + 1, next_secret, skipped), (key, nonce)

    def _ratchet(self, leaf: int, kind: RatchetKind) -> _Ratchet:
        """The leaf's ratchet, initialising both of its ratchets on first use."""
        ratchet = self._ratchets.get((leaf, kind))
        if ratchet is not None:
            return ratchet
        leaf_secret = self._take_leaf_secret(leaf)
        for each in RatchetKind:
            start = self._cs.expand_with_label(leaf_secret, _RATCHET_LABELS[each], b"",
                                               self._cs.hash_len)
            self._ratchets[(leaf, each)] = _Ratchet(0, start, {})
        return self._ratchets[(leaf, kind)]

    def _take_leaf_secret(self, leaf: int) -> bytes:
        """Derive ``tree_node_[2*leaf]_secret`` from the lowest held ancestor,
        deleting every parent passed (both of its children are stored)."""
        target = 2 * leaf
        node = self._root
        while node not in self._nodes:
            if node == target:
                raise UsageError(f"secrets of leaf {leaf} were already deleted")
            left, right = tree_left(NodeIndex(node)), tree_right(NodeIndex(node))
            node = left if target < node else right
        secret = self._nodes.pop(node)
        while node != target:
            left, right = tree_left(NodeIndex(node)), tree_right(NodeIndex(node))
            left_secret = self._cs.expand_with_label(secret, b"tree", b"left",
                                                     self._cs.hash_len)
            right_secret = self._cs.expand_with_label(secret, b"tree", b"right",
                                                      self._cs.hash_len)
            if target < node:
                node, secret = left, left_secret
                self._nodes[right] = right_secret
            else:
                node, secret = right, right_secret
                self._nodes[left] = left_secret
        return secret

    # -- serialization ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize the whole state (secrets included: store it like a key)."""
        w = Writer()
        w.u16(self._cs.id)
        w.u32(self._n_leaves)
        w.u32(self.out_of_order_window)
        w.u32(self.max_forward_distance)
        w.vector(sorted(self._nodes.items()), _write_node)
        w.vector(sorted(self._ratchets.items()), _write_ratchet)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretTree:
        """Inverse of :meth:`to_bytes`; malformed state raises DecodeError."""
        r = Reader(data)
        cs = suite(r.u16())
        n_leaves = r.u32()
        window, distance = r.u32(), r.u32()
        if not 1 <= n_leaves <= _MAX_LEAVES:
            raise DecodeError("secret tree state: bad leaf count")
        nodes = r.vector(lambda rr: _read_node(rr, cs, n_leaves))
        ratchets = r.vector(lambda rr: _read_ratchet(rr, cs, n_leaves))
        r.finish("SecretTree state")
        tree = cls.__new__(cls)
        tree._cs = cs
        tree._n_leaves = n_leaves
        tree._root = tree_root(n_leaves)
        tree._nodes = dict(nodes)
        tree._ratchets = dict(ratchets)
        if len(tree._nodes) != len(nodes) or len(tree._ratchets) != len(ratchets):
            raise DecodeError("secret tree state: duplicate entries")
        tree.out_of_order_window = window
        tree.max_forward_distance = distance
        return tree


def _write_node(w: Writer, item: tuple[int, bytes]) -> None:
    w.u32(item[0])
    w.opaque(item[1])


def _read_node(r: Reader, cs: CipherSuite, n_leaves: int) -> tuple[int, bytes]:
    node, secret = r.u32(), r.opaque()
    if node >= 2 * tree_root(n_leaves) + 1 or len(secret) != cs.hash_len:
        raise DecodeError("secret tree state: bad node secret")
    return node, secret


def _write_ratchet(w: Writer, item: tuple[tuple[int, RatchetKind], _Ratchet]) -> None:
    (leaf, kind), ratchet = item
    w.u32(leaf)
    w.u8(kind)
    w.u64(ratchet.next_generation)
    w.opaque(ratchet.secret)

    def write_skipped(ww: Writer, entry: tuple[int, tuple[bytes, bytes]]) -> None:
        ww.u32(entry[0])
        ww.opaque(entry[1][0])
        ww.opaque(entry[1][1])

    w.vector(sorted(ratchet.skipped.items()), write_skipped)


def _read_ratchet(r: Reader, cs: CipherSuite, n_leaves: int
                  ) -> tuple[tuple[int, RatchetKind], _Ratchet]:
    leaf = r.u32()
    kind = closed_enum(RatchetKind, r.u8())
    next_generation = r.u64()
    secret = r.opaque()

    def read_skipped(rr: Reader) -> tuple[int, tuple[bytes, bytes]]:
        generation, key, nonce = rr.u32(), rr.opaque(), rr.opaque()
        if (generation >= next_generation or len(key) != cs.key_size
                or len(nonce) != cs.nonce_size):
            raise DecodeError("secret tree state: bad skipped key")
        return generation, (key, nonce)

    skipped_items = r.vector(read_skipped)
    skipped = dict(skipped_items)
    if (leaf >= n_leaves or next_generation > _MAX_GENERATION + 1
            or len(secret) != cs.hash_len or len(skipped) != len(skipped_items)):
        raise DecodeError("secret tree state: bad ratchet")
    return (leaf, kind), _Ratchet(next_generation, secret, skipped)
