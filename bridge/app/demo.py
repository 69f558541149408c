"""``mls-bridge demo``: one MLS group across a real XMPP server and a real Matrix server.

Starts Prosody and Synapse on 127.0.0.1 (installing them when missing, like the test
suite: :mod:`bridge.devservers`), writes a bridge configuration pairing an XMPP room
with a Matrix room, runs the bridge (the same code as ``mls-bridge run``:
:func:`bridge.app.runtime.serve`) and plays a short conversation: Alice on XMPP
creates the group, adds Bob from Matrix, they chat both ways, Bob adds Carol from XMPP,
Bob removes Carol. Every member's credential is an X.509 certificate the hub attested
and every member checks every other against the hub's CA it pinned (the demo prints the
CA's fingerprint, the group's credential mode and each member's membership events:
who was added or removed, by whom). It prints what each person sees, then searches the
bridge's database
files for every plaintext sent (there must be none: the bridge only relays MLS
ciphertext), prints ``demo: OK — ...`` and stops everything it started. Exit code 0 on
success, 1 otherwise (with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nio
from slixmpp import ClientXMPP

from bridge.app.config import load_config
from bridge.app.logs import setup_logging
from bridge.app.runtime import serve
from bridge.devservers.ports import ServerSetupError, free_port
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.member import Member, RetryPolicy
from bridge.member.events import MembershipEvent, MembershipHook
from transports.matrix.client import MatrixMemberLink
from transports.xmpp.client import MLSClientPlugin, register

STEP_TIMEOUT = 30.0
SYNC_MS = 1000
RETRY = RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0)


class DemoError(Exception):
    """A demo step failed (the message says which)."""


def say(line: str) -> None:
    print(line, flush=True)


async def until(check: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Person:
    """One demo participant: a name, a network and an MLS member over that network."""

    name: str
    network: str
    member: Member
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    @property
    def identity(self) -> str:
        return self.member.identity

    @property
    def tag(self) -> str:
        return f"[{self.network:6}] {self.name:5}"

    def in_group(self, group_id: bytes) -> bool:
        return group_id in self.member.group_ids() and self.member.group(group_id).active

    def roster(self, group_id: bytes) -> list[str]:
        return self.member.roster(group_id)

    def pinned(self) -> str:
        anchor = self.member.trust.anchor
        return anchor.fingerprint if anchor is not None else "nothing"

    def texts(self, group_id: bytes) -> list[tuple[str, str]]:
        if group_id not in self.member.group_ids():
            return []
        return [(r.sender, r.content.body or "") for r in self.member.received(group_id)]

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # best-effort teardown of a demo client
            await self.member.stop()
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):  # best-effort teardown of a demo client
                await closer()


async def xmpp_person(server: ProsodyServer, name: str, account: tuple[str, str] | None = None
                      ) -> tuple[Person, MLSClientPlugin]:
    jid, password = account or server.new_user(name)
    client = ClientXMPP(f"{jid}/demo", password)
    client.register_plugin("xep_0030")
    server.configure_client(client)
    plugin = register(client, server.component_name, timeout=15.0)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: object) -> None:
        client.send_presence()
        if not ready.done():
            ready.set_result(None)

    def on_fail(_event: object) -> None:
        if not ready.done():
            ready.set_exception(DemoError(f"{jid}: XMPP authentication failed"))

    client.add_event_handler("session_start", on_start)
    client.add_event_handler("failed_auth", on_fail)
    client.connect(host=server.host, port=server.c2s_port)
    await asyncio.wait_for(ready, STEP_TIMEOUT)
    member = Member(plugin, retry=RETRY, on_event=show_events("xmpp", name))
    plugin.attach(member)
    await member.start()
    person = Person(name, "xmpp", member, [lambda: client.disconnect(wait=1.0)])
    return person, plugin


def show_events(network: str, name: str) -> MembershipHook:
    """Print a member's membership events as they happen."""
    def show(event: MembershipEvent) -> None:
        say(f"[{network:6}] {name:5} event: {_short(event.describe())} "
            f"(epoch {event.epoch}, log seq {event.seq})")
    return show


async def matrix_person(server: SynapseServer, name: str, hub_user: str
                        ) -> tuple[Person, nio.AsyncClient]:
    """A Matrix user syncing; its member is started (it asks the hub for its CA and
    an attestation) once the bridge runs: ``await person.member.start()``."""
    user_id, password = server.new_user(name)
    client = nio.AsyncClient(server.url, user_id)
    response = await client.login(password, device_name="mls-bridge demo")
    if not isinstance(response, nio.LoginResponse):
        raise DemoError(f"{user_id}: Matrix login failed: {response}")
    link = MatrixMemberLink(client, hub_user, request_timeout=STEP_TIMEOUT,
                            sync_timeout_ms=SYNC_MS)
    member = Member(link, retry=RETRY, on_event=show_events("matrix", name))
    link.attach(member)
    link.start()
    await asyncio.wait_for(link.synced.wait(), STEP_TIMEOUT)
    return Person(name, "matrix", member, [client.close, link.stop]), client


