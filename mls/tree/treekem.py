"""TreeKEM: creating, merging and decrypting UpdatePaths (RFC 9420 §7.4-§7.6).

Path secrets (§7.4)::

    path_secret[0]   = DeriveSecret(leaf_secret, "path")   (leaf_secret from rng)
    path_secret[n]   = DeriveSecret(path_secret[n-1], "path")
    node_secret[n]   = DeriveSecret(path_secret[n], "node")
    node_priv[n], node_pub[n] = KEM.DeriveKeyPair(node_secret[n])
    commit_secret    = DeriveSecret(last path_secret, "path")        (§12.4.1)

The leaf's own key pair is ``DeriveKeyPair(DeriveSecret(leaf_secret, "node"))``
(Figure 13 of §7.4).  Each path secret is encrypted with
``EncryptWithLabel(pk, "UpdatePathNode", provisional GroupContext, path_secret)`` to
every node in the resolution of the copath child, leaving out leaves added by the
same Commit (§7.6).

Every function returns a new tree and never changes the one it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from mls.crypto.suite import CipherSuite, Rng
from mls.enums import LeafNodeSource
from mls.errors import PathSecretError, UsageError, ValidationError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree_nodes import HPKECiphertext, ParentNode, UpdatePath, UpdatePathNode
from mls.tree.math import LeafIndex, NodeIndex, is_ancestor, leaf_to_node, left, right
from mls.tree.parent_hash import set_path_parent_hashes
from mls.tree.ratchet_tree import RatchetTree

UPDATE_PATH_LABEL = b"UpdatePathNode"


def next_path_secret(suite: CipherSuite, path_secret: bytes) -> bytes:
    """``DeriveSecret(path_secret, "path")`` (RFC 9420 §7.4)."""
    return suite.derive_secret(path_secret, b"path")


def node_key_pair(suite: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    """``DeriveKeyPair(DeriveSecret(path_secret, "node"))`` -> (private, public)."""
    return suite.derive_key_pair(suite.derive_secret(path_secret, b"node"))


def _copath_children(path: list[NodeIndex], leaf_node: NodeIndex) -> list[NodeIndex]:
    """For each node of a (filtered) direct path, its child not above the leaf."""
    return [right(node) if leaf_node < node else left(node) for node in path]


@dataclass(frozen=True, slots=True)
class CreatedUpdatePath:
    """Result of :func:`create_update_path`.

    ``tree`` is the tree with the path merged; ``path_secrets`` maps each filtered
    direct path node to its path secret (needed for Welcome ``path_secret``);
    ``private_keys`` holds the new private keys of the leaf and of those nodes.
    """

    tree: RatchetTree
    update_path: UpdatePath
    commit_secret: bytes = field(repr=False)
    path_secrets: dict[NodeIndex, bytes] = field(repr=False)
    private_keys: dict[NodeIndex, bytes] = field(repr=False)


@dataclass(frozen=True, slots=True)
class DecryptedUpdatePath:
    """Result of :func:`decrypt_update_path`: the path secret of ``node`` (the lowest
    path node above the receiver), the commit secret, and the private keys of the
    path nodes from ``node`` up to the top of the sender's filtered direct path."""

    node: NodeIndex
    path_secret: bytes = field(repr=False)
    commit_secret: bytes = field(repr=False)
    private_keys: dict[NodeIndex, bytes] = field(repr=False)


