"""Validating and applying the proposal list of a Commit (RFC 9420 §12.2, §12.3,
§12.4, §12.4.3.2).

:func:`validate_proposal_list` enforces every rule of §12.2 for a regular Commit (and
the rules of §12.4.3.2 for an external Commit), raising
:class:`~mls.errors.ProposalValidationError` with a message naming the rule (or
:class:`~mls.errors.SignatureError` for a bad KeyPackage/LeafNode signature).
:func:`apply_proposals` applies a validated list to a copy of the tree (§12.3) and
:func:`path_required` tells whether the Commit needs an UpdatePath (§12.4).

Costs: the checks are O(proposals * log n) plus, only when the list adds or replaces
leaves or changes the group context extensions, one O(members) pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mls.crypto.suite import CipherSuite, suite
from mls.enums import (
    LeafNodeSource,
    ProposalType,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
)
from mls.errors import (
    ProposalValidationError,
    SignatureError,
    UnsupportedError,
    UsageError,
    ValidationError,
)
from mls.group.credentials import CredentialValidator, check_successor
from mls.group.external_senders import (
    EXTERNAL_SENDER_PROPOSAL_TYPES,
    external_senders,
    validate_external_senders,
)
from mls.group.key_package import validate_key_package
from mls.group.leaf_validation import (
    check_leaf_alone,
    group_requirements,
    required_capabilities,
)
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import Sender
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from mls.messages.psk import PreSharedKeyID
from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import (
    DEFAULT_PROPOSAL_TYPES,
    LeafRequirements,
    check_unique_extension_types,
)

#: Proposal types that do not require an UpdatePath (RFC 9420 §12.4, §17.4).
PATH_NOT_REQUIRED_TYPES = frozenset({ProposalType.ADD, ProposalType.PSK, ProposalType.REINIT})


@dataclass(frozen=True, slots=True)
class SenderProposal:
    """A proposal with who sent it and, if it came by reference, its ProposalRef."""

    proposal: Proposal
    sender: Sender
    ref: bytes | None


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """The result of applying a proposal list (RFC 9420 §12.3)."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    added: tuple[LeafIndex, ...]
    added_key_packages: tuple[KeyPackage, ...]
    removed: tuple[LeafIndex, ...]
    psk_ids: tuple[PreSharedKeyID, ...]
    reinit: ReInit | None
    external_init: ExternalInit | None


def _where(position: int, proposal: Proposal) -> str:
    return f"proposal {position} ({proposal.proposal_type.name.lower()})"


def path_required(proposals: Sequence[SenderProposal]) -> bool:
    """Whether a Commit covering ``proposals`` must carry a path (RFC 9420 §12.4):
    it does if the list is empty or has any type other than add, psk and reinit."""
    if not proposals:
        return True
    return any(sp.proposal.proposal_type not in PATH_NOT_REQUIRED_TYPES for sp in proposals)


def check_psk_id(cs: CipherSuite, psk_id: PreSharedKeyID, where: str,
                 linked_usage: ResumptionPSKUsage | None = None) -> None:
    """One PreSharedKeyID (RFC 9420 §12.1.4): ``psk_nonce`` of length Nh, and a
    resumption PSK has usage application -- except the one PSK of usage
    ``linked_usage`` (reinit or branch) in the first Commit of a group created by
    reinitialization or branching (§11.2, §11.3)."""
    if len(psk_id.psk_nonce) != cs.hash_len:
        raise ProposalValidationError(
            f"{where}: psk_nonce is {len(psk_id.psk_nonce)} bytes, not Nh={cs.hash_len}")
    if psk_id.psktype == PSKType.RESUMPTION and (
            psk_id.usage not in (ResumptionPSKUsage.APPLICATION, linked_usage)):
        raise ProposalValidationError(
            f"{where}: resumption PSK with usage {psk_id.usage.name.lower()} "
            f"outside reinitialization/branching")


