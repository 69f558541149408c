"""Membership events: what a member tells its owner about every change of a group's
membership -- who, by whom, how (RFC 9420 §12.4.2: a Commit applies its proposals; §6:
each proposal's sender, a member or an external sender, is authenticated).

Kinds (:class:`EventKind`): ``added`` (the subject by the proposer of its Add; our own
Welcome too), ``joined`` (by external commit; ``resync`` when it replaced the joiner's
own old leaf), ``removed`` (by the proposer of the Remove: a member, or the hub),
``left`` (removed by the hub because the subject left the room), ``updated`` (a leaf's
keys or credential replaced, by an Update or the committer's path) and
``removed_self`` (we were removed). Each carries the epoch it created and the log seq
of its commit.

The hub's Remove proposals say why in their signed ``authenticated_data`` (RFC 9420
§6.1; :class:`bridge.reasons.Removal`: leave, kick or fault, by whom, in which room);
data that is not such a reason is shown as no reason, never an error.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bridge.credentials import CredentialMode
from bridge.reasons import LEAVE, Removal
from mls.codec import decode
from mls.enums import CredentialType, SenderType
from mls.errors import DecodeError
from mls.group.events import CommitEvent
from mls.group.group import Group
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage, PublicMessage, Sender
from mls.messages.proposals import Add, Commit, Proposal, Remove, Update
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree

#: The actor of a change the hub proposed (the group's external sender).
HUB_ACTOR = "hub"


class EventKind(enum.StrEnum):
    ADDED = "added"
    JOINED = "joined"
    REMOVED = "removed"
    LEFT = "left"
    UPDATED = "updated"
    REMOVED_SELF = "removed_self"


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """One membership change of a group (see the module docstring). ``actor`` is the
    member who proposed it, or :data:`HUB_ACTOR`; for the hub's Removes ``reason``,
    ``initiator`` (who kicked, on the network) and ``room`` come from its proposal."""

    group_id: bytes
    kind: EventKind
    subject: str
    actor: str
    epoch: int
    seq: int
    reason: str = ""
    initiator: str = ""
    room: str = ""
    resync: bool = False

    def describe(self) -> str:
        """One line for people: ``bob was added by alice``."""
        how = {EventKind.ADDED: "was added by", EventKind.REMOVED: "was removed by",
               EventKind.LEFT: "left (removed by", EventKind.UPDATED: "updated, by",
               EventKind.REMOVED_SELF: "(we) were removed by"}
        if self.kind is EventKind.JOINED:
            line = f"{self.subject} joined by external commit"
            return line + (" (resync of its own leaf)" if self.resync else "")
        line = f"{self.subject} {how[self.kind]} {self.actor}"
        if self.reason:
            line += f" because of {_REASONS.get(self.reason, 'a ' + self.reason)}"
            if self.initiator and self.initiator != self.subject:
                line += f" by {self.initiator}"
            if self.room:
                line += f" in {self.room}"
        return line + (")" if self.kind is EventKind.LEFT else "")


#: How a hub Remove's reason (:mod:`bridge.reasons`) reads in a sentence.
_REASONS = {"leave": "a leave", "kick": "a kick", "fault": "a fault",
            "replaced": "the user's own MLS client (relay puppet replaced)"}


#: Called with each membership event, in log order.
MembershipHook = Callable[[MembershipEvent], None]
#: The identity a credential names (verified: :meth:`MemberIdentity.identity_of`).
Identify = Callable[[Credential], str]


# -- from a commit ---------------------------------------------------------------------------

def _identity(tree: RatchetTree, leaf: int, identify: Identify) -> str:
    node = tree.leaf(LeafIndex(leaf)) if 0 <= leaf < tree.n_leaves else None
    return identify(node.credential) if node is not None else f"leaf-{leaf}"


@dataclass(frozen=True, slots=True)
class _Proposed:
    proposal: Proposal
    sender: Sender
    authenticated_data: bytes


def _proposals(before: Group, message: MLSMessage | bytes) -> Iterator[_Proposed]:
    """The proposals a commit applied, each with its sender (RFC 9420 §12.4: by value
    from the committer, by reference from the epoch's pending store)."""
    try:
        body = (decode(MLSMessage, message) if isinstance(message, bytes) else message).body
    except DecodeError:
        return
    if not isinstance(body, PublicMessage) or not isinstance(body.content.content, Commit):
        return  # the hub orders PublicMessage commits only
    pending = {item.ref: item.authenticated.content for item in before.state.pending}
    for entry in body.content.content.proposals:
        if entry.proposal is not None:
            yield _Proposed(entry.proposal, body.content.sender,
                            body.content.authenticated_data)
        elif entry.reference is not None and entry.reference in pending:
            content = pending[entry.reference]
            proposal = content.content
            if isinstance(proposal, Add | Remove | Update):
                yield _Proposed(proposal, content.sender, content.authenticated_data)


def commit_events(before: Group, after: Group, event: CommitEvent,
                  message: MLSMessage | bytes, seq: int, identify: Identify
                  ) -> list[MembershipEvent]:
    """The membership events of a commit taking ``before`` to ``after``."""
    old, new = before.state.tree, after.state.tree

    def actor(sender: Sender) -> str:
        if sender.sender_type == SenderType.MEMBER:
            return _identity(old, sender.leaf_index, identify)
        if sender.sender_type == SenderType.EXTERNAL:
            return HUB_ACTOR
        return joiner

    joiner = _identity(new, event.added[-1], identify) if event.external and event.added \
        else ""
    made = []

    def emit(kind: EventKind, subject: str, by: str, reason: tuple[str, str, str] = ("", "", ""),
             resync: bool = False) -> None:
        made.append(MembershipEvent(before.group_id, kind, subject, by, event.epoch, seq,
                                    *reason, resync=resync))

    resync = False
    for item in _proposals(before, message):
        proposal = item.proposal
        if isinstance(proposal, Add):
            emit(EventKind.ADDED, identify(proposal.key_package.leaf_node.credential),
                 actor(item.sender))
        elif isinstance(proposal, Remove):
            subject = _identity(old, proposal.removed, identify)
            if event.external and subject == joiner:
                resync = True
                continue
            external = item.sender.sender_type == SenderType.EXTERNAL
            removal = Removal.decode(item.authenticated_data) if external else None
            reason = ("", "", "") if removal is None else \
                (removal.reason, removal.by, removal.room)
            kind = EventKind.REMOVED_SELF if proposal.removed == before.own_leaf else \
                EventKind.LEFT if reason[0] == LEAVE else EventKind.REMOVED
            emit(kind, subject, actor(item.sender), reason)
    if event.external:
        emit(EventKind.JOINED, joiner, joiner, resync=resync)
    for leaf in dict.fromkeys(event.updated):
        subject = _identity(new, leaf, identify)
        emit(EventKind.UPDATED, subject, subject)
    return made


def welcome_event(group: Group, signer: int, seq: int, identify: Identify
                  ) -> MembershipEvent:
    """We were added: by ``signer``, the leaf that signed the Welcome's GroupInfo (the
    committer, RFC 9420 §12.4.3.1)."""
    tree = group.state.tree
    return MembershipEvent(group.group_id, EventKind.ADDED,
                           _identity(tree, group.own_leaf, identify),
                           _identity(tree, signer, identify), group.epoch, seq)


def joined_event(group: Group, seq: int, identify: Identify, *, resync: bool
                 ) -> MembershipEvent:
    """We joined by external commit (a resync if it replaced our old leaf)."""
    me = _identity(group.state.tree, group.own_leaf, identify)
    return MembershipEvent(group.group_id, EventKind.JOINED, me, me, group.epoch, seq,
                           resync=resync)


def group_mode(group: Group) -> CredentialMode:
    """How a group's identities are established: X.509 if every member's credential is
    an attested certificate, else basic ("identities vouched by the hub only")."""
    if all(leaf.credential.credential_type == CredentialType.X509
           for _, leaf in group.members()):
        return CredentialMode.X509
    return CredentialMode.BASIC
