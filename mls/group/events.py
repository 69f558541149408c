"""What processing a message tells the application (RFC 9420 §6, §12)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.enums import ContentType
from mls.messages.framing import Sender
from mls.messages.proposals import Proposal, ReInit
from mls.messages.psk import PreSharedKeyID
from mls.tree.math import LeafIndex


@dataclass(frozen=True, slots=True)
class ProposalEvent:
    """A proposal was received and stored for this epoch (RFC 9420 §12.1), with the
    ``authenticated_data`` its sender signed along with it (§6.1; an application may
    say there why it proposes, e.g. why a delivery service removes someone)."""

    ref: bytes
    proposal: Proposal
    sender: Sender
    authenticated_data: bytes = b""


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """A Commit was applied: the group is now in ``epoch`` (RFC 9420 §12.4.2).

    ``removed_self`` means the Commit removed us: the returned group is inactive.
    """

    epoch: int
    sender: Sender
    added: tuple[LeafIndex, ...] = ()
    removed: tuple[LeafIndex, ...] = ()
    updated: tuple[LeafIndex, ...] = ()
    psks: tuple[PreSharedKeyID, ...] = ()
    reinit: ReInit | None = None
    removed_self: bool = False
    external: bool = False


@dataclass(frozen=True, slots=True)
class ApplicationEvent:
    """Application data from a member (RFC 9420 §6.3); ``epoch`` is the epoch it
    was sent in (a retained past epoch for late messages)."""

    sender: LeafIndex
    data: bytes = field(repr=False)
    authenticated_data: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class OwnMessageEvent:
    """The delivery service echoed a message we sent ourselves (an application
    message or a proposal of ``epoch``): nothing changed.  ``ref`` is the
    ProposalRef for a proposal when it is known."""

    content_type: ContentType
    epoch: int
    ref: bytes | None = None


Event = ProposalEvent | CommitEvent | ApplicationEvent | OwnMessageEvent