def create_update_path(tree: RatchetTree, sender: LeafIndex, leaf_template: LeafNode,
                       signature_private_key: bytes, group_id: bytes,
                       group_context: Callable[[bytes], bytes], rng: Rng,
                       excluded_leaves: Collection[int] = (),
                       allow_blank_sender: bool = False) -> CreatedUpdatePath:
    """Refresh the sender's direct path and encrypt the path secrets (RFC 9420 §7.5,
    §7.6, §12.4.1).

    ``tree`` is the tree after the Commit's proposals were applied;
    ``leaf_template`` supplies the new leaf's signature key, credential,
    capabilities and extensions (its key, source, parent hash and signature are
    replaced); ``group_context(tree_hash)`` returns the serialized provisional
    GroupContext for the tree hash of the new tree; ``excluded_leaves`` are the
    leaves added by this Commit.  For an external Commit pass the joiner's (blank)
    leaf -- ``tree.leftmost_blank_leaf()``, after ``tree.extend()`` if there is
    none -- and ``allow_blank_sender=True``.
    """
    suite = tree.suite
    if not 0 <= sender < tree.n_leaves:
        raise UsageError(f"sender leaf {sender} is outside the tree")
    if tree.leaf(sender) is None and not allow_blank_sender:
        raise UsageError(f"sender leaf {sender} is blank")
    new_tree = tree.copy()
    new_tree.blank_direct_path(sender)
    path = new_tree.filtered_direct_path(sender)

    leaf_secret = rng(suite.hash_len)
    leaf_private, leaf_public = node_key_pair(suite, leaf_secret)
    private_keys: dict[NodeIndex, bytes] = {leaf_to_node(sender): leaf_private}
    path_secrets: dict[NodeIndex, bytes] = {}
    secret = leaf_secret
    public_keys: list[bytes] = []
    for node in path:
        secret = next_path_secret(suite, secret)
        node_private, node_public = node_key_pair(suite, secret)
        path_secrets[node] = secret
        private_keys[node] = node_private
        public_keys.append(node_public)
        new_tree.set_node(node, ParentNode(node_public))
    commit_secret = next_path_secret(suite, secret)

    leaf_parent_hash = set_path_parent_hashes(new_tree, sender, path)
    unsigned = leaf_template.replace(
        encryption_key=leaf_public, leaf_node_source=LeafNodeSource.COMMIT, lifetime=None,
        parent_hash=leaf_parent_hash, signature=b"")
    signature = suite.sign_with_label(signature_private_key, b"LeafNodeTBS",
                                      unsigned.tbs_bytes(group_id, sender))
    new_leaf = unsigned.replace(signature=signature)
    new_tree.set_leaf(sender, new_leaf)

    context = group_context(new_tree.tree_hash())
    excluded = frozenset(excluded_leaves)
    path_nodes = []
    for node, copath_child, public_key in zip(
            path, _copath_children(path, leaf_to_node(sender)), public_keys, strict=True):
        ciphertexts = []
        for target in new_tree.resolution(copath_child, excluded):
            target_node = new_tree.node(target)
            assert target_node is not None
            kem_output, ciphertext = suite.encrypt_with_label(
                target_node.encryption_key, UPDATE_PATH_LABEL, context, path_secrets[node])
            ciphertexts.append(HPKECiphertext(kem_output, ciphertext))
        path_nodes.append(UpdatePathNode(public_key, tuple(ciphertexts)))
    update_path = UpdatePath(new_leaf, tuple(path_nodes))
    return CreatedUpdatePath(new_tree, update_path, commit_secret, path_secrets, private_keys)


def merge_update_path(tree: RatchetTree, sender: LeafIndex, update_path: UpdatePath,
                      excluded_leaves: Collection[int] = (),
                      allow_blank_sender: bool = False) -> RatchetTree:
    """Merge a received UpdatePath into a copy of ``tree`` (RFC 9420 §7.5).

    The sender's leaf must be a member unless ``allow_blank_sender`` (an external
    Commit, whose sender occupies the leftmost blank leaf: extend the tree first if
    it has none).

    Checks the path length against the filtered direct path, the number of
    ciphertexts against each copath resolution (without ``excluded_leaves``) and the
    leaf's ``parent_hash`` against the recomputed chain; raises
    :class:`ValidationError` on any mismatch.
    """
    if not 0 <= sender < tree.n_leaves or (
            tree.leaf(sender) is None and not allow_blank_sender):
        raise ValidationError(f"UpdatePath sender {sender} is not a member")
    new_tree = tree.copy()
    new_tree.blank_direct_path(sender)
    path = new_tree.filtered_direct_path(sender)
    if len(path) != len(update_path.nodes):
        raise ValidationError(
            f"UpdatePath has {len(update_path.nodes)} nodes, filtered direct path has "
            f"{len(path)}")
    _check_fresh_keys(new_tree, update_path)
    excluded = frozenset(excluded_leaves)
    for node, copath_child, path_node in zip(
            path, _copath_children(path, leaf_to_node(sender)), update_path.nodes,
            strict=True):
        expected = new_tree.resolution_size(copath_child, excluded)
        if len(path_node.encrypted_path_secret) != expected:
            raise ValidationError(
                f"UpdatePath node {node}: {len(path_node.encrypted_path_secret)} "
                f"ciphertexts for a resolution of {expected}")
        new_tree.set_node(node, ParentNode(path_node.encryption_key))
    leaf_parent_hash = set_path_parent_hashes(new_tree, sender, path)
    leaf = update_path.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.COMMIT:
        raise ValidationError("UpdatePath leaf node source is not commit")
    if leaf.parent_hash != leaf_parent_hash:
        raise ValidationError("UpdatePath leaf node has an invalid parent hash")
    new_tree.set_leaf(sender, leaf)
    return new_tree


