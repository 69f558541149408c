"""The complete state of one group member in one epoch (RFC 9420 §8, §9, §12).

:class:`GroupState` is immutable by convention: every field is either an immutable
value or an object (``RatchetTree``, ``SecretTree``) that is never mutated once it is
stored here -- operations copy it, change the copy and build a new state.  A failed
operation therefore leaves the old state untouched.

Private HPKE keys are held in :attr:`GroupState.hpke_keys`, keyed by their *public*
key: a key is usable exactly while the tree holds that public key, so keys of nodes
that were blanked or overwritten can never be picked by mistake, and keys for our own
pending Update proposals wait there until the Update is committed.

:meth:`GroupState.to_bytes` serializes everything (secrets included: store it like a
private key) behind a version byte; :meth:`GroupState.from_bytes` is its exact inverse.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from mls.codec import Reader, Writer
from mls.crypto.suite import CipherSuite, suite
from mls.errors import DecodeError
from mls.group.config import GroupConfig
from mls.messages.extensions import GroupContext
from mls.messages.framing import AuthenticatedContent
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import ReInit
from mls.schedule.key_schedule import EpochSecrets
from mls.schedule.secret_tree import SecretTree
from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.ratchet_tree import RatchetTree

STATE_VERSION = 2
#: How many fingerprints of our own sent PrivateMessages are kept.
MAX_SENT_REMEMBERED = 64

_SECRET_FIELDS = ("sender_data_secret", "encryption_secret", "exporter_secret",
                  "epoch_authenticator", "external_secret", "confirmation_key",
                  "membership_key", "resumption_psk", "init_secret")


def start_epoch_keys(cs: CipherSuite, secrets: EpochSecrets, n_leaves: int,
                     config: GroupConfig) -> tuple[EpochSecrets, SecretTree]:
    """The secret tree of a new epoch, and the epoch secrets without the
    ``encryption_secret`` it consumed: the tree's root is the only place that secret
    may live, so that used keys cannot be re-derived from the state (RFC 9420 §9.2)."""
    secret_tree = SecretTree(cs, secrets.encryption_secret, n_leaves,
                             out_of_order_window=config.out_of_order_window,
                             max_forward_distance=config.max_forward_distance)
    return dataclasses.replace(secrets, encryption_secret=b""), secret_tree


@dataclass(frozen=True, slots=True)
class PendingProposal:
    """A proposal received (or sent) in the current epoch, kept until a Commit
    references it (RFC 9420 §12.4): its ProposalRef and signed content."""

    ref: bytes
    authenticated: AuthenticatedContent


class EpochView(Protocol):
    """The public part of one epoch, which is all that verifying a received proposal
    or Commit without secrets reads (RFC 9420 §12.1, §12.2, §12.4.2): a member's
    :class:`GroupState` is one, and so is a :class:`~mls.group.public.PublicGroup`."""

    @property
    def cs(self) -> CipherSuite: ...

    @property
    def context(self) -> GroupContext: ...

    @property
    def tree(self) -> RatchetTree: ...

    @property
    def interim_transcript_hash(self) -> bytes: ...

    @property
    def pending(self) -> tuple[PendingProposal, ...]: ...


@dataclass(frozen=True, slots=True)
class PastEpoch:
    """What is kept of a previous epoch to read late application messages
    (RFC 9420 §9.2, §15.3): its secret tree, sender data secret, serialized group
    context and tree (for the senders' signature keys)."""

    epoch: int
    group_context: bytes
    tree: RatchetTree
    secret_tree: SecretTree = field(repr=False)
    sender_data_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class GroupState:
    """One member's view of a group in one epoch (see the module docstring)."""

    cs: CipherSuite
    context: GroupContext
    tree: RatchetTree
    own_leaf: LeafIndex
    signature_priv: bytes = field(repr=False)
    hpke_keys: Mapping[bytes, bytes] = field(repr=False)
    secrets: EpochSecrets = field(repr=False)
    secret_tree: SecretTree = field(repr=False)
    interim_transcript_hash: bytes
    confirmation_tag: bytes
    pending: tuple[PendingProposal, ...] = ()
    past_epochs: tuple[PastEpoch, ...] = field(default=(), repr=False)
    resumption_psks: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)
    config: GroupConfig = field(default_factory=GroupConfig)
    active: bool = True
    reinit: ReInit | None = None
    sent_messages: tuple[bytes, ...] = field(default=(), repr=False)

    # -- convenience -----------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    def context_bytes(self) -> bytes:
        return self.context.to_bytes()

    def own_leaf_node(self) -> LeafNode:
        leaf = self.tree.leaf(self.own_leaf)
        assert leaf is not None
        return leaf

    def node_private_keys(self, tree: RatchetTree | None = None) -> dict[NodeIndex, bytes]:
        """Our HPKE private keys by the node of ``tree`` (default: ours) holding the
        matching public key."""
        tree = self.tree if tree is None else tree
        out: dict[NodeIndex, bytes] = {}
        for public, private in self.hpke_keys.items():
            node = tree.find_node_by_encryption_key(public)
            if node is not None:
                out[node] = private
        return out

    def resumption_psk(self, epoch: int) -> bytes | None:
        """The resumption PSK of one of our epochs (RFC 9420 §8.6), if still held."""
        if epoch == self.epoch:
            return self.secrets.resumption_psk
        for past_epoch, psk in self.resumption_psks:
            if past_epoch == epoch:
                return psk
        return None

    @property
    def retired(self) -> bool:
        """Whether a ReInit was committed: the group is closed (RFC 9420 §11.2)."""
        return self.reinit is not None

    def sent_fingerprint(self, ciphertext: bytes) -> bytes:
        """The fingerprint of a PrivateMessage we sent (its ciphertext's hash)."""
        return self.cs.hash(ciphertext)

    def sent_after(self, ciphertext: bytes) -> tuple[bytes, ...]:
        """``sent_messages`` once a PrivateMessage we sent is remembered (bounded,
        oldest dropped first)."""
        recent = (*self.sent_messages, self.sent_fingerprint(ciphertext))
        return recent[-MAX_SENT_REMEMBERED:]

    def with_sent(self, ciphertext: bytes) -> GroupState:
        """Remember a PrivateMessage we sent (bounded, oldest dropped first)."""
        return self.replace(sent_messages=self.sent_after(ciphertext))

    def replace(self, **changes: Any) -> GroupState:
        """A copy with the given fields changed (``dataclasses.replace`` without its
        per-call introspection: the state is replaced for every message)."""
        unknown = changes.keys() - _STATE_FIELD_SET
        if unknown:
            raise TypeError(f"GroupState has no fields {sorted(unknown)}")
        clone = object.__new__(GroupState)
        setter = object.__setattr__
        for name, value in zip(_STATE_FIELDS, _state_values(self), strict=True):
            setter(clone, name, changes.get(name, value))
        return clone

    def with_secret_tree(self, secret_tree: SecretTree,
                         sent_messages: tuple[bytes, ...] | None = None) -> GroupState:
        """A copy holding a used-up ``secret_tree`` (and ``sent_messages`` if given):
        the one replacement made for every application message sent or received."""
        return _copy_with_keys(self, secret_tree, self.sent_messages if sent_messages is None
                               else sent_messages)

    def __repr__(self) -> str:
        return (f"GroupState(group_id={self.group_id.hex()}, epoch={self.epoch}, "
                f"own_leaf={self.own_leaf}, members={self.tree.member_count()}, "
                f"pending={len(self.pending)}, active={self.active}, "
                f"retired={self.retired})")

    # -- serialization ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole member state, versioned (secrets included)."""
        w = Writer()
        w.u8(STATE_VERSION)
        w.u16(self.cs.id)
        self.context.encode(w)
        write_tree(w, self.tree)
        w.u32(self.own_leaf)
        w.opaque(self.signature_priv)
        w.vector(sorted(self.hpke_keys.items()), _write_pair)
        for name in _SECRET_FIELDS:
            w.opaque(getattr(self.secrets, name))
        w.opaque(self.secret_tree.to_bytes())
        w.opaque(self.interim_transcript_hash)
        w.opaque(self.confirmation_tag)
        w.vector(self.pending, write_pending)
        w.vector(self.past_epochs, _write_past_epoch)
        w.vector(self.resumption_psks, _write_psk)
        self.config.encode(w)
        w.boolean(self.active)
        w.optional(self.reinit)
        w.vector(self.sent_messages, Writer.opaque)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupState:
        """Inverse of :meth:`to_bytes`; malformed state raises DecodeError."""
        r = Reader(data)
        version = r.u8()
        if version not in (1, STATE_VERSION):
            raise DecodeError(f"unsupported group state version {version}")
        cs = suite(r.u16())
        context = GroupContext.decode(r)
        tree = read_tree(r, cs)
        own_leaf = LeafIndex(r.u32())
        signature_priv = r.opaque()
        pairs = r.vector(_read_pair)
        secrets = EpochSecrets(**{name: r.opaque() for name in _SECRET_FIELDS})
        secret_tree = SecretTree.from_bytes(r.opaque())
        interim, tag = r.opaque(), r.opaque()
        pending = r.vector(read_pending)
        past = r.vector(lambda rr: _read_past_epoch(rr, cs))
        psks = r.vector(_read_psk)
        config = GroupConfig.decode(r)
        active = r.boolean()
        reinit = r.optional(ReInit) if version >= 2 else None
        sent = r.vector(Reader.opaque) if version >= 2 else ()
        r.finish("GroupState")
        if len(dict(pairs)) != len(pairs):
            raise DecodeError("group state: duplicate HPKE keys")
        if active and (own_leaf >= tree.n_leaves or tree.leaf(own_leaf) is None):
            raise DecodeError("group state: own leaf is not in the tree")
        return cls(cs, context, tree, own_leaf, signature_priv, dict(pairs), secrets,
                   secret_tree, interim, tag, pending, past, psks, config, active, reinit,
                   sent)


