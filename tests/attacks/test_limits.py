"""Issue 16's limits over the real Prosody and Synapse, through ONE bridge whose
transports admit requests with small limits (docs/SECURITY.md, "Limits"): a member
flooding the hub is refused ``rate-limited`` (and its excess dropped or refused
``rate-limited``/``busy``) while the honest members' messages go through during the
flood, in order; queues stay within their bounds; a request referencing maximal
payloads is refused ``too-large`` before anything is downloaded.

Nothing here is timed: the flood runs until the honest members are done and the
flooder has had answers after them; what is asserted is counts and order."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import nio
import pytest
from slixmpp.exceptions import IqError

from bridge.app.metrics import HubMetrics, Metrics
from bridge.app.services.bridge import BridgeService
from bridge.app.services.matrix import MatrixServiceConfig
from bridge.devservers.files import BlobServer
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer
from bridge.hub import HubIdentity
from bridge.hub.store import SqliteStore
from tests.attacks.conftest import Scene, bridged_scene
from tests.bridging.conftest import Person, converge, in_group, texts, until
from transports.errors import LinkError
from transports.fairness import RequestLimits
from transports.interface import Inbound, Op, Outbound
from transports.matrix import namespace as ns
from transports.matrix.media import MAX_MEDIA_SIZE
from transports.xmpp.component import ComponentConfig
from transports.xmpp.namespace import NS

LIMITS = RequestLimits(rate=5.0, burst=30, workers=4, queue_per_sender=6, queue_total=64)
MiB = 1024 * 1024


@pytest.fixture
async def bridge_service(prosody_server: ProsodyServer, synapse_server: SynapseServer,
                         tmp_path: Path) -> AsyncIterator[BridgeService]:
    """The combined service with :data:`LIMITS` on both transports and its metrics."""
    user_id, password = synapse_server.new_user("bridgehub")
    store = await SqliteStore.open(tmp_path / "bridge.db")
    service = BridgeService(
        store, HubIdentity.generate("mls-bridge"),
        xmpp=ComponentConfig(jid=prosody_server.component_name,
                             secret=prosody_server.component_secret,
                             host=prosody_server.host, port=prosody_server.component_port,
                             limits=LIMITS),
        matrix=MatrixServiceConfig(homeserver=synapse_server.url, user=user_id,
                                   password=password, sync_timeout_ms=1000, limits=LIMITS))
    observer = HubMetrics(Metrics())
    service.hub.observer = observer
    service.limit_observer = observer
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await store.close()


def metrics(service: BridgeService) -> Metrics:
    assert isinstance(service.limit_observer, HubMetrics)
    return service.limit_observer.metrics


@dataclass
class Flood:
    """A member firing requests at the hub without waiting for their answers, in waves,
    until stopped; every answer is numbered on the test's clock of events."""

    flooder: Person
    group_id: bytes
    order: itertools.count[int]
    answers: list[tuple[int, str]] = field(default_factory=list)  # (event no., code)
    sent: int = 0
    lost: int = 0  # no answer (dropped by the bot, or the link gave up)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def one(self) -> None:
        try:
            reply: Outbound = await self.flooder.member.link.request(Inbound(
                Op.FETCH_LOG, self.flooder.identity, request_id=secrets.token_hex(8),
                group_id=self.group_id, limit=1))
        except LinkError:
            self.lost += 1
            return
        self.answers.append((next(self.order), "ok" if reply.ok else reply.code))

    async def run(self, wave: int) -> None:
        while not self.stop.is_set():
            for _ in range(wave):
                task = asyncio.get_running_loop().create_task(self.one())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                self.sent += 1
            await asyncio.sleep(0.1)  # paces the flood; it does not decide an outcome

    async def end(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def codes(self) -> list[str]:
        return [code for _, code in self.answers]


async def honest_during_flood(scene: Scene, flood: Flood, speakers: list[Person],
                              order: itertools.count[int]) -> list[int]:
    """Each speaker says three things while the flood runs; returns the event numbers
    at which they were acknowledged."""
    acked = []
    for person in speakers:
        for i in range(3):
            await person.member.send_text(scene.group_id, f"{person.identity} {i}")
            acked.append(next(order))
    return acked


async def flood_scene(service: BridgeService, people: Any, prosody: ProsodyServer,
                      network: str) -> tuple[Scene, Person]:
    scene = await bridged_scene(service, people, prosody)
    flooder = await people(network, "flooder")
    await flooder.member.publish_key_packages(1)
    await scene.xa.member.add_members(scene.group_id, [flooder.identity])
    await until(lambda: in_group(flooder, scene.group_id), "the flooder in the group")
    await converge([*scene.members, flooder], scene.group_id)
    return scene, flooder


async def check_flood(service: BridgeService, scene: Scene, flood: Flood,
                      acked: list[int], speakers: list[Person]) -> None:
    # the flood went on after the honest members were done: wait for the flooder's
    # next answer, then stop it
    await until(lambda: flood.answers and flood.answers[-1][0] > acked[-1],
                "an answer to the flooder after the honest messages")
    await flood.end()
    codes = flood.codes()
    assert "rate-limited" in codes
    assert "ok" in codes
    assert set(codes) <= {"ok", "rate-limited", "busy"}, set(codes)
    first_answer = flood.answers[0][0]
    assert first_answer < acked[0], "the flood was on before the honest messages"
    # every honest message reached everyone, once and in the order said
    said = [f"{p.identity} {i}" for p in speakers for i in range(3)]
    for person in [*scene.members]:
        await until(lambda p=person: [t for _, t in texts(p, scene.group_id) if t in said]
                    == [s for s in said if not s.startswith(p.identity)],
                    f"{person.identity} to receive the honest messages")
    m = metrics(service)
    refused = m.refusals.get(op="fetch-log", code="rate-limited")
    assert refused >= codes.count("rate-limited")
    assert m.rate_limited.get(network=flood.flooder.identity.split(":")[0]) == refused


async def test_a_matrix_flooder_is_rate_limited_while_others_carry_on(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    scene, flooder = await flood_scene(bridge_service, people, prosody_server, "matrix")
    flooder.member.link.request_timeout = 5.0  # type: ignore[attr-defined]
    order = itertools.count()
    flood = Flood(flooder, scene.group_id, order)
    # 50 requests a second, ten times its rate: more would choke the flooder's own
    # client (its replies come through the same connection pool as its sends)
    runner = asyncio.get_running_loop().create_task(flood.run(wave=5))
    await until(lambda: "rate-limited" in flood.codes(), "the flooder to be rate-limited")
    acked = await honest_during_flood(scene, flood, [scene.ma, scene.xa], order)
    await check_flood(bridge_service, scene, flood, acked, [scene.ma, scene.xa])
    await runner
    bot = bridge_service.bot
    assert bot is not None
    queue = bot.admission.queue
    # the flooder never had more than its own bound waiting; what did not fit was
    # dropped, counted, and never answered
    assert queue.high_water <= LIMITS.queue_per_sender + 4
    dropped = metrics(bridge_service).dropped.get(queue="matrix-requests", reason="sender")
    assert flood.lost >= dropped
    assert len(flood.answers) + flood.lost == flood.sent
    assert queue.waiting == 0 and queue.running == 0
    await scene.chat("after the Matrix flood")


async def test_an_xmpp_flooder_is_rate_limited_while_others_carry_on(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer) -> None:
    scene, flooder = await flood_scene(bridge_service, people, prosody_server, "xmpp")
    order = itertools.count()
    flood = Flood(flooder, scene.group_id, order)
    runner = asyncio.get_running_loop().create_task(flood.run(wave=10))
    await until(lambda: "rate-limited" in flood.codes(), "the flooder to be rate-limited")
    acked = await honest_during_flood(scene, flood, [scene.xb, scene.ma], order)
    await check_flood(bridge_service, scene, flood, acked, [scene.xb, scene.ma])
    await runner
    component = bridge_service.component
    assert component is not None
    queue = component.admission.queue
    assert queue.high_water <= LIMITS.queue_per_sender + 4
    # over XMPP every request is answered (a refusal costs one stanza)
    assert flood.lost == 0 and len(flood.answers) == flood.sent
    assert queue.waiting == 0 and queue.running == 0
    await scene.chat("after the XMPP flood")


# -- payload sizes are checked before anything is downloaded -------------------------


def media_downloads(synapse: SynapseServer, media_id: str) -> int:
    """GETs of one media id in the homeserver's own request log."""
    text = synapse.log_path.read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines()
               if "Processed request" in line and "GET /_matrix/client/v1/media/download/"
               in line and media_id in line)


async def test_maximal_matrix_media_references_are_refused_before_download(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        synapse_server: SynapseServer) -> None:
    """Four references declaring the largest payload each (128 MiB in all, the hub
    takes 1 MiB): too-large, and the homeserver saw no download of the media. The same
    reference declaring its true size is downloaded (the count is real)."""
    assert bridge_service.bot is not None
    mallory = await people("matrix", "mallory")
    link = mallory.member.link
    blob = secrets.token_bytes(600)
    ref = await link.media.upload(blob)  # type: ignore[attr-defined]
    media_id = ref.url.rsplit("/", 1)[1]
    huge = {**ref.to_json(), ns.K_MEDIA_SIZE: MAX_MEDIA_SIZE}

    async def send(content_blobs: dict[str, Any]) -> dict[str, Any]:
        request_id = secrets.token_hex(6)
        content = {ns.K_VERSION: ns.VERSION, ns.K_REQUEST_ID: request_id,
                   ns.K_OP: str(Op.SUBMIT_COMMIT),
                   ns.K_REPLY_DEVICE: str(mallory.client.device_id), **content_blobs}
        future = asyncio.get_running_loop().create_future()
        link._pending[request_id] = future  # type: ignore[attr-defined]
        sent = await mallory.client.to_device(nio.ToDeviceMessage(
            ns.REQUEST_TO_DEVICE, bridge_service.bot.user_id, "*", content))
        assert isinstance(sent, nio.ToDeviceResponse), sent
        return dict(await asyncio.wait_for(future, 30.0))

    reply = await send({key: huge for key in (ns.K_PAYLOAD, ns.K_WELCOME, ns.K_GROUP_INFO,
                                              ns.K_RATCHET_TREE)})
    assert (reply[ns.K_OK], reply[ns.K_CODE]) == (False, "too-large"), reply
    assert media_downloads(synapse_server, media_id) == 0
    assert metrics(bridge_service).refusals.get(op="submit-commit", code="too-large") == 1
    reply = await send({ns.K_PAYLOAD: ref.to_json()})  # its true size: fetched, then judged
    assert reply[ns.K_CODE] == "malformed"  # 600 random bytes are no commit
    await until(lambda: media_downloads(synapse_server, media_id) == 1,
                "the homeserver's log of the download")
    assert hashlib.sha256(blob).digest() == ref.sha256


async def test_maximal_xmpp_upload_references_are_refused_before_download(
        bridge_service: BridgeService, people: Any) -> None:
    """The same over XMPP: four upload references declaring 32 MiB each are refused
    too-large, and the (loopback) file server saw no GET; one declaring the true size
    is fetched."""
    server = BlobServer(secrets.token_bytes(700))
    await server.start()
    mallory = await people("xmpp", "mallory")
    digest = hashlib.sha256(server.body).hexdigest()
    try:
        def refs(size: int, fields: tuple[str, ...]) -> str:
            return "".join(f"<{name} url='{server.url(name)}' "
                           f"sha256='{digest}' size='{size}'/>" for name in fields)

        async def send(body: str) -> tuple[str, str]:
            assert bridge_service.component is not None
            iq = mallory.client.make_iq_set(  # type: ignore[attr-defined]
                ET.fromstring(f"<submit-commit xmlns='{NS}' request='{secrets.token_hex(4)}'>"
                              f"{body}</submit-commit>"),
                ito=bridge_service.component.config.jid)
            try:
                await iq.send(timeout=30)
            except IqError as exc:  # the refusal
                rejected = exc.iq["error"].xml.find(f"{{{NS}}}rejected")
                return (exc.iq["error"]["condition"],
                        rejected.get("code", "") if rejected is not None else "")
            return "result", ""

        fields = ("payload", "welcome", "group-info", "ratchet-tree")
        assert await send(refs(32 * MiB, fields)) == ("policy-violation", "too-large")
        assert server.gets == 0
        condition, code = await send(refs(len(server.body), ("payload",)))
        assert server.gets == 1 and code == "malformed", (condition, code)
    finally:
        await server.stop()

