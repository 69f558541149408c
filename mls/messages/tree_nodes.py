"""Ratchet tree nodes, the ratchet_tree extension and UpdatePath
(RFC 9420 §7.1, §7.6, §7.8, §12.4.3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mls.codec import Reader, Writer
from mls.enums import NodeType, closed_enum
from mls.errors import DecodeError
from mls.messages.leaf_node import LeafNode


@dataclass(frozen=True, slots=True)
class ParentNode:
    """RFC 9420 §7.1::

        struct {
            HPKEPublicKey encryption_key;
            opaque parent_hash<V>;
            uint32 unmerged_leaves<V>;
        } ParentNode;
    """

    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.parent_hash)
        w.uint_vector(self.unmerged_leaves, 4)

    @classmethod
    def decode(cls, r: Reader) -> ParentNode:
        return cls(r.opaque(), r.opaque(), r.uint_vector(4))


@dataclass(frozen=True, slots=True)
class Node:
    """RFC 9420 §7.8::

        struct {
            NodeType node_type;
            select (Node.node_type) {
                case leaf:   LeafNode leaf_node;
                case parent: ParentNode parent_node;
            };
        } Node;
    """

    value: LeafNode | ParentNode

    @property
    def node_type(self) -> NodeType:
        return NodeType.LEAF if isinstance(self.value, LeafNode) else NodeType.PARENT

    def encode(self, w: Writer) -> None:
        w.u8(self.node_type)
        self.value.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Node:
        node_type = closed_enum(NodeType, r.u8())
        if node_type == NodeType.LEAF:
            return cls(LeafNode.decode(r))
        return cls(ParentNode.decode(r))


TreeNode = LeafNode | ParentNode | None


def _write_optional_node(w: Writer, node: TreeNode) -> None:
    w.optional(None if node is None else Node(node))


def _read_optional_node(r: Reader) -> TreeNode:
    node = r.optional(Node)
    return None if node is None else node.value


_BLANK = b"\x00"
_PRESENT_LEAF = bytes((1, NodeType.LEAF))
_PRESENT_PARENT = bytes((1, NodeType.PARENT))


def _optional_node_bytes(node: TreeNode) -> bytes:
    """``optional<Node>`` of one node, from the leaf's cached encoding."""
    if node is None:
        return _BLANK
    if isinstance(node, LeafNode):
        return _PRESENT_LEAF + node.to_bytes()
    w = Writer()
    w.raw(_PRESENT_PARENT)
    node.encode(w)
    return w.getvalue()


def write_ratchet_tree(w: Writer, nodes: Sequence[TreeNode]) -> None:
    """Write ``optional<Node> ratchet_tree<V>`` (RFC 9420 §12.4.3.3)."""
    w.opaque(b"".join([_optional_node_bytes(node) for node in nodes]))


def read_ratchet_tree(r: Reader) -> tuple[TreeNode, ...]:
    """Read ``optional<Node> ratchet_tree<V>`` and check its shape.

    Rejects (DecodeError) an empty tree, a tree whose last node is blank
    (RFC 9420 §12.4.3.3), and a leaf at an odd or a parent at an even position
    (leaves live at even array indices, §4.1/§12.4.3.3).
    """
    nodes = r.vector(_read_optional_node)
    if not nodes:
        raise DecodeError("ratchet tree has no nodes")
    if nodes[-1] is None:
        raise DecodeError("the last node of a ratchet tree must not be blank")
    for index, node in enumerate(nodes):
        if node is None:
            continue
        if isinstance(node, LeafNode) != (index % 2 == 0):
            kind = "leaf" if isinstance(node, LeafNode) else "parent"
            raise DecodeError(f"ratchet tree has a {kind} node at array index {index}")
    return nodes


def encode_ratchet_tree(nodes: Sequence[TreeNode]) -> bytes:
    """Serialize a ratchet tree (array order, blank = ``None``) for the
    ratchet_tree extension; trailing blank nodes must already be stripped."""
    w = Writer()
    write_ratchet_tree(w, nodes)
    return w.getvalue()


def decode_ratchet_tree(data: bytes) -> tuple[TreeNode, ...]:
    """Parse a ratchet_tree extension body; it must consume ``data`` exactly."""
    r = Reader(data)
    nodes = read_ratchet_tree(r)
    r.finish("ratchet tree")
    return nodes


@dataclass(frozen=True, slots=True)
class HPKECiphertext:
    """RFC 9420 §7.6: ``struct { opaque kem_output<V>; opaque ciphertext<V>; }``."""

    kem_output: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output)
        w.opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> HPKECiphertext:
        return cls(r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class UpdatePathNode:
    """RFC 9420 §7.6::

        struct {
            HPKEPublicKey encryption_key;
            HPKECiphertext encrypted_path_secret<V>;
        } UpdatePathNode;
    """

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.structs(self.encrypted_path_secret)

    @classmethod
    def decode(cls, r: Reader) -> UpdatePathNode:
        return cls(r.opaque(), r.structs(HPKECiphertext))


@dataclass(frozen=True, slots=True)
class UpdatePath:
    """RFC 9420 §7.6: ``struct { LeafNode leaf_node; UpdatePathNode nodes<V>; }``."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...] = ()

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)
        w.structs(self.nodes)

    @classmethod
    def decode(cls, r: Reader) -> UpdatePath:
        return cls(LeafNode.decode(r), r.structs(UpdatePathNode))
