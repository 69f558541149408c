"""The Group facade: every group operation of RFC 9420 §11-§12, sans-I/O.

A :class:`Group` wraps one immutable :class:`~mls.group.state.GroupState`.  Every
operation returns a new Group (and whatever it produced); a failed operation raises a
specific :class:`~mls.errors.MLSError` and the Group it was called on is unchanged.
Randomness (``rng``) and time (``now``, Unix seconds) are arguments.

Commits are two-phase: :meth:`Group.commit` returns a
:class:`~mls.group.commit.StagedCommit`; send its ``message`` (and ``welcome``) and,
once the delivery service accepted the Commit, :meth:`Group.merge` it.  If another
member's Commit for the same epoch wins, drop the staged commit and :meth:`process`
the winner instead.

Reinitialization (RFC 9420 §11.2): commit a ReInit alone; every member's group is
then *retired* (:attr:`Group.retired`: it sends nothing more) and one member calls
:meth:`Group.reinit` on it to start the new group, which the others join with
``Group.join(..., resumption_groups={old.group_id: old})``.  Branching (§11.3):
:meth:`Group.branch` starts a subgroup joined the same way.  Processing the echo of
our own application message or proposal returns an
:class:`~mls.group.events.OwnMessageEvent` and changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from mls.codec import decode, encode
from mls.crypto.suite import Rng, suite
from mls.enums import (
    ExtensionType,
    LeafNodeSource,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
)
from mls.errors import UsageError
from mls.framing.welcome import sign_group_info
from mls.group import application
from mls.group.application import check_can_send
from mls.group.commit import StagedCommit, check_base, create_commit, create_proposal
from mls.group.config import GroupConfig
from mls.group.credentials import CredentialValidator
from mls.group.events import Event
from mls.group.external import join_external
from mls.group.join import group_info_of, join_from_welcome
from mls.group.key_package import KeyPackageBundle
from mls.group.process import process_message
from mls.group.psk import PskResolver
from mls.group.resumption import commit_linked_group
from mls.group.state import GroupState, start_epoch_keys
from mls.messages.credentials import Credential
from mls.messages.extension_types import ExternalPub
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import MLSMessage, interim_transcript_hash_input
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import (
    Add,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from mls.messages.psk import PreSharedKeyID
from mls.messages.welcome import GroupInfo, Welcome
from mls.schedule.key_schedule import epoch_from_joiner, external_key_pair
from mls.schedule.transcript import confirmation_tag, interim_transcript_hash
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree


def _as_message(message: MLSMessage | bytes) -> MLSMessage:
    return decode(MLSMessage, message) if isinstance(message, bytes) else message


class Group:
    """One member's view of an MLS group (see the module docstring)."""

    __slots__ = ("_state",)

    def __init__(self, state: GroupState) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"Group({self._state!r})"

    # -- creation and joining ---------------------------------------------------------

    @classmethod
    def create(cls, bundle: KeyPackageBundle, *, group_id: bytes, rng: Rng,
               extensions: tuple[Extension, ...] = (),
               config: GroupConfig | None = None) -> Group:
        """A one-member group (RFC 9420 §11) with our KeyPackage's leaf node."""
        key_package = bundle.key_package
        cs = suite(key_package.cipher_suite)
        tree = RatchetTree.one_member(cs, key_package.leaf_node)
        context = GroupContext(ProtocolVersion.MLS10, cs.id, group_id, 0, tree.tree_hash(),
                               b"", extensions)
        _, secrets = epoch_from_joiner(cs, rng(cs.hash_len), b"", encode(context))
        tag = confirmation_tag(cs, secrets.confirmation_key, b"")
        interim = interim_transcript_hash(cs, b"", interim_transcript_hash_input(tag))
        config = config or GroupConfig()
        secrets, secret_tree = start_epoch_keys(cs, secrets, 1, config)
        keys = {key_package.leaf_node.encryption_key: bundle.encryption_priv}
        return cls(GroupState(cs, context, tree, LeafIndex(0), bundle.signature_priv, keys,
                              secrets, secret_tree, interim, tag, config=config))

    @classmethod
    def join(cls, welcome: MLSMessage | Welcome | bytes, bundle: KeyPackageBundle, *,
             ratchet_tree: RatchetTree | bytes | None = None,
             external_psks: Mapping[bytes, bytes] | None = None,
             psk_resolver: PskResolver | None = None, now: int | None = None,
             credential_validator: CredentialValidator | None = None,
             config: GroupConfig | None = None,
             resumption_groups: Mapping[bytes, Group] | None = None) -> Group:
        """Join from a Welcome (RFC 9420 §12.4.3.1).

        ``resumption_groups`` are our old groups by group id: their retained
        resumption PSKs are available to the Welcome, and a group started by
        reinitialization or branching (§11.2, §11.3) is verified against the old
        group its reinit/branch PSK names (which must be among them).
        """
        if not isinstance(welcome, Welcome):
            body = _as_message(welcome).body
            if not isinstance(body, Welcome):
                raise UsageError("expected a Welcome message")
            welcome = body
        old_states = {group_id: group.state
                      for group_id, group in (resumption_groups or {}).items()}
        return cls(join_from_welcome(welcome, bundle, ratchet_tree=ratchet_tree,
                                     external_psks=external_psks, psk_resolver=psk_resolver,
                                     now=now, credential_validator=credential_validator,
                                     config=config, resumption_groups=old_states))

    @classmethod
    def join_external(cls, group_info: MLSMessage | GroupInfo | bytes, *,
                      credential: Credential, signature_priv: bytes, rng: Rng,
                      ratchet_tree: RatchetTree | bytes | None = None,
                      resync_leaf: LeafIndex | None = None,
                      psk_ids: Sequence[PreSharedKeyID] = (),
                      external_psks: Mapping[bytes, bytes] | None = None,
                      now: int | None = None,
                      credential_validator: CredentialValidator | None = None,
                      config: GroupConfig | None = None) -> tuple[Group, MLSMessage]:
        """Join by external Commit (RFC 9420 §12.4.3.2); ``resync_leaf`` removes our
        old leaf.  Returns the new group and the Commit to send."""
        state, message = join_external(
            group_info_of(group_info), credential=credential, signature_priv=signature_priv,
            rng=rng, ratchet_tree=ratchet_tree, remove=resync_leaf, psk_ids=psk_ids,
            external_psks=external_psks, now=now,
            credential_validator=credential_validator, config=config)
        return cls(state), message

    # -- inspection -----------------------------------------------------------------------

    @property
    def state(self) -> GroupState:
        return self._state

    @property
    def group_id(self) -> bytes:
        return self._state.group_id

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def own_leaf(self) -> LeafIndex:
        return self._state.own_leaf

    @property
    def active(self) -> bool:
        return self._state.active

    @property
    def group_context(self) -> GroupContext:
        return self._state.context

    @property
    def retired(self) -> bool:
        """Whether a ReInit was committed: the group sends nothing more and waits to
        be replaced by :meth:`reinit` (RFC 9420 §11.2)."""
        return self._state.retired

    @property
    def pending_reinit(self) -> ReInit | None:
        """The ReInit proposal of the Commit that retired this group, if any."""
        return self._state.reinit

    def members(self) -> Iterator[tuple[LeafIndex, LeafNode]]:
        """Every member's leaf index and leaf node, left to right."""
        return self._state.tree.member_leaves()

    def ratchet_tree(self) -> bytes:
        """The ratchet tree (for delivery out of band, RFC 9420 §12.4.3.3)."""
        return self._state.tree.to_bytes()

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return application.export_secret(self._state, label, context, length)

    def epoch_authenticator(self) -> bytes:
        return application.epoch_authenticator(self._state)

    def group_info(self, *, with_ratchet_tree: bool | None = None) -> GroupInfo:
        """A signed GroupInfo of the current epoch for external joiners (§12.4.3)."""
        state = self._state
        extensions: list[Extension] = []
        if with_ratchet_tree if with_ratchet_tree is not None else (
                state.config.ratchet_tree_in_welcome):
            extensions.append(Extension(ExtensionType.RATCHET_TREE, state.tree.to_bytes()))
        _, external_pub = external_key_pair(state.cs, state.secrets.external_secret)
        extensions.append(Extension(ExtensionType.EXTERNAL_PUB,
                                    encode(ExternalPub(external_pub))))
        unsigned = GroupInfo(state.context, tuple(extensions), state.confirmation_tag,
                             state.own_leaf)
        return sign_group_info(state.cs, state.signature_priv, unsigned)

    # -- serialization --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return self._state.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Group:
        return cls(GroupState.from_bytes(data))

    # -- proposals ------------------------------------------------------------------------

    def propose(self, proposal: Proposal, *, rng: Rng, authenticated_data: bytes = b""
                ) -> tuple[Group, MLSMessage]:
        """Send any proposal (RFC 9420 §12.1); it joins our pending store."""
        state, message = create_proposal(self._state, proposal, rng=rng,
                                         authenticated_data=authenticated_data)
        return Group(state), message

    def propose_add(self, key_package: KeyPackage, *, rng: Rng) -> tuple[Group, MLSMessage]:
        return self.propose(Add(key_package), rng=rng)

    def propose_remove(self, leaf_index: int, *, rng: Rng) -> tuple[Group, MLSMessage]:
        return self.propose(Remove(leaf_index), rng=rng)

    def propose_update(self, *, rng: Rng) -> tuple[Group, MLSMessage]:
        """An Update with a fresh leaf encryption key (RFC 9420 §12.1.2)."""
        state = self._state
        private, public = state.cs.generate_hpke_key_pair(rng)
        unsigned = state.own_leaf_node().replace(
            encryption_key=public, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None,
            parent_hash=b"", signature=b"")
        signature = state.cs.sign_with_label(
            state.signature_priv, b"LeafNodeTBS", unsigned.tbs_bytes(state.group_id,
                                                                      state.own_leaf))
        proposal = Update(unsigned.replace(signature=signature))
        new_state, message = create_proposal(state, proposal, rng=rng,
                                             new_keys={public: private})
        return Group(new_state), message

    def propose_external_psk(self, psk_id: bytes, *, rng: Rng) -> tuple[Group, MLSMessage]:
        psk = PreSharedKeyID(PSKType.EXTERNAL, rng(self._state.cs.hash_len), psk_id=psk_id)
        return self.propose(PreSharedKey(psk), rng=rng)

    def propose_psk(self, psk: PreSharedKeyID, *, rng: Rng) -> tuple[Group, MLSMessage]:
        return self.propose(PreSharedKey(psk), rng=rng)

    def propose_reinit(self, *, group_id: bytes, cipher_suite: int,
                       extensions: tuple[Extension, ...] = (), rng: Rng
                       ) -> tuple[Group, MLSMessage]:
        """Propose to reinitialize the group (RFC 9420 §11.2, §12.1.5); commit it
        alone (``commit(proposals=[ReInit(...)])`` commits one by value)."""
        reinit = ReInit(group_id, ProtocolVersion.MLS10, cipher_suite, extensions)
        return self.propose(reinit, rng=rng)

    def propose_group_context_extensions(self, extensions: tuple[Extension, ...], *,
                                         rng: Rng) -> tuple[Group, MLSMessage]:
        return self.propose(GroupContextExtensions(extensions), rng=rng)

    # -- commits ----------------------------------------------------------------------------

    def commit(self, *, rng: Rng, proposals: Sequence[Proposal] = (),
               add: Sequence[KeyPackage] = (), remove: Sequence[int] = (),
               force_path: bool = False, authenticated_data: bytes = b"",
               external_psks: Mapping[bytes, bytes] | None = None,
               now: int | None = None,
               credential_validator: CredentialValidator | None = None,
               credential: Credential | None = None) -> StagedCommit:
        """Commit every pending proposal plus ``proposals``/``add``/``remove`` by
        value (RFC 9420 §12.4.1).  A ``credential`` other than our leaf's replaces it
        through the UpdatePath (RFC 9420 §5.3.2, renewing an expiring credential).
        Nothing changes until :meth:`merge`."""
        by_value: list[Proposal] = [Remove(leaf) for leaf in remove]
        by_value.extend(Add(key_package) for key_package in add)
        by_value.extend(proposals)
        return create_commit(self._state, rng=rng, proposals=by_value, force_path=force_path,
                             authenticated_data=authenticated_data,
                             external_psks=external_psks, now=now,
                             credential_validator=credential_validator,
                             credential=credential)

    def merge(self, staged: StagedCommit) -> Group:
        """Adopt our own staged Commit once the delivery service accepted it.

        Application messages of the old epoch may have been sent or received between
        staging and merging (a client need not stop the epoch while its commit is in
        flight): their keys were consumed in this state's secret tree, so the merged
        state keeps that tree as the old epoch's, not the one captured when the commit
        was staged -- a consumed key stays deleted (RFC 9420 §9.2)."""
        check_base(self._state, staged)
        state = staged.state
        past = state.past_epochs
        if past and past[0].epoch == self._state.epoch \
                and past[0].secret_tree is not self._state.secret_tree:
            kept = dataclasses.replace(past[0], secret_tree=self._state.secret_tree)
            state = state.replace(past_epochs=(kept, *past[1:]))
        return Group(state)

    # -- reinitialization and branching ------------------------------------------------

    def reinit(self, bundle: KeyPackageBundle, key_packages: Sequence[KeyPackage], *,
               rng: Rng, now: int | None = None, config: GroupConfig | None = None,
               credential_validator: CredentialValidator | None = None,
               force_path: bool = False) -> tuple[Group, MLSMessage | None]:
        """Start the successor of this retired group (RFC 9420 §11.2 step 3).

        ``bundle`` is our KeyPackage for the new group and ``key_packages`` those of
        every other member, all in the ReInit's cipher suite.  The new group has the
        ReInit's group_id, version, cipher suite and extensions; its first Commit adds
        the members and injects this group's last resumption PSK (usage reinit).
        Returns the new group at epoch 1 and the Welcome (``None`` if alone).
        """
        reinit = self._state.reinit
        if reinit is None:
            raise UsageError("the last commit of this group holds no ReInit")
        key_package = bundle.key_package
        if (key_package.version, key_package.cipher_suite) != (reinit.version,
                                                                reinit.cipher_suite):
            raise UsageError("our KeyPackage's version or cipher suite differs from the "
                             "ReInit's")
        new = Group.create(bundle, group_id=reinit.group_id, rng=rng,
                           extensions=reinit.extensions, config=config or self._state.config)
        state, welcome = commit_linked_group(
            self._state, new.state, key_packages, usage=ResumptionPSKUsage.REINIT, rng=rng,
            now=now, credential_validator=credential_validator, force_path=force_path)
        return Group(state), welcome

    def branch(self, bundle: KeyPackageBundle, key_packages: Sequence[KeyPackage], *,
               new_group_id: bytes, rng: Rng, extensions: tuple[Extension, ...] | None = None,
               now: int | None = None, config: GroupConfig | None = None,
               credential_validator: CredentialValidator | None = None,
               force_path: bool = False) -> tuple[Group, MLSMessage | None]:
        """A subgroup of some of our members (RFC 9420 §11.3), linked to this group's
        current epoch by a resumption PSK of usage branch.  ``bundle`` and
        ``key_packages`` are fresh KeyPackages (this group's cipher suite) of us and
        of the members to include; ``extensions`` default to this group's.  Returns
        the subgroup at epoch 1 and the Welcome (``None`` if alone)."""
        check_can_send(self._state)
        new = Group.create(bundle, group_id=new_group_id, rng=rng,
                           extensions=(self._state.context.extensions if extensions is None
                                       else extensions),
                           config=config or self._state.config)
        state, welcome = commit_linked_group(
            self._state, new.state, key_packages, usage=ResumptionPSKUsage.BRANCH, rng=rng,
            now=now, credential_validator=credential_validator, force_path=force_path)
        return Group(state), welcome

    # -- receiving and sending messages -------------------------------------------------

    def process(self, message: MLSMessage | bytes, *,
                external_psks: Mapping[bytes, bytes] | None = None,
                psk_resolver: PskResolver | None = None, now: int | None = None,
                credential_validator: CredentialValidator | None = None
                ) -> tuple[Group, Event]:
        """Process a handshake or application message (RFC 9420 §6, §12)."""
        state, event = process_message(self._state, _as_message(message),
                                       external_psks=external_psks,
                                       psk_resolver=psk_resolver, now=now,
                                       credential_validator=credential_validator)
        return Group(state), event

    def encrypt(self, data: bytes, *, rng: Rng, authenticated_data: bytes = b""
                ) -> tuple[Group, MLSMessage]:
        """An application message (RFC 9420 §6.3)."""
        state, message = application.encrypt_application(
            self._state, data, rng=rng, authenticated_data=authenticated_data)
        return Group(state), message
