"""Application-service mode: the homeserver pushes transactions to the bridge.

Instead of a plain bot account syncing, the bridge can be registered as a Matrix
application service (so it may later act for puppet users). The AS sender user
(``sender_localpart``) is the hub: it logs in with ``m.login.application_service`` to
get a device (to-device requests are addressed to it), and :class:`AppServiceListener`
(aiohttp) receives ``PUT /_matrix/app/v1/transactions/{txnId}`` and feeds the same
:class:`~transports.matrix.bot.MatrixHubBot` as the sync mode:

* room events of rooms the AS is interested in (``events``), invites of the bot included;
* to-device messages for the bot (MSC2409, ``de.sorunome.msc2409.to_device`` /
  ``org.matrix.msc2409.to_device``; the registration sets ``receive_ephemeral``).

A transaction is acknowledged only after every event in it was processed, and its id is
remembered persistently: the homeserver retries unacknowledged transactions, and a
retried one is not processed twice.

``python -m transports.matrix.appservice generate-registration --url URL --out FILE``
writes a registration file for the homeserver (random tokens unless given).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from transports.matrix.bot import MatrixHubBot
from transports.matrix.errors import HomeserverError
from transports.matrix.seen import SeenSet

log = logging.getLogger(__name__)

TO_DEVICE_KEYS = ("de.sorunome.msc2409.to_device", "org.matrix.msc2409.to_device")
SHUTDOWN_TIMEOUT = 3.0  # seconds a stopping listener lets transactions in process finish


@dataclass(frozen=True, slots=True)
class Registration:
    """The fields of an application-service registration the bridge needs."""

    id: str
    url: str
    as_token: str
    hs_token: str
    sender_localpart: str
    user_prefix: str = "mlsbridge_"
    server_name: str = "localhost"
    receive_ephemeral: bool = True

    @property
    def sender(self) -> str:
        return f"@{self.sender_localpart}:{self.server_name}"

    def to_yaml(self) -> str:
        """The registration file (strings JSON-quoted, which YAML reads as-is)."""
        domain = re.escape(self.server_name)
        q = json.dumps
        lines = [
            f"id: {q(self.id)}",
            f"url: {q(self.url)}",
            f"as_token: {q(self.as_token)}",
            f"hs_token: {q(self.hs_token)}",
            f"sender_localpart: {q(self.sender_localpart)}",
            "rate_limited: false",
            f"receive_ephemeral: {str(self.receive_ephemeral).lower()}",
            f"de.sorunome.msc2409.push_ephemeral: {str(self.receive_ephemeral).lower()}",
            "namespaces:",
            "  users:",
            "    - exclusive: true",
            f"      regex: {q('@' + re.escape(self.user_prefix) + '.*:' + domain)}",
            "  aliases:",
            "    - exclusive: true",
            f"      regex: {q('#' + re.escape(self.user_prefix) + '.*:' + domain)}",
            "  rooms: []",
            f"# mlsbridge.user_prefix: {q(self.user_prefix)}",
            f"# mlsbridge.server_name: {q(self.server_name)}",
        ]
        return "\n".join(lines) + "\n"


def generate_registration(url: str, out: str | Path, *, id: str = "mls-bridge",
                          sender_localpart: str = "mlsbridge", user_prefix: str = "mlsbridge_",
                          server_name: str = "localhost", as_token: str | None = None,
                          hs_token: str | None = None,
                          receive_ephemeral: bool = True) -> Registration:
    """Write a registration file to ``out`` (mode 0600) and return what it holds."""
    registration = Registration(id, url, as_token or secrets.token_urlsafe(32),
                                hs_token or secrets.token_urlsafe(32), sender_localpart,
                                user_prefix, server_name, receive_ephemeral)
    path = Path(out)
    path.write_text(registration.to_yaml(), encoding="utf-8")
    path.chmod(0o600)
    return registration


def _scalar(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        return str(json.loads(text))
    return text.strip("'")


def load_registration(path: str | Path, server_name: str = "localhost") -> Registration:
    """Read the top-level fields of a registration file (ours or a hand-written one;
    the ghosts' user prefix from its first ``@prefix.*:domain`` namespace regex)."""
    fields: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(?:# mlsbridge\.)?([A-Za-z_.0-9]+):\s*(\S.*)$", line)
        if match:
            fields.setdefault(match.group(1), _scalar(match.group(2)))
        users = re.match(r"^\s*(?:- )?\s*regex:\s*(\S.*)$", line)
        prefix = re.fullmatch(r"@((?:[a-z0-9._=/-]|\\.)+)\.\*:.*", _scalar(users.group(1))) \
            if users else None
        if prefix and "user_prefix" not in fields:  # the first (users) namespace
            fields["user_prefix"] = re.sub(r"\\(.)", r"\1", prefix.group(1))
    try:
        return Registration(
            fields["id"], fields["url"], fields["as_token"], fields["hs_token"],
            fields["sender_localpart"], fields.get("user_prefix", "mlsbridge_"),
            fields.get("server_name", server_name),
            fields.get("receive_ephemeral", "false") == "true")
    except KeyError as exc:
        raise HomeserverError(f"registration {path} lacks {exc}") from exc


async def login_appservice(homeserver: str, registration: Registration,
                           device_id: str) -> tuple[str, str]:
    """Log the AS sender in (``m.login.application_service``) with a fixed device id;
    return (access token, device id)."""
    body = {"type": "m.login.application_service", "device_id": device_id,
            "identifier": {"type": "m.id.user", "user": registration.sender_localpart},
            "initial_device_display_name": "mls-bridge hub"}
    headers = {"Authorization": f"Bearer {registration.as_token}"}
    url = f"{homeserver.rstrip('/')}/_matrix/client/v3/login"
    try:
        async with aiohttp.ClientSession() as session, \
                session.post(url, json=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200 or not isinstance(answer, dict):
                raise HomeserverError(f"appservice login refused: HTTP {resp.status} {answer}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HomeserverError(f"appservice login failed: {exc}") from exc
    return str(answer["access_token"]), str(answer["device_id"])


async def ensure_sender_registered(homeserver: str, registration: Registration) -> None:
    """Register the AS sender user if the homeserver does not know it yet (idempotent)."""
    body = {"type": "m.login.application_service", "username": registration.sender_localpart,
            "inhibit_login": True}
    url = f"{homeserver.rstrip('/')}/_matrix/client/v3/register"
    headers = {"Authorization": f"Bearer {registration.as_token}"}
    try:
        async with aiohttp.ClientSession() as session, \
                session.post(url, json=body, headers=headers) as resp:
            if resp.status not in (200, 400):  # 400 M_USER_IN_USE: already there
                raise HomeserverError(f"cannot register the AS sender: HTTP {resp.status}")
    except aiohttp.ClientError as exc:
        raise HomeserverError(f"cannot register the AS sender: {exc}") from exc


GHOST_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def escape_localpart(name: str) -> str:
    """``name`` as Matrix localpart characters, reversibly: ``a-z 0-9 . -`` stay, every
    other UTF-8 byte is ``=`` and two lower-case hex digits (``@`` -> ``=40``, ``=`` ->
    ``=3d``), so distinct names never share a localpart (the spec's "mapping from
    other character sets", Matrix appendices)."""
    return "".join(c if c in GHOST_SAFE else "".join(f"={b:02x}" for b in c.encode())
                   for c in name)


class Ghosts:
    """The application service's own users, *ghosts*: one per person of another network
    whose messages the bridge posts into Matrix rooms (relay mode), named inside the
    registration's exclusive user namespace (``@<user_prefix><network>_<escaped>``,
    :func:`escape_localpart`), so no one else can hold or impersonate them.

    Every call is made with the ``as_token`` and ``?user_id=`` (identity assertion,
    Matrix application-service API "Identity assertion"); the AS sender itself (the
    hub bot) invites a ghost into a room before the ghost joins it."""

    def __init__(self, homeserver: str, registration: Registration) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.registration = registration
        self._session: aiohttp.ClientSession | None = None
        self._names: dict[str, str] = {}  # ghost -> the display name set
        self._rooms: set[tuple[str, str]] = set()  # (ghost, room) joined
        self._registered: set[str] = set()

    def user_id(self, network: str, name: str) -> str:
        """The ghost of ``name`` (an XMPP bare JID, say) of ``network``."""
        localpart = f"{self.registration.user_prefix}{network}_{escape_localpart(name)}"
        return f"@{localpart}:{self.registration.server_name}"

    def owns(self, user_id: str) -> bool:
        """Whether ``user_id`` is in the registration's user namespace (a ghost): its
        events are the bridge's own, never input to relay or puppet."""
        return user_id.startswith("@" + self.registration.user_prefix) and \
            user_id.endswith(":" + self.registration.server_name)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, as_user: str,
                       body: Mapping[str, Any] | None = None,
                       accept: tuple[int, ...] = (200,)) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.homeserver}/_matrix/client/v3{path}"
        params = {"user_id": as_user} if as_user else {}
        headers = {"Authorization": f"Bearer {self.registration.as_token}"}
        try:
            async with self._session.request(method, url, params=params, json=body or {},
                                             headers=headers) as resp:
                answer = await resp.json(content_type=None)
                if resp.status not in accept:
                    code = answer.get("errcode") if isinstance(answer, dict) else ""
                    raise HomeserverError(f"{method} {path.split('/')[1]} as a ghost: "
                                          f"HTTP {resp.status} {code}")
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise HomeserverError(f"ghost call failed: {type(exc).__name__}") from exc
        return answer if isinstance(answer, dict) else {}

    async def ensure(self, ghost: str, display_name: str, room_id: str) -> None:
        """Register ``ghost`` (once), give it ``display_name`` (when it changed) and
        bring it into ``room_id`` (invited by the AS sender, then joined)."""
        if ghost not in self._registered:
            localpart = ghost[1:].split(":", 1)[0]
            await self._request("POST", "/register", "", {
                "type": "m.login.application_service", "username": localpart,
                "inhibit_login": True}, accept=(200, 400))  # 400: M_USER_IN_USE
            self._registered.add(ghost)
        if self._names.get(ghost) != display_name:
            await self._request("PUT", f"/profile/{quote(ghost, safe='')}/displayname",
                                ghost, {"displayname": display_name})
            self._names[ghost] = display_name
        if (ghost, room_id) not in self._rooms:
            room = quote(room_id, safe="")
            await self._request("POST", f"/rooms/{room}/invite", "", {"user_id": ghost},
                                accept=(200, 403))  # 403: already in the room
            await self._request("POST", f"/join/{room}", ghost)
            self._rooms.add((ghost, room_id))

    async def send(self, ghost: str, room_id: str, event_type: str,
                   content: Mapping[str, Any], txn: str) -> str:
        """Post one event as ``ghost`` (``txn`` makes a resend idempotent); its id."""
        path = (f"/rooms/{quote(room_id, safe='')}/send/{quote(event_type, safe='')}/"
                f"{quote(txn, safe='')}")
        answer = await self._request("PUT", path, ghost, content)
        return str(answer.get("event_id", ""))

    async def redact(self, ghost: str, room_id: str, event_id: str, txn: str) -> str:
        """Redact ``event_id`` as ``ghost`` (its own event, or the AS sender's)."""
        path = (f"/rooms/{quote(room_id, safe='')}/redact/{quote(event_id, safe='')}/"
                f"{quote(txn, safe='')}")
        answer = await self._request("PUT", path, ghost, {})
        return str(answer.get("event_id", ""))


class AppServiceListener:
    """The homeserver -> AS half (aiohttp), feeding a :class:`MatrixHubBot`."""

    def __init__(self, bot: MatrixHubBot, hs_token: str) -> None:
        self.bot = bot
        self.hs_token = hs_token
        self.seen = SeenSet(bot.cursors, f"{bot.user_id}:txn")
        self.transactions = 0
        self.received = asyncio.Event()
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        for prefix in ("/_matrix/app/v1", ""):
            self.app.router.add_put(prefix + "/transactions/{txn}", self.on_transaction)
            self.app.router.add_get(prefix + "/users/{user}", self.on_query)
            self.app.router.add_get(prefix + "/rooms/{alias}", self.on_query)
        self.app.router.add_post("/_matrix/app/v1/ping", self.on_ping)

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        """Stop listening; transactions being processed get ``SHUTDOWN_TIMEOUT`` s to
        finish (an unanswered one is retried by the homeserver)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") \
            else request.query.get("access_token", "")
        return hmac.compare_digest(token.encode(), self.hs_token.encode())

    @staticmethod
    def _forbidden() -> web.Response:
        return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)

    async def on_ping(self, request: web.Request) -> web.Response:
        return web.json_response({}) if self._authorized(request) else self._forbidden()

    async def on_query(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._forbidden()
        return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)

    async def on_transaction(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._forbidden()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"errcode": "M_NOT_JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"errcode": "M_BAD_JSON"}, status=400)
        txn = request.match_info["txn"]
        async with self._lock:
            if not await self.seen.contains(txn):
                await self.process(body)
                await self.seen.add(txn)
                self.transactions += 1
        self.received.set()
        return web.json_response({})

    async def process(self, body: Mapping[str, Any]) -> None:
        """One transaction: to-device requests admitted (handled concurrently by the
        bot's workers), room events in order, then every request answered."""
        for key in TO_DEVICE_KEYS:
            for event in _dicts(body.get(key)):
                if event.get("to_user_id") in (None, self.bot.user_id):
                    await self.bot.on_to_device(event)
        for event in _dicts(body.get("events")):
            room_id = event.get("room_id")
            if isinstance(room_id, str):
                await self.bot.on_room_event(room_id, event)
        await self.bot.settle()  # acknowledged once every request of it was answered


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] \
        if isinstance(value, list) else []


async def ping(homeserver: str, registration: Registration) -> None:
    """Ask the homeserver to ping the AS (MSC2659), which also flushes its retry backoff."""
    url = (f"{homeserver.rstrip('/')}/_matrix/client/v1/appservice/"
           f"{quote(registration.id, safe='')}/ping")
    headers = {"Authorization": f"Bearer {registration.as_token}"}
    try:
        async with aiohttp.ClientSession() as session, \
                session.post(url, json={}, headers=headers) as resp:
            if resp.status != 200:
                raise HomeserverError(f"appservice ping failed: HTTP {resp.status}")
    except aiohttp.ClientError as exc:
        raise HomeserverError(f"appservice ping failed: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transports.matrix.appservice")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate-registration",
                              help="write an application-service registration file")
    gen.add_argument("--url", required=True, help="where the homeserver reaches the bridge")
    gen.add_argument("--out", required=True, help="registration file to write")
    gen.add_argument("--id", default="mls-bridge")
    gen.add_argument("--sender-localpart", default="mlsbridge")
    gen.add_argument("--user-prefix", default="mlsbridge_")
    gen.add_argument("--server-name", default="localhost")
    gen.add_argument("--as-token")
    gen.add_argument("--hs-token")
    args = parser.parse_args(argv)
    registration = generate_registration(
        args.url, args.out, id=args.id, sender_localpart=args.sender_localpart,
        user_prefix=args.user_prefix, server_name=args.server_name, as_token=args.as_token,
        hs_token=args.hs_token)
    print(f"wrote {args.out} (sender {registration.sender})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
