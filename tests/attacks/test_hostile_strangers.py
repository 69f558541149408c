"""A stranger -- ``eve``, an account on one network that is in no group and no room --
attacks the directory, the hub's AS and a bridged group over the real Prosody and
Synapse (each attack from XMPP and from Matrix). Each is refused with the code
docs/SECURITY.md gives; the group, the victims' KeyPackages and the honest members
are unaffected (docs/ATTACKS.md tabulates them)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from typing import Any

from bridge.app.services.bridge import BridgeService
from bridge.credentials import AttestRequest
from bridge.devservers.prosody import ProsodyServer
from bridge.errors import HubRefused
from bridge.hub import faults
from bridge.hub.store import LogKind
from mls import MLSMessage, encode
from mls.crypto import suite
from mls.group.key_package import create_key_package
from mls.messages.credentials import Credential
from tests.attacks.conftest import NETWORKS, Scene, ask, bridged_scene, hub_state
from tests.bridging.conftest import Person
from tests.matrix.conftest import room_with_hub
from transports.interface import Op

CS = suite(1)


async def stranger_and_scene(service: BridgeService, people: Any, prosody: ProsodyServer,
                             network: str) -> tuple[Person, Scene, tuple[Any, ...]]:
    """The honest scene, eve on ``network``, and the hub's state of the group."""
    scene = await bridged_scene(service, people, prosody)
    eve = await people(network, "eve")
    await eve.member.refresh_credential()  # she holds a credential for herself
    return eve, scene, await hub_state(service, scene.group_id)


async def unchanged(scene: Scene, before: tuple[Any, ...], text: str) -> None:
    assert await hub_state(scene.service, scene.group_id) == before
    await scene.chat(text)


def key_package_bytes(credential: Credential, signature_priv: bytes) -> bytes:
    bundle = create_key_package(CS, credential, signature_priv, rng=os.urandom,
                                now=int(time.time()))
    return encode(MLSMessage.wrap(bundle.key_package))


# -- the KeyPackage directory ------------------------------------------------------------------

@NETWORKS
async def test_listing_someone_elses_key_packages_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    for victim in (scene.xb, scene.ma):
        reply = await ask(eve, Op.LIST_KEY_PACKAGES, target=victim.identity)
        assert (reply.ok, reply.code, reply.key_packages) == (False, "forbidden", ()), reply
    await unchanged(scene, before, "the directory keeps its secrets")