def check_psk_proposals(cs: CipherSuite, proposals: Sequence[SenderProposal],
                        linked_usage: ResumptionPSKUsage | None = None) -> None:
    """PreSharedKey rules (RFC 9420 §12.1.4, §12.2): each id per :func:`check_psk_id`,
    at most one of usage ``linked_usage``, and no PreSharedKeyID appears twice."""
    seen: set[PreSharedKeyID] = set()
    linked = 0
    for position, sp in enumerate(proposals):
        if not isinstance(sp.proposal, PreSharedKey):
            continue
        where = _where(position, sp.proposal)
        psk_id = sp.proposal.psk
        check_psk_id(cs, psk_id, where, linked_usage)
        if psk_id.psktype == PSKType.RESUMPTION and (
                psk_id.usage != ResumptionPSKUsage.APPLICATION):
            linked += 1
            if linked > 1:
                raise ProposalValidationError(f"{where}: more than one reinit/branch PSK")
        if psk_id in seen:
            raise ProposalValidationError(f"{where}: PreSharedKeyID appears twice")
        seen.add(psk_id)


def check_extension_list(extensions: tuple[Extension, ...], where: str,
                         credential_validator: CredentialValidator | None) -> None:
    """GroupContext extensions proposed by GroupContextExtensions or ReInit are well
    formed (RFC 9420 §11.1, §12.1.7, §13.4): each type once, a parsable
    required_capabilities, external_senders whose credentials the AS accepts."""
    check_unique_extension_types(extensions, where, ProposalValidationError)
    try:
        required_capabilities(extensions)
    except ValidationError as exc:
        raise ProposalValidationError(f"{where}: {exc}") from exc
    validate_external_senders(extensions, credential_validator, ProposalValidationError)


def check_reinit(proposal: ReInit, group_context: GroupContext, where: str,
                 credential_validator: CredentialValidator | None) -> None:
    """A ReInit is well formed (RFC 9420 §12.1.5): not to an older version, to a
    cipher suite we implement, with valid extensions for the new group."""
    if proposal.version < group_context.version:
        raise ProposalValidationError(f"{where}: ReInit to older version {proposal.version}")
    if proposal.version != ProtocolVersion.MLS10:
        raise ProposalValidationError(f"{where}: ReInit to unsupported version "
                                      f"{proposal.version}")
    try:
        suite(proposal.cipher_suite)
    except UnsupportedError as exc:
        raise ProposalValidationError(f"{where}: {exc}") from exc
    check_extension_list(proposal.extensions, where, credential_validator)


def _removable_leaf(tree: RatchetTree, where: str, removed: int) -> LeafIndex:
    if not 0 <= removed < tree.n_leaves or tree.leaf(LeafIndex(removed)) is None:
        raise ProposalValidationError(f"{where}: removes blank or absent leaf {removed}")
    return LeafIndex(removed)


def validate_proposal_list(cs: CipherSuite, proposals: Sequence[SenderProposal], *,
                           committer: Sender, tree: RatchetTree,
                           group_context: GroupContext, now: int | None,
                           credential_validator: CredentialValidator | None = None,
                           is_external_commit: bool = False,
                           linked_usage: ResumptionPSKUsage | None = None) -> None:
    """Validate the proposals a Commit covers (RFC 9420 §12.2, §12.4.3.2).

    ``committer`` is the Commit's sender (member, or new_member_commit for an
    external Commit); ``tree`` and ``group_context`` are those of the current epoch.
    For a resync external Commit, the caller also validates the path's LeafNode as an
    Update of the removed leaf: ``validate_leaf_node(..., tree=<tree before the
    proposals>, leaf_index=<joiner's leaf>, replacing=<removed leaf>)``.
    ``linked_usage`` admits one resumption PSK of usage reinit or branch: only for
    the first Commit of a group created by reinitialization or branching (§11.2).
    ``now`` judges the lifetimes of the added KeyPackages: the committer gives it
    (§7.3: a sender MUST check), a receiver of the Commit passes ``None`` (see
    :func:`mls.tree.validation.check_leaf_node`).
    """
    if is_external_commit:
        if committer.sender_type != SenderType.NEW_MEMBER_COMMIT:
            raise UsageError("an external commit's sender is new_member_commit")
        _validate_external_commit_list(cs, proposals, committer, tree)
        return
    if committer.sender_type != SenderType.MEMBER:
        raise UsageError("a regular commit's sender is a member")
    _MemberCommitCheck(cs, proposals, committer, tree, group_context, now,
                       credential_validator, linked_usage).run()


