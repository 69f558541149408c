"""Room events sent as they are, never Megolm-encrypted: nio's ``room_send`` encrypts
whatever it sends into a room it knows as encrypted, and MLS events never are. Used by
the hub's bot (its deliveries) and the member side (its posted sends)."""

from __future__ import annotations

from typing import Any

import nio


async def send_plain(client: nio.AsyncClient, room_id: str, event_type: str,
                     content: dict[str, Any], txn: str) -> Any:
    """One ``PUT /rooms/{room_id}/send/{event_type}/{txn}``: a
    :class:`nio.RoomSendResponse`, or nio's error response."""
    method, path, data = nio.Api.room_send(client.access_token, room_id, event_type,
                                           content, txn)
    return await client._send(nio.RoomSendResponse, method, path, data, (room_id,))


__all__ = ["send_plain"]