def _check_fresh_keys(tree: RatchetTree, update_path: UpdatePath) -> None:
    """No public key of the UpdatePath may already be in the tree (whose direct path
    is blanked but whose sender leaf is still the old one), nor repeat (§12.4.2)."""
    keys = [node.encryption_key for node in update_path.nodes]
    keys.append(update_path.leaf_node.encryption_key)
    if len(set(keys)) != len(keys):
        raise ValidationError("UpdatePath repeats an encryption key")
    for key in keys:
        if tree.find_node_by_encryption_key(key) is not None:
            raise ValidationError("UpdatePath encryption key is already in the tree")


def decrypt_update_path(tree: RatchetTree, sender: LeafIndex, receiver: LeafIndex,
                        private_keys: Mapping[NodeIndex, bytes], update_path: UpdatePath,
                        group_context: bytes,
                        excluded_leaves: Collection[int] = ()) -> DecryptedUpdatePath:
    """Decrypt the path secret meant for ``receiver`` and derive the rest of the path
    (RFC 9420 §7.5).

    ``tree`` is the tree returned by :func:`merge_update_path`; ``private_keys`` maps
    node indices to the receiver's HPKE private keys (its leaf and direct path);
    ``group_context`` is the serialized provisional GroupContext.  Raises
    :class:`ValidationError` if a derived public key differs from the UpdatePath and
    :class:`~mls.errors.CryptoError` if decryption fails.
    """
    if receiver == sender:
        raise UsageError("the sender does not decrypt its own UpdatePath")
    suite = tree.suite
    path = tree.filtered_direct_path(sender)
    receiver_node = leaf_to_node(receiver)
    excluded = frozenset(excluded_leaves)
    copath = _copath_children(path, leaf_to_node(sender))
    position = next((i for i, child in enumerate(copath)
                     if is_ancestor(child, receiver_node)), None)
    if position is None:
        raise UsageError(f"leaf {receiver} is not below the sender's filtered direct path")
    resolution = tree.resolution(copath[position], excluded)
    slot = next((i for i, node in enumerate(resolution) if node in private_keys), None)
    if slot is None:
        raise UsageError(f"leaf {receiver} holds no private key in the copath resolution")
    holder = resolution[slot]
    if len(update_path.nodes) != len(path):
        raise ValidationError("UpdatePath length differs from the filtered direct path")
    ciphertexts = update_path.nodes[position].encrypted_path_secret
    if len(ciphertexts) != len(resolution):
        raise ValidationError(f"UpdatePath node {path[position]}: wrong ciphertext count")
    ciphertext = ciphertexts[slot]
    path_secret = suite.decrypt_with_label(private_keys[holder], UPDATE_PATH_LABEL,
                                           group_context, ciphertext.kem_output,
                                           ciphertext.ciphertext)
    new_keys: dict[NodeIndex, bytes] = {}
    secret = path_secret
    for index in range(position, len(path)):
        if index > position:
            secret = next_path_secret(suite, secret)
        node_private, node_public = node_key_pair(suite, secret)
        if node_public != update_path.nodes[index].encryption_key:
            raise PathSecretError(f"UpdatePath public key of node {path[index]} does not "
                                  "match the derived key")
        new_keys[path[index]] = node_private
    return DecryptedUpdatePath(path[position], path_secret,
                               next_path_secret(suite, secret), new_keys)


def private_keys_from_path_secret(suite: CipherSuite, tree: RatchetTree, leaf: LeafIndex,
                                  start: NodeIndex, path_secret: bytes) -> dict[NodeIndex, bytes]:
    """Private keys for ``start`` and the nodes above it on ``leaf``'s filtered direct
    path, from ``start``'s path secret (joining via Welcome, RFC 9420 §12.4.3.1).

    Each derived public key must equal the one in the tree, else
    :class:`ValidationError`.
    """
    path = tree.filtered_direct_path(leaf)
    if start not in path:
        raise ValidationError(f"node {start} is not on the filtered direct path of {leaf}")
    keys: dict[NodeIndex, bytes] = {}
    secret = path_secret
    for index in range(path.index(start), len(path)):
        node = path[index]
        if node != start:
            secret = next_path_secret(suite, secret)
        node_private, node_public = node_key_pair(suite, secret)
        value = tree.node(node)
        if value is None or value.encryption_key != node_public:
            raise ValidationError(f"path secret does not match the public key of node {node}")
        keys[node] = node_private
    return keys
