"""Room pairs and identity URIs as the bridge service sees them (the configuration
of ``[[bridge.rooms]]`` is validated in bridge/app/config.py: tests/cli/test_config.py)."""

from __future__ import annotations

from bridge.app.services.bridge import RoomPair, network_of


def test_room_pair_names_each_side() -> None:
    pair = RoomPair("ops@mls.example.org", "!def:example.org", True)
    assert pair.room("xmpp") == "ops@mls.example.org"
    assert pair.room("matrix") == "!def:example.org"


def test_network_of_identity_uris() -> None:
    assert network_of("xmpp:alice@example.org") == "xmpp"
    assert network_of("matrix:u/alice:example.org") == "matrix"
    assert network_of("mailto:alice@example.org") == ""
