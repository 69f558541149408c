"""The KeyPackage directory (docs/SECURITY.md A15-A17). Findings: no quota, no length
limit and no lifetime cap (100-year lifetimes and 100 KB device names were accepted);
anyone could list and claim all of a user's KeyPackages so that no one could add
that user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.hub import HubConfig
from mls.codec import decode, encode
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage
from mls.messages.key_package import KeyPackage
from tests.authz.conftest import AuthzBench, authz_bench, who
from transports.interface import Inbound, Op

YEAR = 365 * 86400
CONFIG = HubConfig(max_key_packages_per_device=3, max_devices=2, claims_per_target=2)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[AuthzBench]:
    """The bench with small quotas (3 KeyPackages per device, 2 devices, 2 claims)."""
    async for value in authz_bench(tmp_path, CONFIG):
        yield value


def publish(bench: AuthzBench, name: str, owner: str | None = None, *, device: str = "",
            last_resort: bool = False, **options: object) -> Inbound:
    """``name`` publishes a KeyPackage naming ``owner`` (default: itself)."""
    credential = Credential.basic(who(owner or name).encode())
    bundle = bench.person(owner or name).key_package(credential=credential, **options)
    return bench.request(Op.PUBLISH_KEY_PACKAGE, name, device=device,
                         last_resort=last_resort,
                         payload=encode(MLSMessage.wrap(bundle.key_package)))


async def test_only_the_named_identity_publishes(small: AuthzBench) -> None:
    """A15: a stranger, a member, and the other network may not publish alice's."""
    for name in ("mallory", "bob", "carol", "eve"):
        await small.refused(publish(small, name, "alice"), "forbidden")
    await small.accepted(publish(small, "alice"))
    await small.accepted(publish(small, "eve"))  # a stranger publishes its own


async def test_lifetimes_device_names_and_sizes_are_capped(small: AuthzBench) -> None:
    """A15: a 100-year lifetime, a 100 KB device name and an oversized KeyPackage are
    refused with their own codes; the honest ones are accepted."""
    await small.refused(publish(small, "alice", lifetime=100 * YEAR), "lifetime-too-long")
    await small.refused(publish(small, "alice", device="d" * 100_000), "too-large")
    await small.refused(publish(small, "alice", device="d" * 65), "too-large")
    big = small.request(Op.PUBLISH_KEY_PACKAGE, "alice", payload=b"\x00" * 20_000)
    await small.refused(big, "too-large")
    await small.accepted(publish(small, "alice", device="d" * 64))
    listed = await small.accepted(small.request(Op.LIST_KEY_PACKAGES, "alice"))
    (kp,) = listed.key_packages
    assert kp.expires_at - 1_700_000_000 <= CONFIG.max_key_package_lifetime


async def test_key_packages_per_device_and_devices_are_bounded(small: AuthzBench) -> None:
    """A15: at most 3 KeyPackages per device and 2 devices (here), per identity."""
    for _ in range(3):
        await small.accepted(publish(small, "carol", device="phone"))
    await small.refused(publish(small, "carol", device="phone"), "quota")
    await small.accepted(publish(small, "carol", device="laptop"))
    await small.refused(publish(small, "carol", device="tablet"), "quota")
    await small.accepted(publish(small, "eve", device="tablet"))  # another identity


async def test_claims_name_a_group_of_the_claimer(small: AuthzBench) -> None:
    """A16: a claim names the group it adds the target to, and comes from a member of
    that group; a member on the other network claims across networks."""
    await small.accepted(publish(small, "eve", device="phone"))
    await small.accepted(publish(small, "eve", device="phone"))

    def claim(name: str, group_id: bytes) -> Inbound:
        return small.request(Op.CLAIM_KEY_PACKAGE, name, group_id=group_id,
                             target=who("eve"), cipher_suite=1)

    await small.refused(claim("bob", b""), "malformed")
    await small.refused(claim("mallory", small.group_id), "not-member")
    await small.refused(claim("eve", small.group_id), "not-member")
    await small.refused(claim("bob", b"\x05" * 32), "unknown-group")
    reply = await small.accepted(claim("bob", small.group_id))  # XMPP member, Matrix target
    assert reply.sender == who("eve") and reply.payload
    await small.accepted(claim("carol", small.group_id))


async def test_the_directory_cannot_be_exhausted_by_claims(small: AuthzBench) -> None:
    """A16: outstanding claims are bounded per (group, target) and per claimer; the
    last-resort KeyPackage is never consumed, so the target stays addable; the
    commit that adds the target clears its claims."""
    for _ in range(3):
        await small.accepted(publish(small, "eve"))
    await small.accepted(publish(small, "eve", device="spare", last_resort=True))

    def claim(name: str, group_id: bytes) -> Inbound:
        return small.request(Op.CLAIM_KEY_PACKAGE, name, group_id=group_id,
                             target=who("eve"), cipher_suite=1)

    first = await small.accepted(claim("bob", small.group_id))
    await small.accepted(claim("bob", small.group_id))
    await small.refused(claim("alice", small.group_id), "quota")  # 2 for (group, eve)
    # bob's own groups do not multiply his claims: 2 per claimer
    own, request = small.new_group("bob")
    await small.accepted(request)
    await small.refused(claim("bob", own.group_id), "quota")
    listed = await small.accepted(small.request(Op.LIST_KEY_PACKAGES, "eve"))
    assert len(listed.key_packages) == 2  # one ordinary and the last-resort one left
    # the claimed KeyPackage adds eve: the claims of (group, eve) are cleared
    key_package = decode(MLSMessage, first.payload).body
    assert isinstance(key_package, KeyPackage)
    await small.commit("bob", small.groups["bob"].commit(rng=small.draw,
                                                         now=1_700_000_000,
                                                         add=[key_package]))
    await small.accepted(claim("alice", small.group_id))
    # whatever is claimed, the last-resort KeyPackage stays
    carol_group, request = small.new_group("carol")
    await small.accepted(request)
    last = await small.accepted(claim("carol", carol_group.group_id))
    again = await small.accepted(claim("carol", carol_group.group_id))
    assert last.payload == again.payload
    listed = await small.accepted(small.request(Op.LIST_KEY_PACKAGES, "eve"))
    assert [kp.last_resort for kp in listed.key_packages] == [True]