def _validate_external_commit_list(cs: CipherSuite, proposals: Sequence[SenderProposal],
                                   committer: Sender, tree: RatchetTree) -> None:
    """RFC 9420 §12.4.3.2 / §12.2: exactly one ExternalInit, at most one Remove (of a
    non-blank leaf), any number of PreSharedKey, nothing else, all by value."""
    external_inits = 0
    removes = 0
    for position, sp in enumerate(proposals):
        where = _where(position, sp.proposal)
        if sp.ref is not None:
            raise ProposalValidationError(f"{where}: external commit covers a proposal "
                                          f"by reference")
        if sp.sender != committer:
            raise ProposalValidationError(f"{where}: not sent by the external committer")
        if isinstance(sp.proposal, ExternalInit):
            external_inits += 1
        elif isinstance(sp.proposal, Remove):
            removes += 1
            if removes > 1:
                raise ProposalValidationError(f"{where}: external commit with more than "
                                              f"one Remove")
            _removable_leaf(tree, where, sp.proposal.removed)
        elif not isinstance(sp.proposal, PreSharedKey):
            raise ProposalValidationError(f"{where}: not allowed in an external commit")
    if external_inits != 1:
        raise ProposalValidationError(
            f"external commit has {external_inits} ExternalInit proposals, not exactly one")
    check_psk_proposals(cs, proposals)


