"""The bridge as a separate process against real Prosody and Synapse on 127.0.0.1,
with MLS members on both networks: the harness shared by the crash-safety and load runs
(``benchmarks/crash.py``, ``benchmarks/load.py``, ``tests/crash``, ``tests/load``).

* :class:`BridgeProcess` -- ``mls-bridge run --config FILE`` (one hub, the XEP-0114
  component and the Matrix bot, configured room pairs) as a child process: start (waits
  for the ``bridge ready`` log event), ``kill -9``, SIGTERM, CPU seconds from
  ``/proc/<pid>/stat``;
* :func:`xmpp_person` / :func:`matrix_person` -- an MLS member on a fresh account
  (:class:`TimedMember`: a :class:`bridge.member.Member` that notes when each message
  arrived);
* :func:`bridged_group` -- one MLS group across a configured room pair, every person in;
* :func:`plain_xmpp` -- a slixmpp client without MLS (for relay-mode rooms).

Nothing here talks to anything but 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio
from slixmpp import ClientXMPP

from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.member import Member, Received, RetryPolicy
from transports.interface import HubLink, Inbound, Outbound
from transports.matrix.client import MatrixMemberLink
from transports.xmpp.client import MLSClientPlugin, register
from transports.xmpp.namespace import NS_SID

REPO = Path(__file__).resolve().parents[1]
SYNC_MS = 1000


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0,
                poll: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(poll)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads
    (``/proc/<pid>/stat``, fields 14 and 15 of proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# -- the bridge process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One configured ``[[bridge.rooms]]`` entry; ``admins`` may create its group."""

    name: str
    xmpp_room: str
    matrix_room: str
    relay: bool = False
    admins: tuple[str, ...] = ()


def write_config(path: Path, *, db: Path, log_file: Path, prosody: ProsodyServer,
                 synapse: SynapseServer, hub_user: str, hub_password: str,
                 pairs: Sequence[Pair], log_level: str = "info", store_url: str = "",
                 shutdown_timeout: float = 5.0, extra: str = "") -> Path:
    """A complete ``mls-bridge run`` configuration for the two local servers (the store
    is the SQLite file ``db`` unless ``store_url`` names another; ``extra``: more TOML
    tables, such as ``[limits]``). The hub key, the relay secrets and the olm store sit
    beside ``db`` whatever the store (never in the working directory)."""
    rooms = "".join(
        f'\n[[bridge.rooms]]\nname = "{p.name}"\nxmpp = "{p.xmpp_room}"\n'
        f'matrix = "{p.matrix_room}"\nrelay = {"true" if p.relay else "false"}\n'
        f"admins = {json.dumps(list(p.admins))}\n"
        for p in pairs)
    path.write_text(
        f'[store]\nurl = "{store_url or f"sqlite:///{db}"}"\n\n'
        f'[hub]\nidentity_file = "{db}.hub-key"\n\n'
        f'[log]\nlevel = "{log_level}"\nformat = "json"\nfile = "{log_file}"\n\n'
        "[metrics]\nenabled = false\n\n"
        "[retry]\ninitial_delay = 0.2\nmax_delay = 1.0\n\n"
        f'[xmpp]\njid = "{prosody.component_name}"\nsecret = "{prosody.component_secret}"\n'
        f'host = "{prosody.host}"\nport = {prosody.component_port}\nconnect_timeout = 10.0\n'
        "leave_grace = 600.0\n\n"
        f'[matrix]\nhomeserver = "{synapse.url}"\nserver_name = "{synapse.server_name}"\n'
        f'user = "{hub_user}"\npassword = "{hub_password}"\nsync_timeout_ms = {SYNC_MS}\n\n'
        f"{extra}\n[bridge]\nshutdown_timeout = {shutdown_timeout}\n\n"
        f'[bridge.relay]\nsecrets = "{db}.relay-secrets"\nolm_store = "{db}.olm"\n{rooms}',
        encoding="utf-8")
    return path


