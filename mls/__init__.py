"""A pure-Python implementation of Messaging Layer Security, RFC 9420.

The package is synchronous and sans-I/O: no asyncio, no clock, no randomness of its
own.  Time and randomness are parameters of the operations that need them.

What a library user imports is here (``from mls import Group, ...``):

* groups: :class:`Group` (a member, §11-§12) with :class:`GroupConfig` and its
  :class:`StagedCommit`; :class:`PublicGroup` (a group followed without secrets, as
  a delivery service does) with :class:`PublicCommit` and :class:`MemberLeaf`, and
  :func:`message_header` (what a delivery service routes a message by);
* joining material: :class:`KeyPackageBundle`, :func:`create_key_package`,
  :func:`validate_key_package`, :class:`Credential`, the credential validators,
  :class:`PskResolver`;
* wire structs: :class:`MLSMessage`, :class:`KeyPackage`, :class:`Welcome`,
  :class:`GroupInfo`, :class:`GroupContext`, :class:`Extension`, the proposals,
  :class:`PreSharedKeyID`, :class:`ExternalSender`; :func:`encode` / :func:`decode`
  and :class:`Reader` / :class:`Writer` (the one codec);
* proposals from outside the group: :func:`external_sender_proposal`,
  :func:`new_member_proposal`;
* cipher suites: :func:`suite` / :class:`CipherSuite`, :data:`Rng`;
* events of :meth:`Group.process` and the one error tree (:class:`MLSError`).

The submodules stay importable for everything else (``mls.tree``, ``mls.schedule``,
...); this module imports only modules of the group layer and below, never
``mls.vectors``.
"""

from mls.codec import Reader, Writer, decode, encode
from mls.crypto.suite import CipherSuite, Rng, suite
from mls.enums import (
    CipherSuiteId,
    ContentType,
    CredentialType,
    ExtensionType,
    ProposalType,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
    WireFormat,
)
from mls.errors import (
    ConfirmationTagError,
    CryptoError,
    DecodeError,
    EpochError,
    GenerationError,
    MembershipTagError,
    MLSError,
    PathSecretError,
    ProposalValidationError,
    SignatureError,
    TreeValidationError,
    UnsupportedError,
    UsageError,
    ValidationError,
)
from mls.framing.refs import key_package_ref, proposal_ref
from mls.group.commit import StagedCommit
from mls.group.config import GroupConfig
from mls.group.credentials import BasicCredentialValidator, CredentialValidator
from mls.group.events import (
    ApplicationEvent,
    CommitEvent,
    Event,
    OwnMessageEvent,
    ProposalEvent,
)
from mls.group.external import external_sender_proposal, new_member_proposal
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle, create_key_package, validate_key_package
from mls.group.psk import PskResolver
from mls.group.public import (
    MemberLeaf,
    MessageHeader,
    PublicCommit,
    PublicGroup,
    message_header,
)
from mls.messages.credentials import Credential
from mls.messages.extension_types import (
    ExternalSender,
    decode_external_senders,
    encode_external_senders,
)
from mls.messages.extensions import Extension, GroupContext
from mls.messages.framing import MLSMessage, PrivateMessage, PublicMessage, Sender
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import Capabilities, LeafNode, Lifetime
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
from mls.messages.welcome import GroupInfo, Welcome
from mls.tree.math import LeafIndex
from mls.tree.ratchet_tree import RatchetTree

__all__ = [
    # groups
    "Group",
    "GroupConfig",
    "MemberLeaf",
    "MessageHeader",
    "PublicCommit",
    "PublicGroup",
    "StagedCommit",
    "message_header",
    # key packages, credentials, PSKs
    "BasicCredentialValidator",
    "Capabilities",
    "Credential",
    "CredentialValidator",
    "KeyPackageBundle",
    "LeafNode",
    "Lifetime",
    "PskResolver",
    "create_key_package",
    "validate_key_package",
    # wire structs and the codec
    "Add",
    "Extension",
    "ExternalInit",
    "ExternalSender",
    "GroupContext",
    "GroupContextExtensions",
    "GroupInfo",
    "KeyPackage",
    "LeafIndex",
    "MLSMessage",
    "PreSharedKey",
    "PreSharedKeyID",
    "PrivateMessage",
    "Proposal",
    "PublicMessage",
    "RatchetTree",
    "ReInit",
    "Reader",
    "Remove",
    "Sender",
    "Update",
    "Welcome",
    "Writer",
    "decode",
    "decode_external_senders",
    "encode",
    "encode_external_senders",
    "key_package_ref",
    "proposal_ref",
    # proposals from outside the group
    "external_sender_proposal",
    "new_member_proposal",
    # cipher suites and code points
    "CipherSuite",
    "CipherSuiteId",
    "ContentType",
    "CredentialType",
    "ExtensionType",
    "PSKType",
    "ProposalType",
    "ProtocolVersion",
    "ResumptionPSKUsage",
    "Rng",
    "SenderType",
    "WireFormat",
    "suite",
    # events
    "ApplicationEvent",
    "CommitEvent",
    "Event",
    "OwnMessageEvent",
    "ProposalEvent",
    # errors
    "ConfirmationTagError",
    "CryptoError",
    "DecodeError",
    "EpochError",
    "GenerationError",
    "MLSError",
    "MembershipTagError",
    "PathSecretError",
    "ProposalValidationError",
    "SignatureError",
    "TreeValidationError",
    "UnsupportedError",
    "UsageError",
    "ValidationError",
]