class _MemberCommitCheck:
    """The rules of RFC 9420 §12.2 for a Commit by a member."""

    def __init__(self, cs: CipherSuite, proposals: Sequence[SenderProposal],
                 committer: Sender, tree: RatchetTree, group_context: GroupContext,
                 now: int | None, credential_validator: CredentialValidator | None,
                 linked_usage: ResumptionPSKUsage | None = None) -> None:
        self.cs = cs
        self.linked_usage = linked_usage
        self.proposals = proposals
        self.committer = committer
        self.committer_leaf = LeafIndex(committer.leaf_index)
        self.tree = tree
        self.group_context = group_context
        self.now = now
        self.validator = credential_validator
        self.context = group_context  # with the new extensions once a GCE is seen
        self.removed: dict[LeafIndex, int] = {}
        self.updated: dict[LeafIndex, LeafNode] = {}
        self.added: list[LeafNode] = []
        self.new_hpke_keys: set[bytes] = set()
        self.new_signature_keys: set[bytes] = set()
        self.blanked_parents: set[NodeIndex] = set()

    def run(self) -> None:
        for position, sp in enumerate(self.proposals):
            self._check_sender(position, sp)
        self._check_singletons()
        requirements = group_requirements(self.context.extensions)
        for position, sp in enumerate(self.proposals):
            if isinstance(sp.proposal, Remove):
                self._check_remove(position, sp.proposal)
        for position, sp in enumerate(self.proposals):
            if isinstance(sp.proposal, Update):
                self._check_update(position, sp, sp.proposal, requirements)
        for leaf_index in (*self.removed, *self.updated):
            self.blanked_parents.update(self.tree.direct_path_of_leaf(leaf_index))
        for position, sp in enumerate(self.proposals):
            if isinstance(sp.proposal, Add):
                self._check_add(position, sp.proposal)
        check_psk_proposals(self.cs, self.proposals, self.linked_usage)
        self._check_proposal_type_support()
        if self.context is not self.group_context:
            self._check_members_meet(requirements)
        if self.added or self.updated:
            self._check_credential_types()

    # -- senders and list shape ----------------------------------------------------------

    def _check_sender(self, position: int, sp: SenderProposal) -> None:
        where = _where(position, sp.proposal)
        sender = sp.sender
        if sp.ref is None and sender != self.committer:
            raise ProposalValidationError(f"{where}: by value but not from the committer")
        if sender.sender_type == SenderType.MEMBER:
            if not 0 <= sender.leaf_index < self.tree.n_leaves or (
                    self.tree.leaf(LeafIndex(sender.leaf_index)) is None):
                raise ProposalValidationError(
                    f"{where}: sender leaf {sender.leaf_index} is not a member")
        elif sender.sender_type == SenderType.EXTERNAL:
            if sp.proposal.proposal_type not in EXTERNAL_SENDER_PROPOSAL_TYPES:
                raise ProposalValidationError(f"{where}: not allowed from an external sender")
            try:
                count = len(external_senders(self.group_context.extensions))
            except ValidationError as exc:
                raise ProposalValidationError(f"{where}: {exc}") from exc
            if not 0 <= sender.sender_index < count:
                raise ProposalValidationError(
                    f"{where}: unknown external sender {sender.sender_index}")
        elif sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL:
            if not isinstance(sp.proposal, Add):
                raise ProposalValidationError(f"{where}: a new_member_proposal sender may "
                                              f"only propose an Add")
        else:
            raise ProposalValidationError(f"{where}: invalid proposal sender type "
                                          f"{sender.sender_type.name.lower()}")

    def _check_singletons(self) -> None:
        """ExternalInit never; ReInit alone; at most one GroupContextExtensions."""
        gce_seen = False
        for position, sp in enumerate(self.proposals):
            proposal = sp.proposal
            where = _where(position, proposal)
            if isinstance(proposal, ExternalInit):
                raise ProposalValidationError(f"{where}: ExternalInit in a regular commit")
            if isinstance(proposal, ReInit):
                if len(self.proposals) != 1:
                    raise ProposalValidationError(
                        f"{where}: ReInit must be the only proposal in a commit")
                check_reinit(proposal, self.group_context, where, self.validator)
            if isinstance(proposal, GroupContextExtensions):
                if gce_seen:
                    raise ProposalValidationError(
                        f"{where}: more than one GroupContextExtensions proposal")
                gce_seen = True
                self._check_gce(where, proposal)

    def _check_gce(self, where: str, proposal: GroupContextExtensions) -> None:
        check_extension_list(proposal.extensions, where, self.validator)
        self.context = dataclasses.replace(self.group_context,
                                           extensions=proposal.extensions)

    # -- Remove, Update, Add ---------------------------------------------------------------

    def _check_remove(self, position: int, proposal: Remove) -> None:
        where = _where(position, proposal)
        leaf_index = _removable_leaf(self.tree, where, proposal.removed)
        if leaf_index == self.committer_leaf:
            raise ProposalValidationError(f"{where}: the committer removes itself")
        if leaf_index in self.removed:
            raise ProposalValidationError(f"{where}: leaf {leaf_index} is removed twice "
                                          f"(also by proposal {self.removed[leaf_index]})")
        self.removed[leaf_index] = position

    def _check_update(self, position: int, sp: SenderProposal, proposal: Update,
                      requirements: LeafRequirements) -> None:
        where = _where(position, proposal)
        if sp.sender.sender_type != SenderType.MEMBER:
            raise ProposalValidationError(f"{where}: Update from a non-member")
        leaf_index = LeafIndex(sp.sender.leaf_index)
        if leaf_index == self.committer_leaf:
            raise ProposalValidationError(f"{where}: Update generated by the committer")
        if leaf_index in self.removed or leaf_index in self.updated:
            raise ProposalValidationError(
                f"{where}: leaf {leaf_index} has several Update/Remove proposals")
        leaf = proposal.leaf_node
        self._check_new_leaf(where, leaf, requirements, leaf_index)
        old = self.tree.leaf(leaf_index)
        assert old is not None  # the sender check saw a member
        if leaf.encryption_key == old.encryption_key:
            raise ProposalValidationError(f"{where}: encryption_key is not changed")
        try:
            check_successor(self.validator, old.credential, leaf.credential)
        except ValidationError as exc:
            raise ProposalValidationError(f"{where}: credential may not replace the "
                                          f"old one: {exc}") from exc
        self.updated[leaf_index] = leaf
        self._claim_keys(where, leaf, (), own=leaf_index)

    def _check_new_leaf(self, where: str, leaf: LeafNode, requirements: LeafRequirements,
                        leaf_index: LeafIndex) -> None:
        try:
            check_leaf_alone(self.cs, leaf, requirements=requirements,
                             group_id=self.group_context.group_id, leaf_index=leaf_index,
                             expected_source=LeafNodeSource.UPDATE, now=self.now,
                             credential_validator=self.validator,
                             error_class=ProposalValidationError)
        except SignatureError as exc:
            raise SignatureError(f"{where}: {exc}") from exc
        except ProposalValidationError as exc:
            raise ProposalValidationError(f"{where}: {exc}") from exc

    def _check_add(self, position: int, proposal: Add) -> None:
        where = _where(position, proposal)
        key_package = proposal.key_package
        try:
            validate_key_package(self.cs, key_package, now=self.now,
                                 group_context=self.context,
                                 credential_validator=self.validator,
                                 error_class=ProposalValidationError)
        except SignatureError as exc:
            raise SignatureError(f"{where}: {exc}") from exc
        except ProposalValidationError as exc:
            raise ProposalValidationError(f"{where}: {exc}") from exc
        self.added.append(key_package.leaf_node)
        self._claim_keys(where, key_package.leaf_node, (key_package.init_key,), own=None)

    # -- key uniqueness ------------------------------------------------------------------

    def _claim_keys(self, where: str, leaf: LeafNode, extra_hpke_keys: tuple[bytes, ...],
                    own: LeafIndex | None) -> None:
        """The new leaf's keys (and an Add's init key) collide neither with another
        new leaf nor with a key that stays in the tree (§7.3, §12.2)."""
        for key in (leaf.encryption_key, *extra_hpke_keys):
            if key in self.new_hpke_keys:
                raise ProposalValidationError(
                    f"{where}: HPKE key duplicates one in another proposal")
            if self._hpke_key_stays(key):
                raise ProposalValidationError(f"{where}: HPKE key already used in the group")
            self.new_hpke_keys.add(key)
        signature_key = leaf.signature_key
        if signature_key in self.new_signature_keys:
            raise ProposalValidationError(
                f"{where}: signature key duplicates one in another proposal")
        holder = self.tree.find_leaf_by_signature_key(signature_key)
        if holder is not None and holder != own and holder not in self.removed and not (
                holder in self.updated
                and self.updated[holder].signature_key != signature_key):
            raise ProposalValidationError(
                f"{where}: signature key already used by member leaf {holder}")
        self.new_signature_keys.add(signature_key)

    def _hpke_key_stays(self, key: bytes) -> bool:
        """Whether ``key`` is held by a node the proposals do not blank or replace."""
        node = self.tree.find_node_by_encryption_key(key)
        if node is None:
            return False
        if node & 1 == 0:
            leaf_index = LeafIndex(node >> 1)
            return leaf_index not in self.removed and leaf_index not in self.updated
        return node not in self.blanked_parents

    # -- whole-membership checks -------------------------------------------------------

    def _staying_members(self) -> list[tuple[LeafIndex, LeafNode]]:
        return [(index, leaf) for index, leaf in self.tree.member_leaves()
                if index not in self.removed]

    def _check_proposal_type_support(self) -> None:
        """Non-default proposal types are supported by every member that stays
        (added and removed members need not, §12.2)."""
        for position, sp in enumerate(self.proposals):
            proposal_type = int(sp.proposal.proposal_type)
            if proposal_type in DEFAULT_PROPOSAL_TYPES:
                continue
            for index, leaf in self._staying_members():
                if proposal_type not in leaf.capabilities.proposals:
                    raise ProposalValidationError(
                        f"{_where(position, sp.proposal)}: not supported by leaf {index}")

    def _check_members_meet(self, requirements: LeafRequirements) -> None:
        """After a GroupContextExtensions, every member that stays supports the new
        extensions and required capabilities (§11.1, §12.1.7, §13.4), by the same
        rule as a new leaf (:meth:`LeafRequirements.missing`).  Updated and added
        leaves were checked against the new requirements already."""
        for index, leaf in self._staying_members():
            if index in self.updated:
                continue
            missing = requirements.missing(leaf.capabilities)
            if missing:
                raise ProposalValidationError(
                    f"GroupContextExtensions: leaf {index} does not support "
                    f"{', '.join(missing)}")

    def _credential_tallies_fit(self) -> bool:
        return _credential_tallies_fit_after(self.tree, self.removed, self.updated,
                                             self.added)

    def _check_credential_types(self) -> None:
        """In the resulting group every member supports every credential type in use
        (§7.3, §12.2: the ratchet tree after the Commit must be valid)."""
        if self._credential_tallies_fit():
            return
        final: list[tuple[str, LeafNode]] = []  # find the offending member
        for index, leaf in self._staying_members():
            final.append((f"leaf {index}", self.updated.get(index, leaf)))
        final.extend((f"added member {n}", leaf) for n, leaf in enumerate(self.added))
        in_use = {leaf.credential.credential_type for _, leaf in final}
        for name, leaf in final:
            missing = in_use.difference(leaf.capabilities.credentials)
            if missing:
                raise ProposalValidationError(
                    f"{name} does not support credential types {sorted(map(int, missing))} "
                    f"in use in the group")


