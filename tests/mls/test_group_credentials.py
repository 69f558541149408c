"""The credential validator (RFC 9420 §5.3): :mod:`mls.group.credentials`."""

from __future__ import annotations

import pytest

from mls.errors import ValidationError
from mls.group.credentials import BasicCredentialValidator
from mls.messages.credentials import Credential


def test_basic_validator_accepts_basic_and_nonempty_x509() -> None:
    validator = BasicCredentialValidator()
    validator.validate(Credential.basic(b"alice"), b"key")
    validator.validate(Credential.x509((b"cert",)), b"key")


@pytest.mark.parametrize(("credential", "message"), [
    (Credential.x509(()), "empty certificate chain"),
    (Credential.x509((b"cert", b"")), "empty certificate"),
    (Credential(0x0F0F), "not supported"),
])
def test_basic_validator_rejects(credential: Credential, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BasicCredentialValidator().validate(credential, b"key")


def test_basic_validator_successor_keeps_identity() -> None:
    validator = BasicCredentialValidator()
    validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"a"))
    with pytest.raises(ValidationError, match="different identity"):
        validator.validate_successor(Credential.basic(b"a"), Credential.basic(b"b"))