#: What a clean run leaves neither on the bridge's stderr nor in its log: resources a
#: stop forgot (aiohttp sessions, sockets and files -- ResourceWarnings are errors in
#: ``debug`` mode --, pending or failed tasks, coroutines never awaited), a stop that
#: overran its deadline, and tracebacks.
LEAK_MARKERS = ("Unclosed client session", "Unclosed connector", "ResourceWarning",
                "Exception ignored", "Task was destroyed but it is pending",
                "exception was never retrieved", "was never awaited",
                "task left running at stop", "task did not end when cancelled",
                "stop overran", "Traceback")


class BridgeProcess:
    """``python -m bridge.app.cli run --config FILE`` as a child process; with
    ``debug``, under asyncio's debug mode with ResourceWarnings raised as errors."""

    def __init__(self, config: Path, log_file: Path, src: Path = REPO,
                 module: str = "bridge.app.cli", *, debug: bool = False) -> None:
        self.config = config
        self.log_file = log_file
        self.src = src  # the source tree run (another checkout, for before/after runs)
        self.module = module  # what ``python -m`` runs (a wrapper with counters, say)
        self.debug = debug
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._offsets = (0, 0)  # log and stderr sizes when the last start began
        self.stop_seconds = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 60.0) -> float:
        """Start and wait for the ``bridge ready`` event; return the seconds it took."""
        began = time.monotonic()
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        errors = self.stderr_file.stat().st_size if self.stderr_file.exists() else 0
        self._offsets = (offset, errors)
        flags = ["-W", "error::ResourceWarning"] if self.debug else []
        env = {**os.environ, "PYTHONASYNCIODEBUG": "1"} if self.debug else None
        with self.stderr_file.open("ab") as stderr:  # tracebacks the log cannot hold
            self.proc = subprocess.Popen(
                [sys.executable, *flags, "-m", self.module, "run", "--config",
                 str(self.config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                cwd=self.src, env=env)
        self.starts += 1

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the bridge exited {self.proc.returncode}:\n"
                                     + self.tail())
            return any(e.get("event") == "bridge ready" for e in self.events(offset))

        await until(ready, "the bridge to be ready", timeout, poll=0.05)
        return time.monotonic() - began

    def events(self, offset: int = 0) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        with self.log_file.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    @property
    def stderr_file(self) -> Path:
        return self.log_file.with_name(self.log_file.name + ".stderr")

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` log lines, the last warnings and errors, and stderr."""
        if not self.log_file.exists():
            return ""
        logged = self.log_file.read_text("utf-8", "replace").splitlines()
        problems = [line for line in logged
                    if '"level": "warning"' in line or '"level": "error"' in line]
        stderr = (self.stderr_file.read_text("utf-8", "replace").splitlines()
                  if self.stderr_file.exists() else [])
        return "\n".join([*logged[-lines:], "-- warnings and errors --", *problems[-lines:],
                          "-- stderr --", *stderr[-lines:]])

    def since_start(self) -> tuple[list[str], list[str]]:
        """The log lines and the stderr lines written since the last start."""
        out: list[list[str]] = []
        for path, offset in zip((self.log_file, self.stderr_file), self._offsets, strict=True):
            if not path.exists():
                out.append([])
                continue
            with path.open("rb") as f:
                f.seek(offset)
                out.append(f.read().decode("utf-8", "replace").splitlines())
        return out[0], out[1]

    def leaks(self) -> list[str]:
        """Lines of the last run (log and stderr) naming a :data:`LEAK_MARKERS` thing."""
        logged, stderr = self.since_start()
        return [line for line in [*logged, *stderr]
                if any(marker in line for marker in LEAK_MARKERS)]

    def stop_report(self) -> dict[str, Any]:
        """The last run's ``bridge stopped`` event, and everything its stop named as cut
        or not done (``cut`` and ``not_done`` lists of log events)."""
        events = self.events(self._offsets[0])
        stopped = [e for e in events if e.get("event") == "bridge stopped"]
        return {"stopped": stopped[-1] if stopped else None,
                "cut": [e for e in events if e.get("event") == "stop step cut"],
                "not_done": [e for e in events if e.get("event") == "stop: not done"]}

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; only what the store committed survives."""
        assert self.proc is not None and self.proc.poll() is None, "the bridge is not up"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code. The seconds
        the process took to exit are in :attr:`stop_seconds`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            began = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.stop_seconds = time.monotonic() - began
        return self.proc.returncode

    def cpu_seconds(self) -> float:
        """User + system CPU time of the running bridge (``/proc/<pid>/stat``)."""
        assert self.alive
        return cpu_seconds(self.pid)


# -- members ------------------------------------------------------------------------------


class TimedMember(Member):
    """A :class:`Member` that notes when each application message arrived (by body)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, on_received=self._arrived, **kwargs)
        self.arrivals: dict[str, float] = {}

    def _arrived(self, received: Received) -> None:
        self.arrivals.setdefault(received.content.body or "", time.monotonic())


class Spy:
    """A HubLink in front of the real one: counts requests in flight by op, and notes
    how each request ended (``reply`` -- accepted or refused -- or the link error)."""

    def __init__(self, link: HubLink) -> None:
        self.inner = link
        self.in_flight: dict[str, int] = {}
        self.started: dict[str, int] = {}
        self.pending: dict[int, str] = {}  # request number -> op, while in flight
        self.outcomes: dict[int, str] = {}  # request number -> "reply" or the error
        self._numbers = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    async def request(self, request: Inbound) -> Outbound:
        op = str(request.op)
        self.in_flight[op] = self.in_flight.get(op, 0) + 1
        self.started[op] = self.started.get(op, 0) + 1
        self._numbers += 1
        number = self._numbers
        self.pending[number] = op
        outcome = "cancelled"
        try:
            reply = await self.inner.request(request)
            outcome = "reply"
            return reply
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.in_flight[op] -= 1
            del self.pending[number]
            self.outcomes[number] = outcome


@dataclass
class Person:
    """One MLS member on one network."""

    network: str
    member: TimedMember
    spy: Spy
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    client: Any = None  # ClientXMPP or nio.AsyncClient
    plugin: MLSClientPlugin | None = None
    link: MatrixMemberLink | None = None

    @property
    def identity(self) -> str:
        return self.member.identity

    def in_group(self, group_id: bytes) -> bool:
        return group_id in self.member.group_ids() and self.member.group(group_id).active

    def texts(self, group_id: bytes) -> list[tuple[str, str]]:
        return [(r.sender, r.content.body or "") for r in self.member.received(group_id)]

    async def close(self) -> None:
        await self.member.stop()
        for closer in self.closers:
            with contextlib.suppress(Exception):
                await closer()


def _member(link: HubLink, attempts: int) -> tuple[TimedMember, Spy]:
    spy = Spy(link)
    member = TimedMember(spy, retry=RetryPolicy(attempts=attempts, base_delay=0.1,
                                                max_delay=2.0))
    return member, spy


async def xmpp_person(server: ProsodyServer, prefix: str, *, timeout: float = 5.0,
                      retry_window: float = 60.0, attempts: int = 20) -> Person:
    """A slixmpp account with the MLS plugin (IQ ``timeout``; bounced requests retried
    for ``retry_window`` seconds while the component is down)."""
    jid, password = server.new_user(prefix)
    client = ClientXMPP(f"{jid}/{secrets.token_hex(3)}", password)
    client.register_plugin("xep_0030")
    server.configure_client(client)
    plugin = register(client, server.component_name, timeout=timeout,
                      retry_window=retry_window)
    await connect_xmpp(client, server)
    member, spy = _member(plugin, attempts)
    plugin.attach(member)
    await member.start()
    person = Person("xmpp", member, spy, client=client, plugin=plugin)
    person.closers += [plugin.stop, lambda: close_xmpp(client)]
    return person


async def hub_device(homeserver: str, hub_user: str, password: str,
                     device_id: str = "MLSBRIDGEHUB") -> None:
    """Log the hub's account in once with the device the bridge will use (the
    configuration's default ``device_id``), so that the requests members send it before
    the bridge starts wait in that device's inbox (to-device to ``*`` reaches only the
    devices that exist when it is sent)."""
    client = nio.AsyncClient(homeserver, hub_user, device_id=device_id)
    try:
        response = await client.login(password, device_name="mls-bridge hub")
        if not isinstance(response, nio.LoginResponse):
            raise AssertionError(f"login of {hub_user} failed: {response}")
    finally:
        await client.close()


async def matrix_person(server: SynapseServer, prefix: str, hub_user: str, *,
                        request_timeout: float = 30.0, attempts: int = 20) -> Person:
    """A matrix-nio account as a member (to-device requests wait ``request_timeout``
    seconds for the hub: they stay in its inbox while it is down)."""
    user_id, password = server.new_user(prefix)
    client = nio.AsyncClient(server.url, user_id)
    response = await client.login(password, device_name="mls-load")
    if not isinstance(response, nio.LoginResponse):
        raise AssertionError(f"login of {user_id} failed: {response}")
    link = MatrixMemberLink(client, hub_user, request_timeout=request_timeout,
                            sync_timeout_ms=SYNC_MS)
    member, spy = _member(link, attempts)
    link.attach(member)
    link.start()  # first: starting the member asks the hub (hub-info, attest)
    await asyncio.wait_for(link.synced.wait(), 30)
    await member.start()
    person = Person("matrix", member, spy, client=client, link=link)
    person.closers += [link.stop, client.close]
    return person


async def connect_xmpp(client: ClientXMPP, server: ProsodyServer,
                       timeout: float = 30.0) -> None:
    """Connect ``client`` to ``server`` and wait for its session (initial presence
    sent)."""
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: Any) -> None:
        client.send_presence()
        if not ready.done():
            ready.set_result(None)

    client.add_event_handler("session_start", on_start)
    client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(ready, timeout)


async def close_xmpp(client: ClientXMPP) -> None:
    """Disconnect for good and end slixmpp's send loop (it outlives the connection)."""
    await client.disconnect(wait=1.0)
    sender = client._run_out_filters
    if sender is not None:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


@contextlib.contextmanager
def real_servers(prefix: str) -> Iterator[tuple[Path, ProsodyServer, SynapseServer]]:
    """A temp dir with a Prosody and a Synapse started in it (for the benchmark
    commands), both stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        prosody = ProsodyServer(data_dir=root / "prosody")
        synapse = SynapseServer(data_dir=root / "synapse")
        try:
            for server in (prosody, synapse):
                server.prepare()
                server.start()
            yield root, prosody, synapse
        finally:
            prosody.stop()
            synapse.stop()


class PlainXmpp:
    """A slixmpp client without the MLS plugin: joins rooms like any MUC client."""

    def __init__(self, client: ClientXMPP, jid: str) -> None:
        self.client = client
        self.jid = jid
        self.messages: list[tuple[str, str]] = []  # (from, body) of groupchat messages
        self.stanzas: list[str] = []  # every message stanza received, serialized
        self.repeats: list[tuple[str, str]] = []  # (from, body) dropped as repeats
        self._seen: dict[tuple[str, str], str] = {}  # (room, stanza-id) -> body
        client.add_event_handler("message", self._on_message)

    @property
    def identity(self) -> str:
        return "xmpp:" + self.jid

    def _on_message(self, message: Any) -> None:
        """Like a MUC client that honours XEP-0359: a groupchat message carrying a
        stanza-id the room already gave to a message it showed is a repeat, not shown
        again (the body must be the same: a different one is kept and so caught)."""
        self.stanzas.append(str(message))
        if message["type"] != "groupchat" or not message["body"]:
            return
        room, body = message["from"].bare, message["body"]
        sid = message.xml.find(f"{{{NS_SID}}}stanza-id")
        if sid is not None and sid.get("by") == room:
            key = (room, sid.get("id", ""))
            if self._seen.get(key) == body:
                self.repeats.append((str(message["from"]), body))
                return
            self._seen.setdefault(key, body)
        self.messages.append((str(message["from"]), body))

    async def join(self, room: str, nick: str, timeout: float = 30.0) -> None:
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_presence(presence: Any) -> None:
            if presence["from"].bare == room and not joined.done():
                joined.set_result(None)

        self.client.add_event_handler("presence", on_presence)
        presence = self.client.make_presence(pto=f"{room}/{nick}")
        ET.SubElement(presence.xml, "{http://jabber.org/protocol/muc}x")
        presence.send()
        try:
            await asyncio.wait_for(joined, timeout)
        finally:
            self.client.del_event_handler("presence", on_presence)

    def say(self, room: str, body: str) -> None:
        self.client.make_message(mto=room, mbody=body, mtype="groupchat").send()

    async def close(self) -> None:
        await close_xmpp(self.client)


async def plain_xmpp(server: ProsodyServer, prefix: str) -> PlainXmpp:
    jid, password = server.new_user(prefix)
    client = ClientXMPP(f"{jid}/plain", password)
    client.register_plugin("xep_0030")
    server.configure_client(client)
    await connect_xmpp(client, server)
    return PlainXmpp(client, jid)


# -- rooms and groups -----------------------------------------------------------------------


async def matrix_room(owner: Person, hub_user: str) -> str:
    """A private room of ``owner`` with the hub invited (the bot joins once it runs)."""
    created = await owner.client.room_create(
        name="mls room", invite=[hub_user], power_level_override={"users": {hub_user: 50}})
    if not isinstance(created, nio.RoomCreateResponse):
        raise AssertionError(f"room creation failed: {created}")
    return str(created.room_id)


async def hub_joined(owner: Person, room_id: str, hub_user: str) -> bool:
    response = await owner.client.joined_members(room_id)
    return isinstance(response, nio.JoinedMembersResponse) and \
        hub_user in {m.user_id for m in response.members}


async def bridged_group(pair: Pair, creator: Person, others: Sequence[Person],
                        timeout: float = 120.0) -> bytes:
    """``creator`` makes the group in the pair's XMPP room (the bridge attaches the
    Matrix room) and adds ``others`` in one commit; returns when everyone is in the group
    and in their network's room."""
    group_id = await creator.member.create_group(transport="xmpp", room_id=pair.xmpp_room)
    if others:
        await creator.member.add_members(group_id, [p.identity for p in others])
    everyone = [creator, *others]

    def all_in() -> bool:
        for person in everyone:
            if not person.in_group(group_id):
                return False
            if person.plugin is not None and pair.xmpp_room not in person.plugin.rooms:
                return False
            if person.link is not None and pair.matrix_room not in person.client.rooms:
                return False
        return True

    await until(all_in, f"everyone in group {pair.name}", timeout)
    return group_id


def roster(person: Person, group_id: bytes) -> set[str]:
    return set(person.member.roster(group_id))


async def converge(people: Sequence[Person], group_id: bytes, timeout: float = 60.0
                   ) -> tuple[int, bytes]:
    """Every person at one epoch with one epoch authenticator; return both."""

    def same() -> bool:
        states = {(p.member.group(group_id).epoch, p.member.group(group_id).epoch_authenticator())
                  for p in people if p.in_group(group_id)}
        return len(states) == 1 and all(p.in_group(group_id) for p in people)

    await until(same, "one epoch and authenticator", timeout, poll=0.1)
    for person in people:
        await asyncio.wait_for(person.member.idle(), timeout)
    group = people[0].member.group(group_id)
    return group.epoch, group.epoch_authenticator()
