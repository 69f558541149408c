"""Room pairs bridged at run time (docs/SECURITY.md A5, A22), on SQLite and PostgreSQL
alike: stored, changed, refused when a room is in another pair, forgotten, and still
there when the store is opened again."""

from __future__ import annotations

import pytest

from bridge.hub.store import Conflict, Store, StoredPair
from tests.store.conftest import StoreFactory

X1, X2 = "one@mls.example", "two@mls.example"
M1, M2 = "!one:example.org", "!two:example.org"


async def test_room_pairs_persist(store_factory: StoreFactory) -> None:
    store: Store = await store_factory.open()
    assert await store.room_pairs() == []
    first = StoredPair(X1, M1, False, "xmpp:alice@example.org and matrix:u/bob:x", 100)
    await store.save_room_pair(first)
    await store.save_room_pair(StoredPair(X2, M2, True, "matrix:u/carol:x", 101))
    # relay mode changes in place
    relayed = StoredPair(X1, M1, True, "matrix:u/bob:x", 102)
    await store.save_room_pair(relayed)
    # a room already in another pair is refused, and nothing changes
    for clash in (StoredPair(X1, M2, False, "eve", 103), StoredPair("new@mls.example", M1,
                                                                    False, "eve", 103)):
        with pytest.raises(Conflict):
            await store.save_room_pair(clash)
    await store_factory.close_all()
    again = await store_factory.open()
    assert await again.room_pairs() == [relayed, StoredPair(X2, M2, True, "matrix:u/carol:x",
                                                            101)]
    assert await again.delete_room_pair(X2)
    assert not await again.delete_room_pair(X2)
    assert [pair.xmpp_room for pair in await again.room_pairs()] == [X1]
