"""Groups linked to an earlier group by a resumption PSK: reinitialization and
subgroup branching (RFC 9420 §8.6, §11.2, §11.3, §12.4.3.1).

The creator of the new group (:func:`commit_linked_group`) commits, in the new
group's epoch 0, an Add for every other member plus one PreSharedKey proposal of
type ``resumption`` with usage ``reinit`` (naming the retired group's last epoch,
the one after the Commit covering the ReInit) or ``branch`` (naming the current
epoch of the group branched from).  The Welcome then carries that PSK id.

A joiner (:func:`verify_linked_join`) checks what §12.4.3.1 asks: the new group is
at epoch 1; for ``reinit`` the old group's last Commit held a ReInit whose
group_id, version, cipher suite and extensions are the new group's, and every old
member is in the new group; for ``branch`` the version and cipher suite are the old
group's and every new member was in the old group.  Members "match" when their
credentials are equal (§11.3 leaves this to the application; equality is the
strict choice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mls.crypto.suite import Rng
from mls.enums import PSKType, ResumptionPSKUsage
from mls.errors import UsageError, ValidationError
from mls.group.commit import create_commit
from mls.group.credentials import CredentialValidator
from mls.group.psk import PskResolver, ResumptionLookup
from mls.group.state import GroupState
from mls.messages.credentials import Credential
from mls.messages.extensions import GroupContext
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from mls.messages.proposals import Add, PreSharedKey, Proposal
from mls.messages.psk import PreSharedKeyID
from mls.tree.ratchet_tree import RatchetTree

LINKED_USAGES = (ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH)


def resumption_lookup(groups: Mapping[bytes, GroupState]) -> ResumptionLookup:
    """``(group_id, epoch) -> resumption_psk`` from the retained PSKs of ``groups``
    (keyed by group id), RFC 9420 §8.6."""

    def lookup(group_id: bytes, epoch: int) -> bytes | None:
        state = groups.get(group_id)
        return None if state is None else state.resumption_psk(epoch)

    return lookup


def linked_psk_id(psk_ids: Sequence[PreSharedKeyID]) -> PreSharedKeyID | None:
    """The one resumption PSK of usage reinit or branch among ``psk_ids``, if any;
    more than one is invalid (RFC 9420 §12.4.3.1)."""
    linked = [psk_id for psk_id in psk_ids if psk_id.psktype == PSKType.RESUMPTION
              and psk_id.usage in LINKED_USAGES]
    if len(linked) > 1:
        raise ValidationError("Welcome names more than one reinit/branch resumption PSK")
    return linked[0] if linked else None


def _credentials(tree: RatchetTree) -> set[Credential]:
    return {leaf.credential for _, leaf in tree.member_leaves()}


def _tree_of_epoch(state: GroupState, epoch: int) -> RatchetTree:
    """The old group's tree in ``epoch`` if still held, else its current tree."""
    for past in state.past_epochs:
        if past.epoch == epoch:
            return past.tree
    return state.tree


# -- the creator ------------------------------------------------------------------------

def commit_linked_group(old: GroupState, new: GroupState, key_packages: Sequence[KeyPackage],
                        *, usage: ResumptionPSKUsage, rng: Rng, now: int | None,
                        credential_validator: CredentialValidator | None,
                        force_path: bool = False) -> tuple[GroupState, MLSMessage | None]:
    """The first Commit of ``new`` (a fresh one-member group at epoch 0) linking it
    to ``old`` by a ``usage`` resumption PSK (RFC 9420 §11.2 step 3, §11.3 step 2).
    Returns the new group's state at epoch 1 (merged: nobody else can commit in it
    yet) and the Welcome for the other members."""
    if new.epoch != 0 or new.tree.member_count() != 1:
        raise UsageError("a reinitialized or branched group starts from a new group")
    new_members = _credentials(new.tree) | {kp.leaf_node.credential for kp in key_packages}
    if usage == ResumptionPSKUsage.REINIT:
        if old.reinit is None:
            raise UsageError("the last commit of this group holds no ReInit")
        if not _credentials(old.tree) <= new_members:
            raise UsageError("a reinitialized group must keep every member of the old group")
    elif usage == ResumptionPSKUsage.BRANCH:
        if (new.context.version, new.cs.id) != (old.context.version, old.cs.id):
            raise UsageError("a branch keeps the version and cipher suite of its group")
        if not new_members <= _credentials(old.tree):
            raise UsageError("a branch's members must be members of its group")
    else:
        raise UsageError("a linked group uses a reinit or branch resumption PSK")
    psk_id = PreSharedKeyID(PSKType.RESUMPTION, rng(new.cs.hash_len), usage=usage,
                            psk_group_id=old.group_id, psk_epoch=old.epoch)
    proposals: list[Proposal] = [Add(key_package) for key_package in key_packages]
    proposals.append(PreSharedKey(psk_id))
    resolver = PskResolver(resumption=resumption_lookup({old.group_id: old}))
    staged = create_commit(new, rng=rng, proposals=proposals, force_path=force_path,
                           psk_resolver=resolver, now=now,
                           credential_validator=credential_validator, linked_usage=usage)
    return staged.state, staged.welcome


# -- the joiner -------------------------------------------------------------------------

def verify_linked_join(psk_id: PreSharedKeyID, context: GroupContext, tree: RatchetTree,
                       old_groups: Mapping[bytes, GroupState]) -> None:
    """The last checks of RFC 9420 §12.4.3.1 for a Welcome naming a reinit or branch
    PSK ``psk_id``; ``context`` and ``tree`` are the new group's."""
    kind = psk_id.usage.name.lower()
    if context.epoch != 1:
        raise ValidationError(f"a group started by {kind} must be joined at epoch 1, "
                              f"not {context.epoch}")
    old = old_groups.get(psk_id.psk_group_id)
    if old is None:
        raise ValidationError(f"the {kind} PSK names group {psk_id.psk_group_id.hex()}: "
                              f"pass it in resumption_groups to verify the new group")
    new_members = _credentials(tree)
    if psk_id.usage == ResumptionPSKUsage.REINIT:
        reinit = old.reinit
        if reinit is None or psk_id.psk_epoch != old.epoch:
            raise ValidationError("the reinit PSK does not name the epoch after a Commit "
                                  "covering a ReInit")
        for name, expected, actual in (
                ("group_id", reinit.group_id, context.group_id),
                ("version", reinit.version, context.version),
                ("cipher_suite", reinit.cipher_suite, context.cipher_suite),
                ("extensions", reinit.extensions, context.extensions)):
            if expected != actual:
                raise ValidationError(f"the new group's {name} differs from the ReInit")
        if not _credentials(old.tree) <= new_members:
            raise ValidationError("a member of the old group is missing from the "
                                  "reinitialized group")
        return
    if (context.version, context.cipher_suite) != (old.context.version, old.cs.id):
        raise ValidationError("a branch must keep the version and cipher suite of its group")
    if not new_members <= _credentials(_tree_of_epoch(old, psk_id.psk_epoch)):
        raise ValidationError("a member of the branch is not a member of the old group")
