"""``mls-bridge chat`` / ``mls-chat``: a terminal chat client for one XMPP or one Matrix
account, end-to-end encrypted with MLS through the bridge.

    mls-bridge chat --xmpp alice@example.org [--hub mls.example.org]
    mls-bridge chat --matrix @alice:example.org --homeserver https://example.org
                    [--hub-user @mlsbridge:example.org]

The password comes from ``--password-file FILE``, else the environment variable named
by ``--password-env`` (default ``MLS_CHAT_PASSWORD``), else a prompt -- never from the
command line. The device's state (MLS groups, KeyPackages, signature key, read
positions, history) is one SQLite file, mode 0600, under the XDG data directory
(``$XDG_DATA_HOME/mls-bridge/chat/ACCOUNT.sqlite3``, or ``--store``); a restart resumes
every room. Another ``--store`` is another device (another MLS leaf) of the account.
Exit codes: 0 after /quit, 1 when the account cannot log in or the store cannot be
opened, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.chat.app import ChatApp
from bridge.chat.client import NETWORK_DEVICE, ChatClient
from bridge.chat.matrix_session import MatrixSession
from bridge.chat.session import Session, SessionError
from bridge.chat.xmpp_session import XmppSession
from bridge.errors import StoreError
from bridge.member import SqliteMemberStore
from bridge.member.sqlite_store import create_private

DEFAULT_PASSWORD_ENV = "MLS_CHAT_PASSWORD"


def data_home() -> Path:
    """``$XDG_DATA_HOME`` or ``~/.local/share`` (XDG Base Directory specification)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if value and Path(value).is_absolute() else \
        Path.home() / ".local" / "share"


def store_path(account: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9@._-]", "_", account.lstrip("@"))
    return data_home() / "mls-bridge" / "chat" / f"{slug}.sqlite3"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mls-bridge chat",
                                     description=__doc__.split("\n\n")[0])
    account = parser.add_mutually_exclusive_group(required=True)
    account.add_argument("--xmpp", metavar="JID", help="an XMPP account: alice@example.org")
    account.add_argument("--matrix", metavar="MXID", help="a Matrix account: @alice:example.org")
    parser.add_argument("--homeserver", help="Matrix: the homeserver URL")
    parser.add_argument("--hub", default="", help="XMPP: the bridge's component "
                                                  "(default mls.DOMAIN)")
    parser.add_argument("--hub-user", default="", help="Matrix: the bridge's bot "
                                                       "(default @mlsbridge:SERVER)")
    parser.add_argument("--host", default="", help="XMPP: server host (default: from DNS)")
    parser.add_argument("--port", type=int, default=5222, help="XMPP: c2s port")
    parser.add_argument("--cafile", default="", help="XMPP: CA certificate file to trust")
    parser.add_argument("--no-tls", action="store_true",
                        help="XMPP: no STARTTLS (loopback test servers only)")
    parser.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV,
                        help=f"environment variable with the password "
                             f"(default {DEFAULT_PASSWORD_ENV})")
    parser.add_argument("--password-file", default="", help="file with the password")
    parser.add_argument("--file-host", action="append", default=[], metavar="HOST",
                        help="another host that files may be downloaded from (repeatable; "
                             "loopback and, on XMPP, your server's domain are allowed)")
    parser.add_argument("--store", default="", help="the device's SQLite file (default: "
                                                    "under $XDG_DATA_HOME/mls-bridge/chat)")
    parser.add_argument("--log", default="", help="write a log to this file (no "
                                                  "plaintext is ever logged)")
    return parser


def password(args: argparse.Namespace) -> str:
    if args.password_file:
        return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    value = os.environ.get(args.password_env, "")
    if value:
        return value
    if not sys.stdin.isatty():
        raise SessionError(f"no password: set {args.password_env}, use --password-file "
                           f"or run in a terminal for a prompt")
    return getpass.getpass(f"password for {args.xmpp or args.matrix}: ")


async def open_client(args: argparse.Namespace, secret: str
                      ) -> tuple[ChatClient, SqliteMemberStore]:
    """Open the device store and build the session and client (not yet started)."""
    account = args.xmpp or args.matrix
    store = await SqliteMemberStore.open(args.store or store_path(account))
    try:
        return await _client(args, secret, store), store
    except SessionError:
        await store.close()
        raise


async def _client(args: argparse.Namespace, secret: str, store: SqliteMemberStore
                  ) -> ChatClient:
    device = await store.load("chat:device")
    if device is None:
        device = secrets.token_hex(8).encode("ascii")
        await store.save("chat:device", device)
    session: Session
    if args.xmpp:
        session = XmppSession(args.xmpp, secret, resource=f"chat-{device.decode()}",
                              hub=args.hub, host=args.host, port=args.port,
                              cafile=args.cafile, tls=not args.no_tls,
                              upload_hosts=frozenset(args.file_host))
    else:
        if not args.homeserver:
            raise SessionError("--matrix needs --homeserver URL")
        server = args.matrix.partition(":")[2]
        matrix_device = await store.load(NETWORK_DEVICE) or b""
        session = MatrixSession(args.matrix, secret, homeserver=args.homeserver,
                                hub_user=args.hub_user or f"@mlsbridge:{server}",
                                device_id=matrix_device.decode(),
                                http_hosts=frozenset(args.file_host))
    return ChatClient(session, store, device=device.decode())


async def _run(args: argparse.Namespace, secret: str) -> int:
    try:
        chat, store = await open_client(args, secret)
    except (SessionError, StoreError) as exc:
        print(f"mls-bridge chat: {exc}", file=sys.stderr)
        return 1
    app = ChatApp(chat)
    try:
        await app.run_async()
    finally:
        await store.close()
    if app.failure:
        print(f"mls-bridge chat: {app.failure}", file=sys.stderr)
        return 1
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log:
        log_file = Path(args.log)
        create_private(log_file)
        logging.basicConfig(filename=log_file, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger().setLevel(logging.CRITICAL)  # nothing under the screen
    try:
        secret = password(args)
    except (SessionError, OSError) as exc:
        print(f"mls-bridge chat: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, secret))


if __name__ == "__main__":
    sys.exit(main())