# -- servers and configuration ----------------------------------------------------------------


async def start_servers(workdir: Path, upload_limit: int = 0
                        ) -> tuple[ProsodyServer, SynapseServer]:
    """Prosody (with an XEP-0363 service when ``upload_limit``) and Synapse, started."""
    prosody = ProsodyServer(data_dir=workdir / "prosody", upload_limit=upload_limit)
    synapse = SynapseServer(data_dir=workdir / "synapse")
    prosody.data_dir.mkdir(parents=True)
    synapse.data_dir.mkdir(parents=True)

    def up(server: ProsodyServer | SynapseServer) -> None:
        server.prepare()
        server.start()

    results = await asyncio.gather(asyncio.to_thread(up, prosody), asyncio.to_thread(up, synapse),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            prosody.stop()
            synapse.stop()
            raise DemoError(f"a server could not be started: {result}") from result
    return prosody, synapse


def write_config(workdir: Path, prosody: ProsodyServer, synapse: SynapseServer,
                 hub_user: str, hub_password: str, xmpp_room: str, matrix_room: str,
                 admin: str, join: str = "invite") -> Path:
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(mode=0o700)
    for name, value in (("component", prosody.component_secret), ("matrix", hub_password)):
        path = secrets_dir / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
    metrics_port = free_port()
    text = f"""\
# written by `mls-bridge demo`
[store]
url = "sqlite:///{workdir / 'bridge.db'}"

[log]
level = "info"
format = "json"
file = "{workdir / 'bridge.log'}"

[metrics]
port = {metrics_port}

[retry]
initial_delay = 0.5
max_delay = 5.0
attempts = 20

[xmpp]
jid = "{prosody.component_name}"
secret_file = "secrets/component"
host = "{prosody.host}"
port = {prosody.component_port}

[matrix]
homeserver = "{synapse.url}"
server_name = "{synapse.server_name}"
mode = "bot"
user = "{hub_user}"
password_file = "secrets/matrix"
sync_timeout_ms = {SYNC_MS}

[bridge]
shutdown_timeout = 5.0

[[bridge.rooms]]
name = "demo"
xmpp = "{xmpp_room}"
matrix = "{matrix_room}"
# who joins by external commit (invite: only members add people); the pair's XMPP
# owner creates its group (docs/SECURITY.md)
join = "{join}"
admins = ["{admin}"]
"""
    path = workdir / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def matrix_room(owner: nio.AsyncClient, hub_user: str) -> str:
    """A private room created by ``owner``, the hub invited with the state level."""
    created = await owner.room_create(name="mls-bridge demo", invite=[hub_user],
                                      power_level_override={"users": {hub_user: 50}})
    if not isinstance(created, nio.RoomCreateResponse):
        raise DemoError(f"cannot create the Matrix room: {created}")
    return str(created.room_id)


def check_no_plaintext(workdir: Path, sent: list[str]) -> None:
    """Search the bridge's database and log for every plaintext sent; say what was
    searched; :class:`DemoError` if any is found (or the database is missing)."""
    files, found = scan_files(workdir, ("bridge.db", "bridge.db-wal", "bridge.db-shm"),
                              sent)
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in files)
    say(f"demo: searched the bridge's database ({sizes}) for each of the "
        f"{len(sent)} plaintexts: {len(found)} found")
    if found or not files:
        raise DemoError("plaintext found in the bridge's store" if found
                        else "the bridge's database file is missing")
    logs, in_log = scan_files(workdir, ("bridge.log",), sent)
    lines = len(logs[0].read_text("utf-8").splitlines()) if logs else 0
    say(f"demo: searched the bridge's log ({lines} lines) for them too: "
        f"{len(in_log)} found")
    if in_log:
        raise DemoError("plaintext found in the bridge's log")


def scan_files(workdir: Path, names: tuple[str, ...], plaintexts: list[str]
               ) -> tuple[list[Path], list[str]]:
    """The existing files among ``names``, and which plaintexts occur in any of them."""
    files = [workdir / name for name in names if (workdir / name).is_file()]
    data = b"".join(p.read_bytes() for p in files)
    found = [text for text in plaintexts if text.encode("utf-8") in data]
    return files, found


# -- the conversation --------------------------------------------------------------------------


