"""Behaviour of the ratchet tree: tree math, tree evolution, incremental tree hashes,
validation and TreeKEM (RFC 9420 §4.1, §7, Appendix C)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import codec
from mls.crypto.suite import CipherSuite
from mls.enums import LeafNodeSource
from mls.errors import TreeValidationError, UsageError, ValidationError
from mls.messages.credentials import Credential
from mls.messages.extensions import GroupContext
from mls.messages.leaf_node import Capabilities, LeafNode, Lifetime
from mls.messages.tree_nodes import ParentNode
from mls.tree import math as tm
from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.parent_hash import original_tree_hash, verify_parent_hashes
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import create_update_path, decrypt_update_path, merge_update_path
from mls.tree.validation import validate_tree
from tests.mls.fixtures import CS, make_rng

GROUP_ID = b"test group"

# -- tree math (Appendix C) ----------------------------------------------------------

tree_sizes = st.integers(min_value=0, max_value=12).map(lambda d: 1 << d)


@st.composite
def tree_and_node(draw: st.DrawFn) -> tuple[int, NodeIndex]:
    n_leaves = draw(tree_sizes)
    return n_leaves, NodeIndex(draw(st.integers(0, tm.node_width(n_leaves) - 1)))


@given(tree_and_node())
def test_children_and_parent_are_inverse(params: tuple[int, NodeIndex]) -> None:
    n_leaves, x = params
    if tm.is_leaf(x):
        with pytest.raises(UsageError):
            tm.left(x)
        return
    assert tm.parent(tm.left(x), n_leaves) == x
    assert tm.parent(tm.right(x), n_leaves) == x
    assert tm.level(tm.left(x)) == tm.level(x) - 1 == tm.level(tm.right(x))
    assert tm.left(x) < x < tm.right(x)


@given(tree_and_node())
def test_paths_sibling_and_root(params: tuple[int, NodeIndex]) -> None:
    n_leaves, x = params
    root = tm.root(n_leaves)
    path = tm.direct_path(x, n_leaves)
    copath = tm.copath(x, n_leaves)
    assert len(path) == len(copath) == tm.level(root) - tm.level(x)
    if x == root:
        with pytest.raises(UsageError):
            tm.parent(x, n_leaves)
        return
    assert path[-1] == root
    assert tm.sibling(tm.sibling(x, n_leaves), n_leaves) == x
    assert copath[0] == tm.sibling(x, n_leaves)
    for ancestor, other in zip(path, copath, strict=True):
        assert tm.is_ancestor(ancestor, x)
        assert not tm.is_ancestor(other, x)
        assert tm.parent(other, n_leaves) == ancestor


@given(tree_sizes.flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, n - 1), st.integers(0, n - 1))))
def test_leaf_conversion_and_common_ancestor(params: tuple[int, int, int]) -> None:
    n_leaves, a, b = params
    x, y = tm.leaf_to_node(LeafIndex(a)), tm.leaf_to_node(LeafIndex(b))
    assert tm.node_to_leaf(x) == a and tm.is_leaf(x)
    ancestor = tm.common_ancestor(x, y)
    above_x = {x, *tm.direct_path(x, n_leaves)}
    above_y = {y, *tm.direct_path(y, n_leaves)}
    assert ancestor == min(above_x & above_y, key=tm.level)
    assert a in tm.leaves_under(ancestor, n_leaves) and b in tm.leaves_under(ancestor, n_leaves)


def test_node_to_leaf_rejects_parent() -> None:
    with pytest.raises(UsageError):
        tm.node_to_leaf(NodeIndex(3))


# -- helpers ---------------------------------------------------------------------------

def fake_leaf(tag: int) -> LeafNode:
    """A structurally valid but unsigned leaf node (for shape and hash tests)."""
    return LeafNode(b"enc%d" % tag, b"sig%d" % tag, Credential.basic(b"id%d" % tag),
                    Capabilities((1,), (1,), (), (), (1,)), LeafNodeSource.KEY_PACKAGE,
                    Lifetime(0, 2**64 - 1))


@dataclasses.dataclass
class LeafMember:
    leaf: LeafNode
    signature_priv: bytes
    encryption_priv: bytes


def make_leaf_member(cs: CipherSuite, rng: Callable[[int], bytes], name: bytes) -> LeafMember:
    enc_priv, enc_pub = cs.kem.generate_key_pair(rng)
    sig_priv, sig_pub = cs.signature.generate_key_pair(rng)
    unsigned = LeafNode(enc_pub, sig_pub, Credential.basic(name),
                        Capabilities((1,), (cs.id,), (), (), (1,)),
                        LeafNodeSource.KEY_PACKAGE, Lifetime(0, 2**64 - 1))
    signature = cs.sign_with_label(sig_priv, b"LeafNodeTBS", unsigned.tbs_bytes())
    return LeafMember(unsigned.replace(signature=signature), sig_priv, enc_priv)


def context_for(tree_hash: bytes) -> bytes:
    return codec.encode(GroupContext(1, CS.id, GROUP_ID, 1, tree_hash, b""))


def build_group(n_members: int, seed: int = 1) -> tuple[RatchetTree, list[LeafMember],
                                                       dict[LeafIndex, dict[NodeIndex, bytes]]]:
    """A valid tree: members are added one at a time and each new member commits an
    UpdatePath, so parent hashes and unmerged leaves are real (Appendix A style)."""
    rng = make_rng(seed)
    members = [make_leaf_member(CS, rng, b"m0")]
    tree = RatchetTree.one_member(CS, members[0].leaf)
    keys: dict[LeafIndex, dict[NodeIndex, bytes]] = {
        LeafIndex(0): {NodeIndex(0): members[0].encryption_priv}}
    for number in range(1, n_members):
        member = make_leaf_member(CS, rng, b"m%d" % number)
        members.append(member)
        leaf = tree.add_leaf(member.leaf)
        keys[leaf] = {tm.leaf_to_node(leaf): member.encryption_priv}
        committer = LeafIndex(number - 1 if number % 3 else 0)
        template = tree.leaf(committer)
        assert template is not None
        created = create_update_path(tree, committer, template,
                                     members[committer].signature_priv, GROUP_ID,
                                     context_for, rng, excluded_leaves=(leaf,))
        ctx = context_for(created.tree.tree_hash())
        for other, other_keys in keys.items():
            if other in (committer, leaf):
                continue
            result = decrypt_update_path(created.tree, committer, other, other_keys,
                                         created.update_path, ctx, (leaf,))
            assert result.commit_secret == created.commit_secret
            stale = set(created.tree.direct_path_of_leaf(committer))
            keys[other] = {n: k for n, k in other_keys.items() if n not in stale}
            keys[other].update(result.private_keys)
        keys[committer] = dict(created.private_keys)
        tree = created.tree
    return tree, members, keys


# -- tree evolution (§7.7, §12.1) ----------------------------------------------------

def test_add_fills_leftmost_blank_then_extends() -> None:
    tree = RatchetTree.one_member(CS, fake_leaf(0))
    assert tree.add_leaf(fake_leaf(1)) == 1 and tree.width == 3
    assert tree.add_leaf(fake_leaf(2)) == 2 and tree.width == 7
    assert tree.add_leaf(fake_leaf(3)) == 3 and tree.width == 7
    assert tree.add_leaf(fake_leaf(4)) == 4 and tree.width == 15
    tree.remove_leaf(LeafIndex(1))
    assert tree.width == 15
    assert tree.add_leaf(fake_leaf(5)) == 1


def test_add_records_unmerged_leaf_on_non_blank_ancestors() -> None:
    tree = RatchetTree(CS, [fake_leaf(0), ParentNode(b"p1"), fake_leaf(1), ParentNode(b"p3"),
                            fake_leaf(2), None, None])
    leaf = tree.add_leaf(fake_leaf(3))
    assert leaf == 3
    root = tree.parent_node(NodeIndex(3))
    assert root is not None and root.unmerged_leaves == (3,)
    assert tree.node(NodeIndex(5)) is None
    assert tree.parent_node(NodeIndex(1)) == ParentNode(b"p1")
    assert tree.resolution(NodeIndex(3)) == [3, 6]


def test_remove_blanks_path_and_truncates() -> None:
    tree = RatchetTree(CS, [fake_leaf(0), ParentNode(b"p1"), fake_leaf(1), ParentNode(b"p3"),
                            fake_leaf(2), ParentNode(b"p5"), fake_leaf(3)])
    tree.remove_leaf(LeafIndex(3))
    assert tree.width == 7 and tree.node(NodeIndex(5)) is None
    assert tree.node(NodeIndex(3)) is None
    tree.remove_leaf(LeafIndex(2))
    assert tree.width == 3 and tree.node(NodeIndex(1)) == ParentNode(b"p1")
    tree.remove_leaf(LeafIndex(1))
    assert tree.width == 1 and tree.leaf(LeafIndex(0)) == fake_leaf(0)
    with pytest.raises(UsageError):
        tree.remove_leaf(LeafIndex(1))


def test_update_replaces_leaf_and_blanks_direct_path() -> None:
    tree = RatchetTree(CS, [fake_leaf(0), ParentNode(b"p1"), fake_leaf(1), ParentNode(b"p3"),
                            fake_leaf(2), ParentNode(b"p5"), fake_leaf(3)])
    tree.update_leaf(LeafIndex(2), fake_leaf(9))
    assert tree.leaf(LeafIndex(2)) == fake_leaf(9)
    assert tree.node(NodeIndex(5)) is None and tree.node(NodeIndex(3)) is None
    assert tree.node(NodeIndex(1)) == ParentNode(b"p1")


def test_filtered_direct_path_and_resolution_follow_rfc_example() -> None:
    # Figure 11 of RFC 9420 §4.1.2: members A, B, E, F, G; T, X, Y, W non-blank.
    nodes: list[LeafNode | ParentNode | None] = [None] * 15
    for leaf in (0, 1, 4, 5, 6):
        nodes[2 * leaf] = fake_leaf(leaf)
    for parent in (1, 7, 9, 11):
        nodes[parent] = ParentNode(b"p%d" % parent)
    tree = RatchetTree(CS, nodes)
    assert tree.filtered_direct_path(LeafIndex(0)) == [1, 7]
    assert tree.filtered_direct_path(LeafIndex(4)) == [9, 11, 7]
    assert tree.filtered_direct_path(LeafIndex(6)) == [11, 7]
    assert tree.resolution(NodeIndex(3)) == [1]
    assert tree.resolution(NodeIndex(13)) == [12]
    assert tree.resolution(NodeIndex(5)) == []


def test_serialization_round_trip_strips_trailing_blanks() -> None:
    tree = RatchetTree.one_member(CS, fake_leaf(0))
    for tag in range(1, 5):
        tree.add_leaf(fake_leaf(tag))
    data = tree.to_bytes()
    parsed = RatchetTree.from_bytes(CS, data)
    assert parsed == tree and parsed.width == 15
    assert parsed.tree_hash() == tree.tree_hash()
    assert len(tree.trimmed_nodes()) == 9


def test_copy_is_independent() -> None:
    tree = RatchetTree.one_member(CS, fake_leaf(0))
    tree.add_leaf(fake_leaf(1))
    before_hash, before_bytes = tree.tree_hash(), tree.to_bytes()
    clone = tree.copy()
    clone.add_leaf(fake_leaf(2))
    clone.update_leaf(LeafIndex(0), fake_leaf(7))
    assert tree.tree_hash() == before_hash and tree.to_bytes() == before_bytes
    assert tree.find_leaf_by_signature_key(b"sig2") is None
    assert clone.find_leaf_by_signature_key(b"sig2") == 2
    tree.remove_leaf(LeafIndex(1))
    assert clone.leaf(LeafIndex(1)) == fake_leaf(1)
    assert clone.tree_hash() == RatchetTree(CS, clone.nodes()).tree_hash()


def test_key_lookups() -> None:
    tree = RatchetTree.one_member(CS, fake_leaf(0))
    tree.add_leaf(fake_leaf(1))
    tree.set_node(NodeIndex(1), ParentNode(b"parent"))
    assert tree.find_leaf_by_encryption_key(b"enc1") == 1
    assert tree.find_node_by_encryption_key(b"parent") == 1
    assert tree.find_leaf_by_encryption_key(b"parent") is None
    tree.remove_leaf(LeafIndex(1))
    assert tree.find_leaf_by_signature_key(b"sig1") is None
    assert tree.find_node_by_encryption_key(b"parent") is None


# -- incremental tree hashes (§7.8) ---------------------------------------------------

operations = st.lists(st.tuples(st.sampled_from(["add", "update", "remove", "parent"]),
                                st.integers(0, 63)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_incremental_tree_hash_matches_full_recomputation(ops: list[tuple[str, int]]) -> None:
    tree = RatchetTree.one_member(CS, fake_leaf(0))
    tag = 1
    for op, pick in ops:
        members = [leaf for leaf, _ in tree.member_leaves()]
        tag += 1
        if op == "add":
            tree.add_leaf(fake_leaf(tag))
        elif op == "update":
            tree.update_leaf(members[pick % len(members)], fake_leaf(tag))
        elif op == "remove" and len(members) > 1:
            tree.remove_leaf(members[pick % len(members)])
        elif op == "parent" and tree.width > 1:
            parent = NodeIndex(2 * (pick % (tree.n_leaves - 1)) + 1) if tree.n_leaves > 1 else None
            if parent is not None:
                tree.set_node(parent, ParentNode(b"p%d" % tag, b"", ()))
        fresh = RatchetTree(CS, tree.nodes())
        assert tree.tree_hash() == fresh.tree_hash()
    fresh = RatchetTree(CS, tree.nodes())
    for index in range(tree.width):
        assert tree.node_hash(NodeIndex(index)) == fresh.node_hash(NodeIndex(index))


def test_original_tree_hash_blanks_removed_leaves() -> None:
    nodes: list[LeafNode | ParentNode | None] = [
        fake_leaf(0), ParentNode(b"p1", b"", (1,)), fake_leaf(1), None, None, None, None]
    tree = RatchetTree(CS, nodes)
    expected = RatchetTree(CS, [fake_leaf(0), ParentNode(b"p1"), None, None, None, None,
                                None]).node_hash(NodeIndex(1))
    assert original_tree_hash(tree, NodeIndex(1), [1]) == expected
    assert original_tree_hash(tree, NodeIndex(1), []) == tree.node_hash(NodeIndex(1))


# -- validation (§7.9.2, §12.4.3.1) ---------------------------------------------------

@pytest.fixture(scope="module")
def group() -> tuple[RatchetTree, list[LeafMember], dict[LeafIndex, dict[NodeIndex, bytes]]]:
    tree, members, keys = build_group(6)
    tree.add_leaf(make_leaf_member(CS, make_rng(99), b"late").leaf)
    return tree, members, keys


def test_built_tree_is_valid(group: tuple[RatchetTree, list[LeafMember], dict]) -> None:
    tree, _, _ = group
    assert any(isinstance(n, ParentNode) and n.unmerged_leaves for n in tree.nodes())
    validate_tree(tree, GROUP_ID)
    validate_tree(RatchetTree.from_bytes(CS, tree.to_bytes()), GROUP_ID)


def test_validation_rejects_tampered_signature(group: tuple[RatchetTree, list, dict]) -> None:
    tree = group[0].copy()
    leaf = tree.leaf(LeafIndex(2))
    assert leaf is not None
    bad = bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:]
    tree.set_leaf(LeafIndex(2), leaf.replace(signature=bad))
    with pytest.raises(TreeValidationError, match="signature"):
        validate_tree(tree, GROUP_ID)
    with pytest.raises(TreeValidationError, match="signature"):
        validate_tree(group[0], b"another group")


def test_validation_rejects_broken_parent_hash(group: tuple[RatchetTree, list, dict]) -> None:
    tree = group[0].copy()
    index = next(i for i in range(1, tree.width, 2) if tree.node(NodeIndex(i)) is not None)
    node = tree.parent_node(NodeIndex(index))
    assert node is not None
    tree.set_node(NodeIndex(index), dataclasses.replace(node, encryption_key=b"x" * 32))
    with pytest.raises(TreeValidationError, match="parent-hash"):
        validate_tree(tree, GROUP_ID)
    with pytest.raises(TreeValidationError):
        verify_parent_hashes(tree)


def resign(leaf: LeafNode, signature_priv: bytes, leaf_index: LeafIndex) -> LeafNode:
    unsigned = leaf.replace(signature=b"")
    if leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        tbs = unsigned.tbs_bytes()
    else:
        tbs = unsigned.tbs_bytes(GROUP_ID, leaf_index)
    return unsigned.replace(signature=CS.sign_with_label(signature_priv, b"LeafNodeTBS", tbs))


def test_validation_rejects_duplicate_encryption_key(
        group: tuple[RatchetTree, list[LeafMember], dict]) -> None:
    tree, members, _ = group
    tree = tree.copy()
    target, other = LeafIndex(3), tree.leaf(LeafIndex(1))
    current = tree.leaf(target)
    assert current is not None and other is not None
    changed = current.replace(encryption_key=other.encryption_key)
    tree.set_leaf(target, resign(changed, members[3].signature_priv, target))
    with pytest.raises(TreeValidationError, match="duplicate encryption key"):
        validate_tree(tree, GROUP_ID)


def test_validation_rejects_duplicate_signature_key(
        group: tuple[RatchetTree, list[LeafMember], dict]) -> None:
    tree, members, _ = group
    tree = tree.copy()
    current = tree.leaf(LeafIndex(3))
    other = tree.leaf(LeafIndex(1))
    assert current is not None and other is not None
    changed = current.replace(signature_key=other.signature_key)
    tree.set_leaf(LeafIndex(3), resign(changed, members[1].signature_priv, LeafIndex(3)))
    with pytest.raises(TreeValidationError, match="duplicate signature key"):
        validate_tree(tree, GROUP_ID)


def test_validation_rejects_inconsistent_unmerged_leaves(
        group: tuple[RatchetTree, list, dict]) -> None:
    tree = group[0].copy()
    index = next(i for i in range(1, tree.width, 2)
                 if (n := tree.node(NodeIndex(i))) is not None
                 and isinstance(n, ParentNode) and n.unmerged_leaves)
    node = tree.parent_node(NodeIndex(index))
    assert node is not None
    extended = (0, *node.unmerged_leaves)
    tree.set_node(NodeIndex(index), dataclasses.replace(node, unmerged_leaves=extended))
    with pytest.raises(TreeValidationError):
        validate_tree(tree, GROUP_ID)


def test_validation_rejects_unsupported_credential_type(
        group: tuple[RatchetTree, list[LeafMember], dict]) -> None:
    tree, members, _ = group
    tree = tree.copy()
    current = tree.leaf(LeafIndex(2))
    assert current is not None
    caps = dataclasses.replace(current.capabilities, credentials=(1, 2))
    changed = current.replace(capabilities=caps, credential=Credential.x509((b"cert",)))
    tree.set_leaf(LeafIndex(2), resign(changed, members[2].signature_priv, LeafIndex(2)))
    with pytest.raises(TreeValidationError, match="credential"):
        validate_tree(tree, GROUP_ID)


# -- TreeKEM (§7.4-§7.6) ---------------------------------------------------------------

def test_update_path_round_trip_and_tampering() -> None:
    base, members, keys = build_group(5, seed=7)
    rng = make_rng(3)
    sender = LeafIndex(4)
    template = base.leaf(sender)
    assert template is not None
    created = create_update_path(base, sender, template, members[4].signature_priv,
                                 GROUP_ID, context_for, rng)
    assert base.leaf(sender) == template  # the input tree is untouched
    merged = merge_update_path(base, sender, created.update_path)
    assert merged == created.tree
    validate_tree(merged, GROUP_ID)
    ctx = context_for(merged.tree_hash())
    for receiver in range(4):
        result = decrypt_update_path(merged, sender, LeafIndex(receiver), keys[LeafIndex(receiver)],
                                     created.update_path, ctx)
        assert result.commit_secret == created.commit_secret
        assert result.path_secret == created.path_secrets[result.node]

    wrong_key = dataclasses.replace(created.update_path.nodes[-1], encryption_key=(
        created.update_path.nodes[0].encryption_key[:-1] + b"\x00"))
    tampered = dataclasses.replace(created.update_path,
                                   nodes=(*created.update_path.nodes[:-1], wrong_key))
    with pytest.raises(ValidationError, match="parent hash"):
        merge_update_path(base, sender, tampered)
    with pytest.raises(ValidationError, match="does not match"):
        decrypt_update_path(merged, sender, LeafIndex(0), keys[LeafIndex(0)], tampered, ctx)

    swapped_leaf = created.update_path.leaf_node.replace(parent_hash=b"\x00" * 32)
    with pytest.raises(ValidationError, match="parent hash"):
        merge_update_path(base, sender,
                          dataclasses.replace(created.update_path, leaf_node=swapped_leaf))
    with pytest.raises(ValidationError):
        merge_update_path(base, sender, dataclasses.replace(
            created.update_path, nodes=created.update_path.nodes[:-1]))


def test_external_commit_path_into_blank_leaf() -> None:
    base, _, keys = build_group(3, seed=11)
    rng = make_rng(5)
    joiner = make_leaf_member(CS, rng, b"external")
    slot = base.leftmost_blank_leaf()
    assert slot == 3
    with pytest.raises(UsageError):
        create_update_path(base, slot, joiner.leaf, joiner.signature_priv, GROUP_ID,
                           context_for, rng)
    created = create_update_path(base, slot, joiner.leaf, joiner.signature_priv, GROUP_ID,
                                 context_for, rng, allow_blank_sender=True)
    with pytest.raises(ValidationError):
        merge_update_path(base, slot, created.update_path)
    merged = merge_update_path(base, slot, created.update_path, allow_blank_sender=True)
    assert merged == created.tree and merged.member_count() == 4
    validate_tree(merged, GROUP_ID)
    ctx = context_for(merged.tree_hash())
    for receiver in range(3):
        result = decrypt_update_path(merged, slot, LeafIndex(receiver),
                                     keys[LeafIndex(receiver)], created.update_path, ctx)
        assert result.commit_secret == created.commit_secret
