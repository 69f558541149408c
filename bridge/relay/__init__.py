"""Relay mode: the bridge speaks MLS for people who do not run an MLS client (see
:mod:`bridge.relay.relay`)."""

from __future__ import annotations

from bridge.relay.relay import NOTICE, Relay

__all__ = ["NOTICE", "Relay"]
