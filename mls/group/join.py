"""Joining a group from a Welcome message (RFC 9420 §12.4.3.1).

:func:`join_from_welcome` runs every step of §12.4.3.1 in order:

1. find our EncryptedGroupSecrets by KeyPackageRef and decrypt the GroupSecrets;
2. resolve the PSKs it names and derive the welcome secret;
3. decrypt the GroupInfo and check its cipher suite and version;
4. take the ratchet tree from the ratchet_tree extension or from the caller;
5. verify the GroupInfo signature with the signer leaf's signature key;
6. validate the tree fully: tree hash equals ``group_context.tree_hash``, leaves
   (the one rule set of :mod:`mls.group.leaf_validation`: the group's requirements
   and the Authentication Service, lifetimes not judged), parent hashes, unmerged
   leaves, unique keys (:func:`mls.tree.validation.validate_tree`);
7. find our leaf (identical to our KeyPackage's leaf node);
8. set the private keys from the path secret at the lowest common ancestor of our
   leaf and the signer, up to the root, checking each derived public key;
9. derive the epoch from the joiner secret, verify the confirmation tag, compute the
   interim transcript hash and set up the secret tree;
10. for a group started by reinitialization or branching, check it against the old
    group (:mod:`mls.group.resumption`).
"""

from __future__ import annotations

from collections.abc import Mapping

from mls.codec import decode, encode
from mls.crypto.suite import CipherSuite, suite
from mls.enums import ExtensionType, ProtocolVersion
from mls.errors import TreeValidationError, UsageError, ValidationError
from mls.framing.refs import key_package_ref
from mls.framing.welcome import decrypt_group_info, open_group_secrets, verify_group_info
from mls.group.config import GroupConfig
from mls.group.credentials import CredentialValidator, check_credential
from mls.group.key_package import KeyPackageBundle
from mls.group.leaf_validation import group_requirements
from mls.group.psk import PskResolver
from mls.group.resumption import linked_psk_id, resumption_lookup, verify_linked_join
from mls.group.state import GroupState, start_epoch_keys
from mls.messages.extensions import find_extension
from mls.messages.framing import MLSMessage, interim_transcript_hash_input
from mls.messages.welcome import GroupInfo, GroupSecrets, Welcome
from mls.schedule.key_schedule import derive_welcome_secret, epoch_from_joiner
from mls.schedule.psk import psk_secret
from mls.schedule.transcript import interim_transcript_hash, verify_confirmation_tag
from mls.tree.math import LeafIndex, common_ancestor, leaf_to_node
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import private_keys_from_path_secret
from mls.tree.validation import validate_tree


def group_info_of(value: MLSMessage | GroupInfo | bytes) -> GroupInfo:
    """The GroupInfo itself, or the one an MLSMessage (or its encoding) carries
    (RFC 9420 §6); :class:`UsageError` for any other message."""
    if isinstance(value, GroupInfo):
        return value
    message = decode(MLSMessage, value) if isinstance(value, bytes) else value
    if not isinstance(message.body, GroupInfo):
        raise UsageError("expected a GroupInfo message")
    return message.body


def group_tree(cs: CipherSuite, group_info: GroupInfo,
               ratchet_tree: RatchetTree | bytes | None) -> RatchetTree:
    """The tree from the GroupInfo's ratchet_tree extension, else the one given out
    of band (RFC 9420 §12.4.3.3)."""
    extension = find_extension(group_info.extensions, ExtensionType.RATCHET_TREE)
    if extension is not None:
        return RatchetTree.from_bytes(cs, extension.extension_data)
    if ratchet_tree is None:
        raise UsageError("the GroupInfo has no ratchet_tree extension: pass the tree")
    if isinstance(ratchet_tree, bytes):
        return RatchetTree.from_bytes(cs, ratchet_tree)
    return ratchet_tree.copy()


def validate_group_tree(cs: CipherSuite, tree: RatchetTree, group_info: GroupInfo, *,
                        credential_validator: CredentialValidator | None) -> None:
    """Signature of the GroupInfo by its signer, then full tree validation
    (RFC 9420 §12.4.3.1): every leaf meets the requirements of the GroupContext
    (its extension types and ``required_capabilities``, §7.3, §13.4 -- which also
    checks that we support every GroupContext extension, our leaf being in the tree)
    and its credential is accepted by the Authentication Service (§5.3.1), as on
    every other path.  The tree is received: lifetimes are not judged (§7.3)."""
    context = group_info.group_context
    if not 0 <= group_info.signer < tree.n_leaves:
        raise ValidationError("GroupInfo signer is outside the tree")
    signer = tree.leaf(LeafIndex(group_info.signer))
    if signer is None:
        raise ValidationError("GroupInfo signer leaf is blank")
    verify_group_info(cs, group_info, signer.signature_key)
    if tree.tree_hash() != context.tree_hash:
        raise TreeValidationError("ratchet tree hash does not match the GroupContext")
    validate_tree(tree, context.group_id,
                  requirements=group_requirements(context.extensions))
    for _, leaf in tree.member_leaves():
        check_credential(credential_validator, leaf.credential, leaf.signature_key)


def _own_leaf(tree: RatchetTree, bundle: KeyPackageBundle) -> LeafIndex:
    leaf_node = bundle.key_package.leaf_node
    own = tree.find_leaf_by_encryption_key(leaf_node.encryption_key)
    if own is None or tree.leaf(own) != leaf_node:
        raise ValidationError("our KeyPackage's leaf node is not in the ratchet tree")
    return own


