"""One hub process on a PostgreSQL database, for tests/bridge/test_postgres_hubs.py.

Usage: ``python -m tests.bridge.hub_worker DSN HUB_KEY_HEX CA_KEY_HEX CA_CERT_HEX``
(every worker shares the hub's identity: its signing key and its CA). Reads one JSON request
per line on stdin (``{"id": n, "request": Inbound}``), handles requests concurrently
and writes ``{"id": n, "reply": Outbound}`` lines. Deliveries are dropped: members
catch up from the log and fetch their Welcomes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from bridge.credentials import CertificateAuthority
from bridge.hub import Hub, HubIdentity
from bridge.hub.store import PostgresStore
from tests.bridge.conftest import clock
from tests.bridge.wire_json import inbound_from_json, to_json
from transports.errors import LinkError
from transports.interface import Outbound


class NoConnections:
    """No member is connected to a worker: deliveries fail (Welcomes stay pending)."""

    async def deliver(self, message: Outbound) -> None:
        raise LinkError("no member is connected to this worker")


async def main(dsn: str, key_hex: str, ca_key_hex: str, ca_cert_hex: str) -> None:
    logging.disable(logging.WARNING)
    store = await PostgresStore.open(dsn, min_size=1, max_size=4)
    ca = CertificateAuthority(bytes.fromhex(ca_key_hex), bytes.fromhex(ca_cert_hex))
    hub = Hub(store, HubIdentity("hub.example.org", {1: bytes.fromhex(key_hex)}, ca),
              NoConnections(), clock=clock)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def serve(line: bytes) -> None:
        message = json.loads(line)
        reply = await hub.handle(inbound_from_json(message["request"]))
        sys.stdout.write(json.dumps({"id": message["id"], "reply": to_json(reply)}) + "\n")
        sys.stdout.flush()

    print("ready", flush=True)
    try:
        while line := await reader.readline():
            task = loop.create_task(serve(line))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
