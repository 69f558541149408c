"""A throw-away Prosody on 127.0.0.1 (moved to :mod:`bridge.devservers.prosody`, which
``mls-bridge demo`` uses too; re-exported here for the tests)."""

from bridge.devservers.prosody import (
    APT_PACKAGES,
    START_TIMEOUT,
    TEMPLATE,
    ProsodyServer,
    ensure_prosody_installed,
    write_self_signed_cert,
)

__all__ = ["APT_PACKAGES", "START_TIMEOUT", "TEMPLATE", "ProsodyServer",
           "ensure_prosody_installed", "write_self_signed_cert"]
