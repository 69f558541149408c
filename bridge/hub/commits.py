"""What the hub verifies of a new group and of every commit, against its own state of
the group (SECURITY.md, "The hub verifies what it relays", rules A6, A9, A10; RFC 9750
§5.2; RFC 9420 §12.4.2, §12.4.3). The verification itself is ``mls``'s
:class:`~mls.PublicGroup`; these functions decide what the hub asks of it and turn its
errors into refusals (:func:`bridge.hub.public_view.rejection`).

A new group (``create-group``): its GroupInfo and tree pass a joiner's checks
(:meth:`PublicGroup.from_group_info`: signature, tree hash, the whole tree's
validity), it is at epoch 0 with one member, the requester, whose leaf signed it, and
it lists the hub in ``external_senders`` (so the hub can propose Removes).

A commit bundle (``submit-commit``: commit, GroupInfo, optional tree and Welcome):

1. the commit is for the hub's current epoch (else ``wrong-epoch``: catch up, retry);
2. the requester is the identity of the committing leaf -- the sender's leaf, checked
   before anything else, or for an external commit its new leaf;
3. :meth:`PublicGroup.process` against the hub's state: signature, proposals by value
   and by reference (the epoch's proposals the hub followed), the proposal-list rules,
   the path's leaf, parent hashes, tree hash, the new GroupContext and the confirmed
   transcript hash. The hub applies the commit to its own tree; a submitted tree is
   never taken, only compared;
4. the new epoch still lists the hub in ``external_senders``;
5. no member's leaf changes its identity (an Update or a path keeps the identity its
   credential names);
6. the submitted GroupInfo is the state the hub computed
   (:meth:`PublicGroup.check_group_info`: GroupContext bytes, confirmation tag,
   signed by the committer, a ``ratchet_tree`` extension holding the computed tree),
   and a ``ratchet_tree`` field, if sent, is the computed tree;
7. the Welcome names exactly the KeyPackages the commit added
   (:meth:`PublicCommit.check_welcome`) and goes to the identities they name.

What needs the group's secrets (membership tag, confirmation MAC, path secrets) is
the members' to check, and :mod:`bridge.hub.faults` bounds what a commit that fails
only there can cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import (
    Forbidden,
    InvalidCommit,
    InvalidGroup,
    Malformed,
    NotMember,
    WrongEpochRejection,
)
from bridge.hub import public_view
from bridge.identities import IdentityVerifier, identity_of
from mls import (
    CredentialValidator,
    GroupInfo,
    MessageHeader,
    MLSError,
    MLSMessage,
    PublicCommit,
    PublicGroup,
    SenderType,
    UsageError,
)


def check_new_group(message: MLSMessage, ratchet_tree: bytes, requester: str,
                    hub_key: bytes, *, now: int,
                    credential_validator: CredentialValidator | None,
                    verifier: IdentityVerifier | None) -> PublicGroup:
    """A group being registered (see the module docstring)."""
    info = message.body
    if not isinstance(info, GroupInfo):
        raise Malformed("the group_info field is not a GroupInfo")
    try:
        group = PublicGroup.from_group_info(message, ratchet_tree=ratchet_tree or None,
                                            now=now, credential_validator=credential_validator)
    except UsageError as exc:
        raise Malformed(f"GroupInfo: {exc}") from exc
    except MLSError as exc:
        raise public_view.rejection(exc, InvalidGroup, "GroupInfo", 0) from exc
    if group.epoch != 0:
        raise InvalidGroup("a new group must be at epoch 0")
    if public_view.leaf_identity(group, info.signer, verifier) != requester:
        raise Forbidden("the GroupInfo signer is not the requesting user")
    if [int(index) for index, _ in group.members()] != [info.signer]:
        raise InvalidGroup("a new group has one member: its creator")
    if public_view.sender_index(group, hub_key) is None:
        raise InvalidGroup("the group does not list the hub in external_senders")
    return group


@dataclass(frozen=True, slots=True)
class CheckedCommit:
    """A commit bundle that passed every check: the hub's state of the new epoch, what
    the commit changed, and who gets its Welcome."""

    group: PublicGroup
    commit: PublicCommit
    welcome_recipients: tuple[str, ...]

    @property
    def external(self) -> bool:
        return self.commit.external


@dataclass(frozen=True, slots=True)
class Bundle:
    """The parts of a submit-commit request (bytes as received)."""

    commit: MLSMessage
    header: MessageHeader
    group_info: bytes
    ratchet_tree: bytes
    welcome: bytes


def check_commit(group: PublicGroup, bundle: Bundle, requester: str, hub_key: bytes, *,
                 now: int, credential_validator: CredentialValidator | None,
                 verifier: IdentityVerifier | None) -> CheckedCommit:
    """Every check of a commit bundle, in the order of the module docstring."""
    header = bundle.header
    if header.epoch != group.epoch:
        raise WrongEpochRejection(group.epoch)
    sender = header.sender
    assert sender is not None  # a PublicMessage
    if sender.sender_type == SenderType.MEMBER:
        who = public_view.leaf_identity(group, sender.leaf_index, verifier)
        if who is None:
            raise NotMember(f"sender leaf {sender.leaf_index} is not a member of the group")
        if who != requester:
            raise NotMember(f"sender leaf {sender.leaf_index} belongs to another user")
    elif sender.sender_type != SenderType.NEW_MEMBER_COMMIT:
        raise Forbidden("only members and new members commit")
    try:
        new, commit = group.process(bundle.commit, now=now,
                                    credential_validator=credential_validator)
    except MLSError as exc:
        raise public_view.rejection(exc, InvalidCommit, "commit", group.epoch) from exc
    assert isinstance(commit, PublicCommit)  # the header said so
    if commit.external and public_view.leaf_identity(new, commit.committer,
                                                     verifier) != requester:
        raise Forbidden("the external commit's leaf names another user than the sender")
    if public_view.sender_index(new, hub_key) is None:
        raise InvalidCommit("the commit removes the hub from external_senders")
    for leaf in () if commit.external else commit.updated:
        if public_view.leaf_identity(group, leaf.leaf_index, verifier) != \
                identity_of(leaf.credential, verifier):
            raise Forbidden(f"leaf {leaf.leaf_index} may not change its identity")
    _check_group_info(new, commit, bundle)
    return CheckedCommit(new, commit, _welcome_recipients(commit, bundle.welcome, verifier))


def _check_group_info(new: PublicGroup, commit: PublicCommit, bundle: Bundle) -> None:
    """The submitted GroupInfo (and tree, if any) are the state the hub computed."""
    info = public_view.parse_message(bundle.group_info, "GroupInfo")
    try:
        new.check_group_info(info, signer=commit.committer)
    except UsageError as exc:
        raise Malformed(f"GroupInfo: {exc}") from exc
    except MLSError as exc:
        raise public_view.rejection(exc, InvalidCommit, "GroupInfo", new.epoch - 1) from exc
    if bundle.ratchet_tree and bundle.ratchet_tree != new.ratchet_tree():
        raise InvalidCommit("the submitted ratchet tree is not the one the commit produces")


def _welcome_recipients(commit: PublicCommit, welcome: bytes,
                        verifier: IdentityVerifier | None) -> tuple[str, ...]:
    message = public_view.parse_message(welcome, "Welcome") if welcome else None
    try:
        welcomed = commit.check_welcome(message)
    except UsageError as exc:
        raise Malformed(f"Welcome: {exc}") from exc
    except MLSError as exc:
        raise public_view.rejection(exc, InvalidCommit, "Welcome", commit.epoch - 1) from exc
    return tuple(sorted({identity_of(leaf.credential, verifier) for leaf in welcomed}))