def write_tree(w: Writer, tree: RatchetTree) -> None:
    """A ratchet tree in stored state: its full width (trailing blank leaves count in
    the tree hash, RFC 9420 §7.8) and its ``ratchet_tree`` encoding."""
    w.u32(tree.width)
    w.opaque(tree.to_bytes())


def read_tree(r: Reader, cs: CipherSuite) -> RatchetTree:
    """Inverse of :func:`write_tree`."""
    width = r.u32()
    tree = RatchetTree.from_bytes(cs, r.opaque())
    while tree.width < width:
        tree.extend()
    if tree.width != width:
        raise DecodeError("group state: ratchet tree width mismatch")
    return tree


def _write_pair(w: Writer, pair: tuple[bytes, bytes]) -> None:
    w.opaque(pair[0])
    w.opaque(pair[1])


def _read_pair(r: Reader) -> tuple[bytes, bytes]:
    return r.opaque(), r.opaque()


def write_pending(w: Writer, pending: PendingProposal) -> None:
    """A pending proposal in stored state: its ProposalRef and signed content."""
    w.opaque(pending.ref)
    pending.authenticated.encode(w)


def read_pending(r: Reader) -> PendingProposal:
    """Inverse of :func:`write_pending`."""
    return PendingProposal(r.opaque(), AuthenticatedContent.decode(r))


