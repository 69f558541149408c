"""One hub worker process for tests/store/test_postgres_concurrency.py.

Usage: ``python -m tests.store.pg_race_worker DSN MODE NAME ARG``. It opens its own
asyncpg pool, prints ``ready``, waits for a line on stdin (so racing workers start
together) and then:

- ``commit``: tries ``accept_commit`` once for every expected epoch 0..ARG-1 in order;
- ``claim``: claims KeyPackages of user ``bob`` until none is left.

It prints one JSON line with what it won and lost. Any other error makes it exit non-zero.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from bridge.hub.store import KeyPackageUnavailable, PostgresStore, WrongEpoch

GROUP_ID = b"\x42" * 32


async def race_commits(store: PostgresStore, name: str, attempts: int) -> dict[str, object]:
    won: list[int] = []
    lost = 0
    jitter = random.Random(name)
    for epoch in range(attempts):
        # A little jitter (like a real client's retry backoff) lets either worker lead.
        await asyncio.sleep(jitter.uniform(0, 0.002))
        try:
            await store.accept_commit(
                GROUP_ID,
                epoch,
                f"{name}:{epoch}".encode(),
                hub_state=f"{name}:{epoch}".encode(),
                sender=name,
            )
        except WrongEpoch as exc:
            if exc.current_epoch <= epoch:
                raise AssertionError(f"epoch {epoch} lost to current {exc.current_epoch}") from exc
            lost += 1
        else:
            won.append(epoch)
    return {"won": won, "lost": lost}


async def claim_all(store: PostgresStore) -> dict[str, object]:
    claimed: list[str] = []
    while True:
        try:
            claimed.append((await store.claim_key_package("bob", 1, 0)).hex())
        except KeyPackageUnavailable:
            return {"claimed": claimed}


async def main(dsn: str, mode: str, name: str, count: int) -> None:
    store = await PostgresStore.open(dsn, min_size=1, max_size=2)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        result = await (race_commits(store, name, count) if mode == "commit" else claim_all(store))
    finally:
        await store.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
