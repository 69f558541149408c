"""The hub's KeyPackage directory (RFC 9420 §10; RFC 9750 §5.1): KeyPackages are
published by the identity they name, validated first (``mls``'s
:func:`~mls.validate_key_package`, lifetimes judged at publication), claimed one at a
time (a last-resort KeyPackage is handed out but kept) and listed by identity."""

from __future__ import annotations

from bridge.errors import AlreadyExists, Forbidden, Malformed, NoKeyPackage
from bridge.hub import public_view
from bridge.hub.store import Conflict, KeyPackageUnavailable, Store
from bridge.identities import identity_of
from mls import CredentialValidator, KeyPackage, MLSError, key_package_ref, validate_key_package
from transports.interface import Inbound, KeyPackageListing


async def publish(store: Store, request: Inbound, *, now: int,
                  credential_validator: CredentialValidator | None) -> bytes:
    """Publish the request's KeyPackage for its sender's device; returns its ref."""
    body = public_view.parse_message(request.payload, "KeyPackage").body
    if not isinstance(body, KeyPackage):
        raise Malformed("the payload is not a KeyPackage")
    cs = public_view.cipher_suite(body.cipher_suite)
    try:
        validate_key_package(cs, body, now=now, credential_validator=credential_validator)
    except MLSError as exc:
        raise Malformed(f"invalid KeyPackage: {exc}") from exc
    if identity_of(body.leaf_node.credential) != request.sender:
        raise Forbidden("a KeyPackage may only be published by the user it names")
    lifetime = body.leaf_node.lifetime
    assert lifetime is not None
    ref = key_package_ref(cs, body)
    try:
        await store.publish_key_package(
            request.sender, request.device or "default", cs.id, ref, request.payload,
            lifetime.not_after, last_resort=request.last_resort)
    except Conflict as exc:
        raise AlreadyExists("this KeyPackage is already published") from exc
    return ref


async def claim(store: Store, request: Inbound, *, now: int) -> bytes:
    """One of ``request.target``'s KeyPackages (the caller checked who may claim)."""
    if not request.target:
        raise Malformed("claim-key-package needs the target user")
    try:
        return await store.claim_key_package(request.target, request.cipher_suite or 1, now,
                                             device=request.device or None)
    except KeyPackageUnavailable as exc:
        raise NoKeyPackage(str(exc)) from exc


async def listing(store: Store, request: Inbound) -> tuple[KeyPackageListing, ...]:
    """The directory entries of ``target`` (or the sender), one device if named."""
    user = request.target or request.sender
    infos = await store.list_key_packages(user, request.device or None)
    return tuple(KeyPackageListing(info.ref, info.user, info.device, info.cipher_suite,
                                   info.expires_at, info.last_resort) for info in infos)