class Conversation:
    """The scripted conversation and what every person should have seen."""

    def __init__(self, people: list[Person]) -> None:
        self.people = people
        self.sent: list[str] = []
        self.expected: dict[str, list[tuple[str, str]]] = {p.name: [] for p in people}

    async def send(self, sender: Person, group_id: bytes, text: str,
                   audience: list[Person]) -> None:
        say(f"{sender.tag} says:  {text!r}")
        await sender.member.send_text(group_id, text)
        self.sent.append(text)
        for person in audience:
            if person is not sender:
                self.expected[person.name].append((sender.identity, text))

    async def settle(self, group_id: bytes, audience: list[Person]) -> None:
        for person in audience:
            want = self.expected[person.name]
            await until(lambda p=person, w=want: p.texts(group_id)[:len(w)] == w  # type: ignore[misc]
                        and len(p.texts(group_id)) >= len(w),
                        f"{person.name} to receive {len(want)} messages")

    def show(self, person: Person, group_id: bytes, start: int) -> int:
        got = person.texts(group_id)
        for sender, text in got[start:]:
            name = next((p.name for p in self.people if p.identity == sender), sender)
            say(f"{person.tag} sees:  {name}: {text!r}")
        return len(got)


def _short(text: str) -> str:
    """Identities without their scheme (``xmpp:``, ``matrix:u/``), for reading."""
    return text.replace("xmpp:", "").replace("matrix:u/", "")


async def converge(people: list[Person], group_id: bytes) -> int:
    await until(lambda: all(p.in_group(group_id) for p in people)
                and len({p.member.group(group_id).epoch for p in people}) == 1,
                f"{', '.join(p.name for p in people)} to reach the same epoch")
    return people[0].member.group(group_id).epoch


async def play(alice: Person, bob: Person, carol: Person, alice_plugin: MLSClientPlugin,
               xmpp_room: str) -> tuple[Conversation, int]:
    talk = Conversation([alice, bob, carol])
    seen = {p.name: 0 for p in talk.people}
    for person in (bob, carol):
        await person.member.publish_key_packages(2)
    pins = {person.pinned() for person in talk.people}
    if len(pins) != 1:
        raise DemoError(f"the members pinned different CAs: {sorted(pins)}")
    say(f"demo: every member pinned the hub's CA, SHA-256 {pins.pop()}")
    say(f"{alice.tag} creates an MLS group in {xmpp_room} (she administers the room pair)")
    group_id = await alice.member.create_group(transport="xmpp", room_id=xmpp_room)
    mode = alice.member.credential_mode(group_id)
    say(f"{alice.tag} the group runs in {mode.value} mode: {mode.label}")
    say(f"{alice.tag} adds {bob.name} ({_short(bob.identity)}, on Matrix)")
    await alice.member.add_members(group_id, [bob.identity])
    epoch = await converge([alice, bob], group_id)
    say(f"{bob.tag} joined from the Welcome: epoch {epoch}, members "
        f"{', '.join(_short(i) for i in bob.roster(group_id))}")
    duo = [alice, bob]
    await talk.send(alice, group_id, f"Hello Bob, Alice here on XMPP ({secrets.token_hex(3)})",
                    duo)
    await talk.send(bob, group_id, f"Hi Alice! Bob from Matrix ({secrets.token_hex(3)})", duo)
    await talk.settle(group_id, duo)
    for person in duo:
        seen[person.name] = talk.show(person, group_id, seen[person.name])

    say(f"{bob.tag} adds {carol.name} ({_short(carol.identity)}, on XMPP)")
    await bob.member.add_members(group_id, [carol.identity])
    trio = [alice, bob, carol]
    epoch = await converge(trio, group_id)
    say(f"{carol.tag} joined from the Welcome: epoch {epoch}, members "
        f"{', '.join(_short(i) for i in carol.roster(group_id))}")
    await talk.send(carol, group_id, f"Carol joining from XMPP ({secrets.token_hex(3)})", trio)
    await talk.send(bob, group_id, f"Welcome Carol, from Matrix ({secrets.token_hex(3)})", trio)
    await talk.settle(group_id, trio)
    for person in trio:
        seen[person.name] = talk.show(person, group_id, seen[person.name])

    say(f"{bob.tag} removes {carol.name} (he moderates the Matrix room)")
    await bob.member.remove_members(group_id, [carol.identity])
    await until(lambda: not carol.member.group(group_id).active, "carol to see her removal")
    epoch = await converge(duo, group_id)
    say(f"{carol.tag} was removed; {alice.name} and {bob.name} are at epoch {epoch}, members "
        f"{', '.join(_short(i) for i in alice.roster(group_id))}")
    await talk.send(alice, group_id, f"Just the two of us again ({secrets.token_hex(3)})",
                    duo)
    await talk.settle(group_id, duo)
    for person in duo:
        seen[person.name] = talk.show(person, group_id, seen[person.name])
    if len(carol.texts(group_id)) != len(talk.expected[carol.name]):
        raise DemoError("carol received messages after her removal")
    say(f"{carol.tag} sees nothing after her removal (she got "
        f"{len(carol.texts(group_id))} message(s) while a member)")
    return talk, alice.member.group(group_id).epoch