def _tally_leaf(used: dict[int, int], support: dict[int, int], leaf: LeafNode,
                delta: int) -> None:
    used[leaf.credential.credential_type] = used.get(leaf.credential.credential_type,
                                                     0) + delta
    for kind in set(leaf.capabilities.credentials):
        support[kind] = support.get(kind, 0) + delta


def _credential_tallies_fit_after(tree: RatchetTree, removed: Iterable[LeafIndex],
                                  updated: Mapping[LeafIndex, LeafNode],
                                  added: Iterable[LeafNode]) -> bool:
    """Whether, after the proposals, every member supports every credential type in
    use -- from the tree's tallies, in O(changed leaves)."""
    used = dict(tree.credential_types_used())
    support = dict(tree.credential_types_supported())
    members = tree.member_count()
    for index in removed:
        old = tree.leaf(index)
        if old is not None:
            _tally_leaf(used, support, old, -1)
            members -= 1
    for index, leaf in updated.items():
        old = tree.leaf(index)
        if old is not None:
            _tally_leaf(used, support, old, -1)
            _tally_leaf(used, support, leaf, 1)
    for leaf in added:
        _tally_leaf(used, support, leaf, 1)
        members += 1
    return all(support.get(kind, 0) == members for kind, count in used.items() if count)


def apply_proposals(cs: CipherSuite, proposals: Sequence[SenderProposal], *,
                    tree: RatchetTree, group_context: GroupContext) -> ProposalOutcome:
    """Apply a validated proposal list to a copy of ``tree`` (RFC 9420 §12.3).

    Order: GroupContextExtensions, Updates (replace the sender's leaf, blank its
    direct path), Removes (blank leaf and direct path, truncate), Adds in list order
    (leftmost blank leaf, extending the tree when full, recording the new leaf as
    unmerged at its non-blank ancestors), then PreSharedKey ids in list order,
    ExternalInit and ReInit.  ``tree`` is left untouched; the outcome's tree is
    ``tree`` itself when no proposal changes it (callers copy before changing).
    """
    changes_tree = any(isinstance(sp.proposal, (Update, Remove, Add)) for sp in proposals)
    # Trees are never changed in place once shared, so a list without Update, Remove
    # or Add keeps the tree itself (an empty Commit would otherwise copy it for nothing).
    new_tree = tree.copy() if changes_tree else tree
    extensions = group_context.extensions
    for sp in proposals:
        if isinstance(sp.proposal, GroupContextExtensions):
            extensions = sp.proposal.extensions
    try:
        for sp in proposals:
            if isinstance(sp.proposal, Update):
                if sp.sender.sender_type != SenderType.MEMBER:
                    raise ProposalValidationError("Update from a non-member")
                new_tree.update_leaf(LeafIndex(sp.sender.leaf_index), sp.proposal.leaf_node)
        removed = tuple(LeafIndex(sp.proposal.removed) for sp in proposals
                        if isinstance(sp.proposal, Remove))
        for leaf_index in removed:
            new_tree.remove_leaf(leaf_index)
    except UsageError as exc:
        raise ProposalValidationError(f"cannot apply proposals: {exc}") from exc
    added_key_packages = tuple(sp.proposal.key_package for sp in proposals
                               if isinstance(sp.proposal, Add))
    added = tuple(new_tree.add_leaves([kp.leaf_node for kp in added_key_packages]))
    psk_ids = tuple(sp.proposal.psk for sp in proposals if isinstance(sp.proposal, PreSharedKey))
    external_init = next((sp.proposal for sp in proposals
                          if isinstance(sp.proposal, ExternalInit)), None)
    reinit = next((sp.proposal for sp in proposals if isinstance(sp.proposal, ReInit)), None)
    return ProposalOutcome(new_tree, extensions, added, added_key_packages, removed,
                           psk_ids, reinit, external_init)