@NETWORKS
async def test_publishing_a_key_package_naming_another_identity_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve publishes KeyPackages for xb and for ma: a key of hers under their X.509
    certificates, and under basic credentials naming them."""
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    for victim in (scene.xb, scene.ma):
        listed = await bridge_service.store.list_key_packages(victim.identity)
        for credential in (victim.member.credential,
                           Credential.basic(victim.identity.encode())):
            reply = await ask(eve, Op.PUBLISH_KEY_PACKAGE,
                              payload=key_package_bytes(credential, eve.member._signature_priv))
            assert (reply.ok, reply.code) == (False, "forbidden"), reply
        assert await bridge_service.store.list_key_packages(victim.identity) == listed
    assert await bridge_service.store.list_key_packages(eve.identity) == []
    await unchanged(scene, before, "nobody publishes for others")


@NETWORKS
async def test_a_device_flood_of_key_packages_hits_the_quotas(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """With 3 KeyPackages per device and 2 devices (the operator's bounds), eve
    publishes a fourth on one device and a first on a third device: quota."""
    hub = bridge_service.hub
    hub.config = dataclasses.replace(hub.config, max_key_packages_per_device=3,
                                     max_devices=2)
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)

    async def publish(device: str) -> Any:
        return await ask(eve, Op.PUBLISH_KEY_PACKAGE, device=device, payload=key_package_bytes(
            eve.member.credential, eve.member._signature_priv))

    for device in ("one", "two"):
        assert [(await publish(device)).ok for _ in range(3)] == [True] * 3
        assert (await publish(device)).code == "quota"
    assert (await publish("three")).code == "quota"
    assert len(await bridge_service.store.list_key_packages(eve.identity)) == 6
    await unchanged(scene, before, "the directory is bounded")


# -- the hub's AS --------------------------------------------------------------------------------

@NETWORKS
async def test_attesting_another_identity_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve's own key, with a proof of possession naming xb (then ma)."""
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    for victim in (scene.xb, scene.ma):
        wanted = AttestRequest.create(CS, victim.identity, eve.member._signature_priv)
        reply = await ask(eve, Op.ATTEST, payload=encode(wanted))
        assert (reply.ok, reply.code, reply.payload) == (False, "forbidden", b""), reply
    await unchanged(scene, before, "the CA certifies requesters only")


@NETWORKS
async def test_attesting_a_key_one_does_not_hold_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve asks for a certificate of her identity on xb's signature key, the proof of
    possession signed by her own key."""
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    stolen = CS.signature_public_key(scene.xb.member._signature_priv)
    signature = CS.sign_with_label(eve.member._signature_priv, b"bridge attest",
                                   AttestRequest.tbs(eve.identity, CS.id, stolen))
    reply = await ask(eve, Op.ATTEST, payload=encode(AttestRequest(CS.id, stolen, signature)))
    assert (reply.ok, reply.code, reply.payload) == (False, "forbidden", b""), reply
    await unchanged(scene, before, "xb's key stays xb's")


# -- the group, from outside ----------------------------------------------------------------------

@NETWORKS
async def test_creating_a_group_on_a_room_of_the_other_network_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve registers a group of her own for a room of the other network that nobody
    configured: a Matrix room ma created (eve on XMPP), an XMPP room xb owns (eve on
    Matrix)."""
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    assert bridge_service.bot is not None
    if network == "xmpp":
        transport, room = "matrix", await room_with_hub(scene.ma, bridge_service.bot.user_id)
    else:
        transport, room = "xmpp", f"own{secrets.token_hex(3)}@{prosody_server.component_name}"
        await scene.xb.plugin.join_room(room)  # type: ignore[attr-defined]
    try:
        await eve.member.create_group(transport=transport, room_id=room)
        raise AssertionError("the group was created")
    except HubRefused as refusal:
        assert refusal.code == "forbidden"
    assert await bridge_service.store.room_group(transport, room) is None
    await unchanged(scene, before, "rooms are their networks'")


@NETWORKS
async def test_a_strangers_replayed_application_message_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve captured xa's application message and sends it into the group again."""
    eve, scene, _ = await stranger_and_scene(bridge_service, people, prosody_server, network)
    await scene.chat("captured")
    entries = await bridge_service.store.log_since(scene.group_id, 0, 100)
    captured = next(e for e in reversed(entries) if e.kind == LogKind.APPLICATION)
    before = await hub_state(bridge_service, scene.group_id)
    reply = await ask(eve, Op.SEND, group_id=scene.group_id, payload=captured.payload)
    assert (reply.ok, reply.code) == (False, "not-member"), reply
    await unchanged(scene, before, "one copy only")


@NETWORKS
async def test_a_strangers_fault_report_is_refused(
        bridge_service: BridgeService, people: Any, prosody_server: ProsodyServer,
        network: str) -> None:
    """Eve reports xa's commit (the one adding xb and ma) as faulty."""
    eve, scene, before = await stranger_and_scene(bridge_service, people, prosody_server,
                                                  network)
    entries = await bridge_service.store.log_since(scene.group_id, 0, 100)
    commit = next(e for e in entries if e.kind == LogKind.COMMIT)
    for reason in sorted(faults.FAULT_REASONS):
        reply = await ask(eve, Op.REPORT, group_id=scene.group_id, seq=commit.seq,
                          reason=reason)
        assert (reply.ok, reply.code) == (False, "not-member"), reply
    assert await bridge_service.store.fault_reporters(scene.group_id, commit.seq) == []
    await unchanged(scene, before, "no report from outside")