async def metrics_summary(port: int) -> str:
    """A few counters from the bridge's Prometheus endpoint."""
    def scrape() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode("utf-8"))

    samples: dict[str, float] = {}
    for line in (await asyncio.to_thread(scrape)).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            family = name.split("{", 1)[0]
            samples[family] = samples.get(family, 0.0) + float(value)
    wanted = (("commits accepted", "mls_bridge_commits_accepted_total"),
              ("commits rejected", "mls_bridge_commits_rejected_total"),
              ("deliveries relayed", "mls_bridge_messages_relayed_total"),
              ("hub requests", "mls_bridge_requests_total"))
    return ", ".join(f"{label} {samples.get(key, 0.0):.0f}" for label, key in wanted)


# -- main ----------------------------------------------------------------------------------------


async def serving(bridge: asyncio.Task[int], ready: asyncio.Event,
                  timeout: float = 60.0) -> bool:
    """Wait until the bridge serves (``ready`` set), ends, or ``timeout`` s pass;
    whether it serves."""
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({bridge, waiter}, timeout=timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    return ready.is_set()


async def run_demo(workdir: Path) -> int:
    began = time.monotonic()
    say(f"demo: working directory {workdir}")
    say("demo: starting Prosody (XMPP) and Synapse (Matrix) on 127.0.0.1 "
        "(installing them first if missing; the first run can take minutes) ...")
    prosody, synapse = await start_servers(workdir)
    say(f"demo: prosody c2s 127.0.0.1:{prosody.c2s_port}, component {prosody.component_name} "
        f"on :{prosody.component_port}; synapse {synapse.url} "
        f"({time.monotonic() - began:.1f} s)")
    people: list[Person] = []
    stop = asyncio.Event()
    bridge: asyncio.Task[int] | None = None
    try:
        hub_password = secrets.token_urlsafe(12)
        hub_user = synapse.register_user(f"mlshub{secrets.token_hex(3)}", hub_password)
        bob, bob_client = await matrix_person(synapse, "bob", hub_user)
        people.append(bob)
        room = await matrix_room(bob_client, hub_user)
        xmpp_room = f"demo{secrets.token_hex(3)}@{prosody.component_name}"
        alice_account = prosody.new_user("alice")  # the pair's administrator
        config_path = write_config(workdir, prosody, synapse, hub_user, hub_password,
                                   xmpp_room, room, f"xmpp:{alice_account[0]}")
        config = load_config(config_path)
        say(f"demo: bridge configuration {config_path} (mls-bridge check-config):")
        for line in config.describe():
            say(f"    {line}")
        setup_logging(config.log.level, config.log.format, config.log.file, config.secrets())
        ready = asyncio.Event()
        bridge = asyncio.create_task(serve(config, stop, ready=ready))
        if not await serving(bridge, ready):
            raise DemoError(f"the bridge did not start; see {workdir / 'bridge.log'}")
        say(f"demo: bridge running: XMPP room {xmpp_room} <-> Matrix room {room} "
            f"(logs: {workdir / 'bridge.log'})")
        await bob.member.start()
        alice, alice_plugin = await xmpp_person(prosody, "alice", alice_account)
        carol, _ = await xmpp_person(prosody, "carol")
        people += [alice, carol]
        talk, epoch = await asyncio.wait_for(play(alice, bob, carol, alice_plugin, xmpp_room),
                                             120)
        check_no_plaintext(workdir, talk.sent)
        say(f"demo: bridge metrics: {await metrics_summary(config.metrics.port)}")
    finally:
        for person in people:
            await person.close()
        stop.set()
        if bridge is not None:
            with contextlib.suppress(Exception):  # its failure was reported above
                await asyncio.wait_for(bridge, 15)
        await asyncio.gather(asyncio.to_thread(prosody.stop), asyncio.to_thread(synapse.stop))
    say(f"demo: OK — XMPP and Matrix members shared one MLS group through the bridge "
        f"({len(talk.sent)} messages, epoch {epoch}, join/add/remove across networks); "
        f"the bridge's store holds no plaintext; {time.monotonic() - began:.1f} s")
    return 0


def main(keep: bool = False, workdir: str = "") -> int:
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mls-bridge-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        return asyncio.run(run_demo(path))
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr, flush=True)
        return 130
    except (DemoError, ServerSetupError, OSError, TimeoutError) as exc:
        print(f"demo: FAILED — {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        log_file = path / "bridge.log"
        if log_file.exists():
            print(f"demo: bridge log: {log_file} (kept)", file=sys.stderr)
            keep = True
        return 1
    finally:
        if not keep and not workdir:
            shutil.rmtree(path, ignore_errors=True)
        elif keep:
            print(f"demo: kept {path}", flush=True)
