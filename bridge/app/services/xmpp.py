"""The hub behind an XMPP component: Hub + store + :class:`MLSComponent` in one process.

    python -m bridge.app.services.xmpp --store sqlite:///hub.db --jid mls.example.org \\
        --secret SECRET --host 127.0.0.1 --port 5347 [--identity-file hub.key]

The hub's signing keys (which groups list as their external sender) are kept in
``--identity-file`` (mode 0600; default: the SQLite file's path + ``.hub-key``), never in
the store; they are created on first start. The component's occupant list is kept in
the store (a cursor), so a restarted process knows whom to fan out to and tells them to
catch up (``<sync/>``). Exit codes: 0 after SIGTERM/SIGINT, 2 when the server refuses
the component (wrong secret or name), 1 on other startup errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from bridge.app.services.identity import default_identity_file, load_identity
from bridge.app.shutdown import SERVICE_DRAIN
from bridge.app.signals import run_until_signalled
from bridge.hub import Hub, HubConfig
from bridge.hub.store import Store, open_store
from transports.fairness import RequestLimits
from transports.interface import Network
from transports.xmpp.component import ComponentConfig, MLSComponent
from transports.xmpp.errors import ComponentAuthError

log = logging.getLogger("bridge.app.services.xmpp")



class StoreState:
    """:class:`transports.xmpp.welcomes.StateStore` on the store's cursors."""

    def __init__(self, store: Store, prefix: str = "xmpp:") -> None:
        self._store = store
        self._prefix = prefix

    async def load(self, name: str) -> str | None:
        return await self._store.get_cursor(self._prefix + name)

    async def save(self, name: str, value: str) -> None:
        await self._store.set_cursor(self._prefix + name, value)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set; return the process exit code."""
    store = await open_store(args.store)
    try:
        identity_file = Path(args.identity_file) if args.identity_file \
            else default_identity_file(args.store)
        identity = load_identity(identity_file, args.hub_name or f"xmpp:{args.jid}")
        config = ComponentConfig(
            jid=args.jid, secret=args.secret, host=args.host, port=args.port,
            stanza_limit=args.stanza_limit, upload=not args.no_upload,
            admins=frozenset(args.admin or ()), leave_grace=args.leave_grace,
            limits=RequestLimits().with_payload(args.max_payload),
        )
        component = MLSComponent(config, state=StoreState(store), affiliations=store)
        hub = Hub(store, identity, component,
                  config=HubConfig(max_payload=args.max_payload),
                  directories={Network.XMPP: component})
        component.bind(hub)
        try:
            try:
                await component.start(timeout=args.connect_timeout)
            except ComponentAuthError as exc:
                log.error("%s", exc)
                print(f"error: {exc}", file=sys.stderr, flush=True)
                return 2
            print(f"ready {args.jid}", flush=True)
            await stop.wait()
            await hub.drain(asyncio.get_running_loop().time() + SERVICE_DRAIN)
        finally:  # nothing queued for delivery after the hub closes (the rest is in its
            # log); the stream closed and every task ended before the store closes
            await hub.close()
            await component.stop()
        return 0
    finally:
        await store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridge.app.services.xmpp",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    parser.add_argument("--jid", required=True, help="the component's JID (mls.example.org)")
    parser.add_argument("--secret", default=os.environ.get("MLS_BRIDGE_COMPONENT_SECRET"),
                        help="component secret (or $MLS_BRIDGE_COMPONENT_SECRET)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5347)
    parser.add_argument("--identity-file", default="")
    parser.add_argument("--hub-name", default="")
    parser.add_argument("--stanza-limit", type=int, default=256 * 1024)
    parser.add_argument("--max-payload", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--no-upload", action="store_true", help="never use XEP-0363")
    parser.add_argument("--admin", action="append",
                        help="service administrator (owner of every room), xmpp:user@domain")
    parser.add_argument("--leave-grace", type=float, default=60.0,
                        help="seconds before a dropped occupant is proposed for removal")
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or $MLS_BRIDGE_COMPONENT_SECRET) is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    return run_until_signalled(lambda stop: serve(args, stop))


if __name__ == "__main__":
    sys.exit(main())
