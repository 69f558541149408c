"""The hub's KeyPackage directory (RFC 9420 §10; RFC 9750 §5.1): KeyPackages are
published by the identity they name, validated first (``mls``'s
:func:`~mls.validate_key_package`, lifetimes judged at publication), claimed one at a
time (a last-resort KeyPackage is handed out but kept) and listed by identity.

Who may do what is :mod:`bridge.hub.authz`'s (docs/SECURITY.md A15-A17): the caller
passes its content rule for a parsed KeyPackage; the quotas (KeyPackages per device,
devices per identity, outstanding claims) are the store's, enforced in the writing
transaction with the limits of :class:`bridge.hub.policy.HubConfig`."""

from __future__ import annotations

from collections.abc import Callable

from bridge.errors import (
    AlreadyExists,
    Forbidden,
    Malformed,
    NoKeyPackage,
    QuotaExceeded,
    UnknownGroupRejection,
)
from bridge.hub import public_view
from bridge.hub.policy import HubConfig
from bridge.hub.store import Conflict, KeyPackageUnavailable, Store, StoreQuota, UnknownGroup
from mls import CredentialValidator, KeyPackage, MLSError, key_package_ref, validate_key_package
from transports.interface import Inbound, KeyPackageListing


async def publish(store: Store, request: Inbound, *, now: int,
                  credential_validator: CredentialValidator | None,
                  authorize: Callable[[Inbound, KeyPackage], None],
                  config: HubConfig) -> bytes:
    """Publish the request's KeyPackage for its sender's device; returns its ref.
    ``authorize`` raises if the sender may not publish it (A15)."""
    body = public_view.parse_message(request.payload, "KeyPackage").body
    if not isinstance(body, KeyPackage):
        raise Malformed("the payload is not a KeyPackage")
    cs = public_view.cipher_suite(body.cipher_suite)
    authorize(request, body)
    try:
        validate_key_package(cs, body, now=now, credential_validator=credential_validator)
    except MLSError as exc:
        if public_view.credential_refused(exc):
            raise Forbidden(f"the KeyPackage's credential is refused: {exc}") from exc
        raise Malformed(f"invalid KeyPackage: {exc}") from exc
    lifetime = body.leaf_node.lifetime
    assert lifetime is not None
    ref = key_package_ref(cs, body)
    try:
        await store.publish_key_package(
            request.sender, request.device or "default", cs.id, ref, request.payload,
            lifetime.not_after, last_resort=request.last_resort, now=now,
            max_per_device=config.max_key_packages_per_device, max_devices=config.max_devices)
    except Conflict as exc:
        raise AlreadyExists("this KeyPackage is already published") from exc
    except StoreQuota as exc:
        raise QuotaExceeded(str(exc)) from exc
    return ref


async def claim(store: Store, request: Inbound, *, now: int, config: HubConfig) -> bytes:
    """One of ``request.target``'s KeyPackages, claimed to add it to the request's group
    (the caller checked who may claim), within the outstanding-claims bound (A16)."""
    try:
        return await store.claim_key_package(
            request.target, request.cipher_suite or 1, now, device=request.device or None,
            group_id=request.group_id, claimer=request.sender,
            max_outstanding=config.claims_per_target,
            outstanding_since=now - config.claim_ttl)
    except KeyPackageUnavailable as exc:
        raise NoKeyPackage(str(exc)) from exc
    except StoreQuota as exc:
        raise QuotaExceeded(str(exc)) from exc
    except UnknownGroup as exc:
        raise UnknownGroupRejection(str(exc)) from exc


async def listing(store: Store, request: Inbound) -> tuple[KeyPackageListing, ...]:
    """The directory entries of the sender (A17: one's own only), one device if named."""
    user = request.sender
    infos = await store.list_key_packages(user, request.device or None)
    return tuple(KeyPackageListing(info.ref, info.user, info.device, info.cipher_suite,
                                   info.expires_at, info.last_resort) for info in infos)