def _path_keys(cs: CipherSuite, tree: RatchetTree, own: LeafIndex, signer: LeafIndex,
               secrets: GroupSecrets) -> dict[bytes, bytes]:
    """Private keys from the Welcome's path secret (RFC 9420 §12.4.3.1), by public key."""
    if secrets.path_secret is None:
        return {}
    ancestor = common_ancestor(leaf_to_node(own), leaf_to_node(signer))
    keys = private_keys_from_path_secret(cs, tree, own, ancestor, secrets.path_secret)
    out: dict[bytes, bytes] = {}
    for node, private in keys.items():
        value = tree.node(node)
        assert value is not None
        out[value.encryption_key] = private
    return out


def _open_welcome(cs: CipherSuite, welcome: Welcome, bundle: KeyPackageBundle,
                  resolver: PskResolver) -> tuple[GroupSecrets, bytes, GroupInfo]:
    """Steps 1-3 of RFC 9420 §12.4.3.1: our GroupSecrets, the PSK secret, and the
    decrypted (not yet verified) GroupInfo."""
    key_package = bundle.key_package
    group_secrets = open_group_secrets(cs, welcome, key_package,
                                       key_package_ref(cs, key_package), bundle.init_priv)
    psk = psk_secret(cs, resolver.resolve(group_secrets.psks))
    welcome_secret = derive_welcome_secret(cs, group_secrets.joiner_secret, psk)
    return group_secrets, psk, decrypt_group_info(cs, welcome_secret,
                                                  welcome.encrypted_group_info)


def welcome_group_info(welcome: Welcome, bundle: KeyPackageBundle, *,
                       external_psks: Mapping[bytes, bytes] | None = None) -> GroupInfo:
    """The GroupInfo a Welcome carries for ``bundle``, decrypted (RFC 9420 §12.4.3.1
    steps 1-3) but verified only if :func:`join_from_welcome` accepted the same Welcome:
    its ``signer`` is the member whose Commit added us (§12.4.3.1), which a joiner may
    want to show."""
    cs = suite(welcome.cipher_suite)
    return _open_welcome(cs, welcome, bundle,
                         PskResolver(external=dict(external_psks or {})))[2]


def join_from_welcome(welcome: Welcome, bundle: KeyPackageBundle, *,
                      ratchet_tree: RatchetTree | bytes | None = None,
                      external_psks: Mapping[bytes, bytes] | None = None,
                      psk_resolver: PskResolver | None = None, now: int | None = None,
                      credential_validator: CredentialValidator | None = None,
                      config: GroupConfig | None = None,
                      resumption_groups: Mapping[bytes, GroupState] | None = None
                      ) -> GroupState:
    """Join a group from a Welcome (RFC 9420 §12.4.3.1); see the module docstring.

    PSKs come from ``psk_resolver`` if given, else from ``external_psks`` and the
    resumption PSKs retained by ``resumption_groups`` (old groups by group id).  A
    Welcome naming a reinit/branch PSK is verified against its old group, which must
    be in ``resumption_groups`` (:func:`mls.group.resumption.verify_linked_join`).
    ``now`` judges nothing here: the leaves of a received tree are not held to their
    lifetimes (RFC 9420 §7.3, see :func:`mls.tree.validation.validate_tree`).
    """
    key_package = bundle.key_package
    cs = suite(welcome.cipher_suite)
    old_groups = resumption_groups or {}
    resolver = psk_resolver or PskResolver(external=dict(external_psks or {}),
                                           resumption=resumption_lookup(old_groups))
    group_secrets, psk, group_info = _open_welcome(cs, welcome, bundle, resolver)
    linked_psk = linked_psk_id(group_secrets.psks)
    context = group_info.group_context
    if context.cipher_suite != cs.id or context.version != ProtocolVersion.MLS10:
        raise ValidationError("GroupInfo cipher suite or version differs from the Welcome")
    if linked_psk is not None and context.epoch != 1:
        raise ValidationError("a group started by reinit/branch must be joined at epoch 1")
    tree = group_tree(cs, group_info, ratchet_tree)
    validate_group_tree(cs, tree, group_info, credential_validator=credential_validator)
    own = _own_leaf(tree, bundle)
    keys = _path_keys(cs, tree, own, LeafIndex(group_info.signer), group_secrets)
    keys[key_package.leaf_node.encryption_key] = bundle.encryption_priv
    _, secrets = epoch_from_joiner(cs, group_secrets.joiner_secret, psk, encode(context))
    verify_confirmation_tag(cs, secrets.confirmation_key, context.confirmed_transcript_hash,
                            group_info.confirmation_tag)
    if linked_psk is not None:
        verify_linked_join(linked_psk, context, tree, old_groups)
    interim = interim_transcript_hash(cs, context.confirmed_transcript_hash,
                                      interim_transcript_hash_input(group_info.confirmation_tag))
    config = config or GroupConfig()
    secrets, secret_tree = start_epoch_keys(cs, secrets, tree.n_leaves, config)
    return GroupState(cs, context, tree, own, bundle.signature_priv, keys, secrets,
                      secret_tree, interim, group_info.confirmation_tag, config=config)
