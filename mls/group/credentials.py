"""Credential validation hooks (RFC 9420 §5.3, §5.3.1).

MLS leaves the Authentication Service (AS) to the application: whenever a new
credential enters the group (KeyPackage, Add, Update, UpdatePath, GroupInfo, external
senders), it MUST be validated with the AS (§5.3.1).  The group layer calls a
:class:`CredentialValidator` at each of these points.  :class:`BasicCredentialValidator`
only checks structure; applications plug in real identity checks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mls.enums import CredentialType
from mls.errors import ValidationError
from mls.messages.credentials import Credential


class CredentialValidator(Protocol):
    """The application's Authentication Service (RFC 9420 §5.3.1)."""

    def validate(self, credential: Credential, signature_key: bytes) -> None:
        """Raise mls.errors.ValidationError if the credential is unacceptable."""


@runtime_checkable
class CredentialSuccessorValidator(Protocol):
    """Optional second hook: is ``new`` an acceptable successor of ``old``?

    RFC 9420 §5.3.1: when a member's credential is replaced (Update, UpdatePath, the
    Remove of an external "resync" commit, §12.2), the AS MUST verify that the new
    presented identifiers are valid as a successor to the old ones.  Validators that
    implement this method are asked; others are not.
    """

    def validate_successor(self, old: Credential, new: Credential) -> None:
        """Raise mls.errors.ValidationError if ``new`` may not replace ``old``."""


class BasicCredentialValidator:
    """Structural checks only (RFC 9420 §5.3): basic credentials are accepted as
    they are, x509 credentials need a non-empty chain of non-empty certificates, any
    other credential type is rejected.  A successor of a basic credential must present
    the same identity."""

    __slots__ = ()

    def validate(self, credential: Credential, signature_key: bytes) -> None:
        if credential.credential_type == CredentialType.BASIC:
            return
        if credential.credential_type == CredentialType.X509:
            if not credential.certificates:
                raise ValidationError("x509 credential has an empty certificate chain")
            if any(not cert for cert in credential.certificates):
                raise ValidationError("x509 credential contains an empty certificate")
            return
        raise ValidationError(
            f"credential type {credential.credential_type} is not supported")

    def validate_successor(self, old: Credential, new: Credential) -> None:
        if (old.credential_type == CredentialType.BASIC
                and new.credential_type == CredentialType.BASIC
                and old.identity != new.identity):
            raise ValidationError("new basic credential presents a different identity")


DEFAULT_CREDENTIAL_VALIDATOR = BasicCredentialValidator()


def check_credential(validator: CredentialValidator | None, credential: Credential,
                     signature_key: bytes) -> None:
    """Validate a credential with ``validator`` (the basic one when ``None``)."""
    (validator or DEFAULT_CREDENTIAL_VALIDATOR).validate(credential, signature_key)


def check_successor(validator: CredentialValidator | None, old: Credential,
                    new: Credential) -> None:
    """Ask the validator (if it implements the hook) whether ``new`` may replace
    ``old`` (RFC 9420 §5.3.1)."""
    chosen = validator or DEFAULT_CREDENTIAL_VALIDATOR
    if isinstance(chosen, CredentialSuccessorValidator):
        chosen.validate_successor(old, new)
