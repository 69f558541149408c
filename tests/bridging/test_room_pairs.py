"""The ``[[bridge.rooms]]`` list as room pairs: what is accepted, what is refused."""

from __future__ import annotations

import pytest

from bridge.services.bridge import BridgeConfigError, RoomPair, network_of, room_pairs


def test_room_pairs_from_config() -> None:
    pairs = room_pairs([{"xmpp": "Lobby@mls.example.org", "matrix": "!abc:example.org"},
                        {"xmpp": "ops@mls.example.org", "matrix": "!def:example.org",
                         "relay": True}])
    assert pairs == (RoomPair("lobby@mls.example.org", "!abc:example.org", False),
                     RoomPair("ops@mls.example.org", "!def:example.org", True))
    assert pairs[1].room("xmpp") == "ops@mls.example.org"
    assert pairs[1].room("matrix") == "!def:example.org"


@pytest.mark.parametrize("entry", [
    {"xmpp": "lobby", "matrix": "!abc:example.org"},  # not a room JID
    {"xmpp": "lobby@mls.example.org/nick", "matrix": "!abc:example.org"},  # full JID
    {"xmpp": "lobby@mls.example.org", "matrix": "#alias:example.org"},  # alias, not id
    {"xmpp": "lobby@mls.example.org", "matrix": "!abc:example.org", "relay": "yes"},
    {"xmpp": "lobby@mls.example.org", "matrix": "!abc:example.org", "mode": "relay"},
])
def test_bad_room_pairs_are_refused(entry: dict[str, object]) -> None:
    with pytest.raises(BridgeConfigError):
        room_pairs([entry])


def test_a_room_in_two_pairs_is_refused() -> None:
    with pytest.raises(BridgeConfigError, match="two pairs"):
        room_pairs([{"xmpp": "a@mls.example.org", "matrix": "!abc:example.org"},
                    {"xmpp": "b@mls.example.org", "matrix": "!abc:example.org"}])


def test_network_of_identity_uris() -> None:
    assert network_of("xmpp:alice@example.org") == "xmpp"
    assert network_of("matrix:u/alice:example.org") == "matrix"
    assert network_of("mailto:alice@example.org") == ""
