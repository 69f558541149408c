"""Cross-signing for the bot's own account, so that its Megolm device is verified by
its owner (Matrix Client-Server API, "End-to-End Encryption" > "Cross-signing";
appendices "Signing JSON", "Canonical JSON", "Unpadded Base64").

matrix-nio implements no cross-signing; this module does it for the bot (bot mode:
an application service's sender has no olm device to sign):

* three ed25519 key pairs (``cryptography``): the master signing key (MSK), the
  self-signing key (SSK, signs the user's own devices) and the user-signing key (USK,
  signs other users' master keys; the bot signs nobody, but clients expect the set).
  A key's id is ``ed25519:<unpadded base64 public key>`` and the SSK and USK objects
  carry the master key's signature ("Signing Details");
* the private keys are kept in a file of their own beside the olm store
  (:func:`keys_file`, mode 0600, refused when others may read it:
  :mod:`transports.private_files`), never in the hub's store, a log line, a
  ``repr`` or an exception; the master key's public half is logged at start;
* :meth:`CrossSigning.ensure`, on every start after nio uploaded the device keys:
  ``POST /keys/query`` for the bot's own user; the three public keys uploaded with
  ``POST /keys/device_signing/upload`` unless the server already holds exactly them
  (the first upload needs no user-interactive auth; replacing keys does: the
  ``m.login.password`` stage is answered with the bot's password when it has one);
  then the device object *as the server holds it* (the one ``/keys/query`` returned,
  without ``signatures`` and ``unsigned``) is signed with the SSK and sent with
  ``POST /keys/signatures/upload`` -- unless it already carries a valid SSK
  signature. A device whose keys on the server are not the olm account's is not
  signed (the bot vouches only for keys it holds). A new device (a new device id
  after the olm store was lost) gets signed at its first start.

Nothing here raises into the bot: a failure is logged as "the device stays
unverified" with the reason, and :attr:`CrossSigning.status` says what happened.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from transports.matrix.errors import HomeserverError
from transports.private_files import read_private, write_private

log = logging.getLogger(__name__)

API = "/_matrix/client/v3"
FILE_VERSION = 1
SUFFIX = ".cross-signing"  # the keys file: the olm store's path + this
USAGES = ("master", "self_signing", "user_signing")
#: what the spec's JSON numbers may be: integers in [-(2**53)+1, (2**53)-1]
MAX_INTEGER = 2 ** 53 - 1


# -- the appendices: unpadded base64, canonical JSON, signing JSON -----------------------

def unpadded_b64(data: bytes) -> str:
    """Standard base64 without ``=`` padding (appendix "Unpadded Base64")."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """Decode standard base64 with or without padding (the appendix: decoders SHOULD
    accept both); :class:`ValueError` if it is not base64."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def _integral(value: Any) -> Any:
    """``value`` with its numbers as the appendix wants them: integers (a float only
    if it is an integer, like ``1e10``; ``-0`` is ``0``) in the safe range."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError("canonical JSON has no fractions")
        value = int(value)
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            raise ValueError("canonical JSON integers are within +-(2**53 - 1)")
        return value
    if isinstance(value, Mapping):
        return {str(key): _integral(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_integral(item) for item in value]
    raise ValueError(f"canonical JSON cannot hold a {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """The appendix's "Canonical JSON": the shortest UTF-8 JSON encoding, object keys
    sorted by code point, integers only (no exponents, no ``-0``)."""
    return json.dumps(_integral(value), ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True, allow_nan=False).encode("utf-8")


def signed_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a signature covers: the object without ``signatures`` and ``unsigned``
    (appendix "Signing Details")."""
    return {key: value for key, value in obj.items() if key not in ("signatures", "unsigned")}


