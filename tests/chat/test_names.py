"""How the chat client names people: as they write their addresses, and a relay
puppet (bridge.identities, ``relay+``) with its mark, never as a member's own name."""

from __future__ import annotations

from bridge.chat.membership import short, user_uri


def test_members_read_as_their_addresses() -> None:
    assert short("xmpp:alice@example.org") == "alice@example.org"
    assert short("matrix:u/bob:example.org") == "@bob:example.org"
    assert user_uri(short("matrix:u/bob:example.org")) == "matrix:u/bob:example.org"


def test_relayed_users_are_marked() -> None:
    assert short("relay+xmpp:alice@example.org") == "alice@example.org (relayed)"
    assert short("relay+matrix:u/bob:example.org") == "@bob:example.org (relayed)"
    # the mark keeps a puppet apart from the member it would otherwise read as
    assert short("relay+xmpp:alice@example.org") != short("xmpp:alice@example.org")