def _write_past_epoch(w: Writer, past: PastEpoch) -> None:
    w.u64(past.epoch)
    w.opaque(past.group_context)
    write_tree(w, past.tree)
    w.opaque(past.secret_tree.to_bytes())
    w.opaque(past.sender_data_secret)


def _read_past_epoch(r: Reader, cs: CipherSuite) -> PastEpoch:
    epoch = r.u64()
    context = r.opaque()
    tree = read_tree(r, cs)
    return PastEpoch(epoch, context, tree, SecretTree.from_bytes(r.opaque()), r.opaque())


def _write_psk(w: Writer, item: tuple[int, bytes]) -> None:
    w.u64(item[0])
    w.opaque(item[1])


def _read_psk(r: Reader) -> tuple[int, bytes]:
    return r.u64(), r.opaque()


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(GroupState))
_STATE_FIELD_SET = frozenset(_STATE_FIELDS)
_state_values = operator.attrgetter(*_STATE_FIELDS)


def _compile_copy_with_keys() -> Callable[[GroupState, SecretTree, tuple[bytes, ...]],
                                          GroupState]:
    """``copy_with_keys(state, secret_tree, sent_messages)``: a GroupState copy with
    those two fields swapped, compiled from the field list into straight-line stores
    through the slot descriptors (as ``dataclasses`` generates ``__init__``) -- about
    4x cheaper than :meth:`GroupState.replace`."""
    swapped = ("secret_tree", "sent_messages")
    namespace: dict[str, Any] = {"new": object.__new__, "GroupState": GroupState}
    lines = ["def copy_with_keys(state, secret_tree, sent_messages):",
             "    clone = new(GroupState)"]
    for name in _STATE_FIELDS:
        namespace[f"set_{name}"] = GroupState.__dict__[name].__set__
        lines.append(f"    set_{name}(clone, {name if name in swapped else 'state.' + name})")
    lines.append("    return clone")
    exec("\n".join(lines), namespace)  # fixed source built from the field names
    return cast(Callable[[GroupState, SecretTree, tuple[bytes, ...]], GroupState],
                namespace["copy_with_keys"])


_copy_with_keys = _compile_copy_with_keys()