def sign(obj: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    """The unpadded-base64 ed25519 signature of ``obj``'s canonical JSON."""
    return unpadded_b64(key.sign(canonical_json(signed_part(obj))))


def has_signature(obj: Mapping[str, Any], user_id: str, public: str) -> bool:
    """Whether ``obj`` carries, under ``user_id``, a valid signature by the ed25519 key
    ``public`` (appendix "Checking for a Signature")."""
    signatures = obj.get("signatures")
    entry = signatures.get(user_id) if isinstance(signatures, Mapping) else None
    signature = entry.get(f"ed25519:{public}") if isinstance(entry, Mapping) else None
    if not isinstance(signature, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(b64decode(public)).verify(
            b64decode(signature), canonical_json(signed_part(obj)))
    except (ValueError, InvalidSignature):
        return False
    return True


# -- the keys and their file ---------------------------------------------------------------

def _public(key: Ed25519PrivateKey) -> str:
    return unpadded_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


class CrossSigningKeys:
    """The three private keys of one user (their ``repr`` shows public halves only)."""

    __slots__ = ("_keys", "user_id")

    def __init__(self, user_id: str, keys: Mapping[str, Ed25519PrivateKey]) -> None:
        self.user_id = user_id
        self._keys = {usage: keys[usage] for usage in USAGES}

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        return cls(user_id, {usage: Ed25519PrivateKey.generate() for usage in USAGES})

    def public(self, usage: str) -> str:
        """A key's public half, unpadded base64 (also its key id after ``ed25519:``)."""
        return _public(self._keys[usage])

    def key_object(self, usage: str) -> dict[str, Any]:
        """The CrossSigningKey object to upload: the SSK and USK signed by the MSK."""
        public = self.public(usage)
        obj: dict[str, Any] = {"user_id": self.user_id, "usage": [usage],
                               "keys": {f"ed25519:{public}": public}}
        if usage != "master":
            obj["signatures"] = {self.user_id: {
                f"ed25519:{self.public('master')}": sign(obj, self._keys["master"])}}
        return obj

    def sign_device(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """The device object as held by the server, with (only) the SSK's signature."""
        body = signed_part(device)
        body["signatures"] = {self.user_id: {
            f"ed25519:{self.public('self_signing')}": sign(body, self._keys["self_signing"])}}
        return body

    def to_text(self) -> str:
        seeds = {usage: unpadded_b64(key.private_bytes_raw())
                 for usage, key in self._keys.items()}
        return json.dumps({"version": FILE_VERSION, "user_id": self.user_id, "keys": seeds})

    @classmethod
    def from_text(cls, text: str) -> CrossSigningKeys:
        """Parse a keys file; :class:`ValueError` (naming no secret) if it is not one."""
        try:
            data = json.loads(text)
            if data["version"] != FILE_VERSION:
                raise ValueError(f"unknown version {data['version']!r}")
            keys = {usage: Ed25519PrivateKey.from_private_bytes(b64decode(data["keys"][usage]))
                    for usage in USAGES}
            return cls(str(data["user_id"]), keys)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a cross-signing keys file ({type(exc).__name__})") from None

    def __repr__(self) -> str:
        return f"CrossSigningKeys({self.user_id!r}, master={self.public('master')!r})"


def keys_file(olm_store: Path) -> Path:
    """Where the cross-signing keys of the bot whose olm store is ``olm_store`` live."""
    return olm_store.with_name(olm_store.name + SUFFIX)


def load_keys(path: Path, user_id: str) -> tuple[CrossSigningKeys, bool]:
    """The keys in ``path`` (0600), or new ones written there first; and whether they
    are new. :class:`PermissionError` if others may read the file, :class:`ValueError`
    if it is not a keys file or belongs to another user."""
    text = read_private(path, "the cross-signing keys file")
    if text is None:
        keys = CrossSigningKeys.generate(user_id)
        write_private(path, keys.to_text())  # before the upload: never keys we lost
        return keys, True
    keys = CrossSigningKeys.from_text(text)
    if keys.user_id != user_id:
        raise ValueError(f"{path} holds the keys of {keys.user_id}, not {user_id}")
    return keys, False


# -- the homeserver ---------------------------------------------------------------------------

@dataclass
class CrossSigningStatus:
    """What :meth:`CrossSigning.ensure` did."""

    master: str = ""  # the master key's public half (what users compare)
    keys_uploaded: bool = False  # /keys/device_signing/upload was accepted this time
    password_used: bool = False  # ... after the homeserver asked for the password stage
    device_signed: bool = False  # /keys/signatures/upload was accepted this time
    verified: bool = False  # the device carries a valid self-signing signature now
    reason: str = ""  # why not, when not


class CrossSigning:
    """Cross-sign the device of a logged-in nio ``client`` with an olm account, the keys
    kept in ``path`` (see the module docstring). ``password`` answers a
    user-interactive ``m.login.password`` stage; without it the device stays
    unverified when the server asks for one."""

    def __init__(self, client: nio.AsyncClient, path: Path, password: str = "") -> None:
        self.client = client
        self.path = path
        self._password = password
        self.status = CrossSigningStatus()

    def __repr__(self) -> str:
        return f"CrossSigning({self.client.user_id!r}, {str(self.path)!r})"

    async def ensure(self) -> CrossSigningStatus:
        """Keys on the server and this device signed; a no-op when both already are.
        Never raises: a failure is logged and kept in :attr:`status`."""
        self.status = CrossSigningStatus()
        device = str(self.client.device_id)
        try:
            await self._ensure()
        except (HomeserverError, OSError, ValueError) as exc:
            self.status.reason = str(exc)
        if self.status.verified:
            log.info("device %s of %s is cross-signed (%s); master key %s", device,
                     self.client.user_id, "signed now" if self.status.device_signed
                     else "already signed", self.status.master)
        else:
            log.warning("the bot's device %s stays unverified (not cross-signed): %s",
                        device, self.status.reason)
        return self.status

    async def _ensure(self) -> None:
        user = str(self.client.user_id)
        keys, new = load_keys(self.path, user)
        self.status.master = keys.public("master")
        log.info("cross-signing master key of %s: %s%s", user, self.status.master,
                 " (new)" if new else "")
        server = await self._query(user)
        if not all(_same_key(server, usage, keys) for usage in USAGES):
            await self._upload_keys(user, keys, server)
            self.status.keys_uploaded = True
            log.info("cross-signing keys of %s uploaded%s", user,
                     " (with password auth)" if self.status.password_used else "")
        device = self._own_device(server, user)
        if has_signature(device, user, keys.public("self_signing")):
            self.status.verified = True
            return
        failures = _mapping((await self._post("/keys/signatures/upload", {
            user: {str(self.client.device_id): keys.sign_device(device)}})).get("failures"))
        if failures:
            raise HomeserverError(f"the server refused the device signature: "
                                  f"{_errors(failures)}")
        self.status.device_signed = self.status.verified = True

    def _own_device(self, server: Mapping[str, Any], user: str) -> Mapping[str, Any]:
        """The device object the server holds for this device, checked to carry the
        olm account's own identity keys."""
        device_id = str(self.client.device_id)
        device = _mapping(_mapping(server.get("device_keys")).get(user)).get(device_id)
        if not isinstance(device, Mapping):
            raise HomeserverError(f"the server holds no keys for device {device_id}")
        olm = self.client.olm
        ours = dict(olm.account.identity_keys) if olm is not None else {}
        held = _mapping(device.get("keys"))
        for algorithm in ("ed25519", "curve25519"):
            if not ours.get(algorithm) or held.get(f"{algorithm}:{device_id}") != ours[algorithm]:
                raise HomeserverError(f"the server's {algorithm} key for device {device_id} "
                                      "is not the olm account's: not signing it")
        return device

    async def _query(self, user: str) -> Mapping[str, Any]:
        return await self._post("/keys/query", {"device_keys": {user: []}})

    async def _upload_keys(self, user: str, keys: CrossSigningKeys,
                           server: Mapping[str, Any]) -> None:
        """``/keys/device_signing/upload``, answering the password stage if asked."""
        if _mapping(server.get("master_keys")).get(user):
            log.warning("the server holds a master key for %s that is not the one in %s: "
                        "replacing the cross-signing keys (users will see a new identity)",
                        user, self.path)
        body: dict[str, Any] = {f"{usage}_key": keys.key_object(usage) for usage in USAGES}
        status, reply = await self._request("/keys/device_signing/upload", body)
        if status == 401 and "flows" in reply:
            if not self._password or not _password_flow(reply):
                raise HomeserverError(
                    "uploading the cross-signing keys needs user-interactive auth "
                    + ("(no password configured)" if not self._password
                       else "with no m.login.password stage offered"))
            body["auth"] = {"type": "m.login.password", "session": reply.get("session", ""),
                            "identifier": {"type": "m.id.user", "user": user},
                            "password": self._password}
            status, reply = await self._request("/keys/device_signing/upload", body)
            self.status.password_used = True
        if status != 200:
            raise HomeserverError(f"the cross-signing keys were refused: HTTP {status} "
                                  f"{reply.get('errcode', '')} {reply.get('error', '')}"
                                  .rstrip())

    async def _post(self, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        status, reply = await self._request(path, body)
        if status != 200:
            raise HomeserverError(f"POST {path}: HTTP {status} {reply.get('errcode', '')}")
        return reply

    async def _request(self, path: str, body: Mapping[str, Any]
                       ) -> tuple[int, Mapping[str, Any]]:
        """One authenticated POST; the status and the JSON object answered."""
        headers = {"Authorization": f"Bearer {self.client.access_token}",
                   "Content-Type": "application/json"}
        try:
            response = await self.client.send("POST", API + path, json.dumps(body),
                                              headers=headers)
            async with response:
                reply = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise HomeserverError(f"POST {path}: {type(exc).__name__}") from None
        return response.status, reply if isinstance(reply, Mapping) else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if the homeserver's JSON has an object there, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _same_key(server: Mapping[str, Any], usage: str, keys: CrossSigningKeys) -> bool:
    held = _mapping(_mapping(server.get(f"{usage}_keys")).get(keys.user_id))
    return bool(held.get("keys") == keys.key_object(usage)["keys"])


def _password_flow(reply: Mapping[str, Any]) -> bool:
    flows = reply.get("flows")
    return isinstance(flows, list) and any(
        isinstance(flow, Mapping) and flow.get("stages") == ["m.login.password"]
        for flow in flows)


def _errors(failures: Mapping[str, Any]) -> str:
    return "; ".join(f"{key}: {error.get('errcode', '')}"
                     for per_user in failures.values() if isinstance(per_user, Mapping)
                     for key, error in per_user.items() if isinstance(error, Mapping))


__all__ = ["CrossSigning", "CrossSigningKeys", "CrossSigningStatus", "b64decode",
           "canonical_json", "has_signature", "keys_file", "load_keys", "sign",
           "signed_part", "unpadded_b64"]
