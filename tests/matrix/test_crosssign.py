"""The bot's device cross-signed by its own account, over a real Synapse (Client-Server
API "Cross-signing"), and the canonical JSON it signs, against the spec's examples.

What another account sees is read with its own ``POST /keys/query`` and every
signature is checked here with ``cryptography`` over the canonical JSON written as
the spec's appendix writes it -- not with the module under test.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bridge.app.services.matrix import MatrixService, MatrixServiceConfig
from bridge.devservers.synapse import SynapseServer
from bridge.hub.store import SqliteStore
from tests.matrix.conftest import login
from transports.matrix.crosssign import (
    CrossSigning,
    CrossSigningKeys,
    CrossSigningStatus,
    canonical_json,
    keys_file,
    load_keys,
)

# -- canonical JSON: the appendix's own examples ("Canonical JSON" > "Examples") -------

SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    ("""{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""", '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
      '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
      '{"address":"123456789","medium":"msisdn"}]},"success":true}}'),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
    ('{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize(("given", "canonical"), SPEC_EXAMPLES)
def test_canonical_json_matches_the_spec_examples(given: str, canonical: str) -> None:
    assert canonical_json(json.loads(given)) == canonical.encode("utf-8")


@pytest.mark.parametrize("value", [{"a": 1.5}, {"a": 2 ** 53}, {"a": -(2 ** 53)},
                                   {"a": float("nan")}, {"a": b"bytes"}])
def test_canonical_json_refuses_what_it_cannot_hold(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


def test_keys_repr_shows_no_private_key() -> None:
    keys = CrossSigningKeys.generate("@bot:example.org")
    seeds = json.loads(keys.to_text())["keys"].values()
    assert keys.public("master") in repr(keys)
    assert not any(seed in repr(keys) for seed in seeds)


# -- over Synapse ------------------------------------------------------------------------

def spec_canonical(value: Any) -> bytes:
    """The appendix's Python for canonical JSON, as the spec gives it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True).encode("UTF-8")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verifies(obj: dict[str, Any], user_id: str, public: str) -> bool:
    """``obj`` carries a valid signature by ``public`` under ``user_id``."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public}")
    if signature is None:
        return False
    signed = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    Ed25519PublicKey.from_public_bytes(unb64(public)).verify(unb64(signature),
                                                             spec_canonical(signed))
    return True


def only_key(obj: dict[str, Any]) -> str:
    (key_id, public), = obj["keys"].items()
    assert key_id == f"ed25519:{public}"
    return str(public)


async def query(client: nio.AsyncClient, user_id: str) -> dict[str, Any]:
    """``POST /keys/query`` as ``client`` (another account) for ``user_id``."""
    response = await client.send(
        "POST", "/_matrix/client/v3/keys/query",
        json.dumps({"device_keys": {user_id: []}}),
        headers={"Authorization": f"Bearer {client.access_token}"})
    async with response:
        assert response.status == 200
        reply: dict[str, Any] = await response.json()
    return reply


class Bot:
    """The bridge's bot (``MatrixService``, bot mode, an olm store), started and
    stopped at will over the same files."""

    def __init__(self, server: SynapseServer, tmp_path: Path) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.user_id, self.password = server.new_user("xsignbot")
        self.olm_store = tmp_path / "bridge.db.olm"
        self.service: MatrixService | None = None
        self.store: SqliteStore | None = None

    async def start(self, device_id: str) -> CrossSigningStatus:
        self.store = await SqliteStore.open(self.tmp_path / "bridge.db")
        self.service = MatrixService(self.store, None, MatrixServiceConfig(
            homeserver=self.server.url, user=self.user_id, password=self.password,
            device_id=device_id, sync_timeout_ms=1000, olm_store=str(self.olm_store)))
        await self.service.start()
        status: CrossSigningStatus = self.megolm.cross_signing.status
        return status

    @property
    def megolm(self) -> Any:
        assert self.service is not None and self.service.bot is not None
        assert self.service.bot.megolm is not None
        return self.service.bot.megolm

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None
        if self.store is not None:
            await self.store.close()
            self.store = None


@pytest.fixture
async def bot(synapse_server: SynapseServer, tmp_path: Path) -> AsyncIterator[Bot]:
    made = Bot(synapse_server, tmp_path)
    try:
        yield made
    finally:
        await made.stop()


@pytest.fixture
async def observer(synapse_server: SynapseServer) -> AsyncIterator[nio.AsyncClient]:
    """Another account, asking the homeserver about the bot."""
    user_id, password = synapse_server.new_user("observer")
    client = await login(synapse_server, user_id, password)
    try:
        yield client
    finally:
        await client.close()


async def check_signed(observer: nio.AsyncClient, bot: Bot, device_id: str) -> str:
    """What another account sees: the bot's master and self-signing keys, the SSK
    signed by the master key, the device signed by the SSK. Returns the master key."""
    seen = await query(observer, bot.user_id)
    master = only_key(seen["master_keys"][bot.user_id])
    ssk_object = seen["self_signing_keys"][bot.user_id]
    assert ssk_object["usage"] == ["self_signing"]
    assert verifies(ssk_object, bot.user_id, master)
    ssk = only_key(ssk_object)
    device = seen["device_keys"][bot.user_id][device_id]
    assert device["keys"][f"ed25519:{device_id}"] == bot.megolm.fingerprint
    assert verifies(device, bot.user_id, ssk), "no self-signing signature on the device"
    return master


def secrets_of(path: Path) -> list[str]:
    return list(json.loads(path.read_text())["keys"].values())


async def test_the_bot_device_is_cross_signed_once_and_again_after_a_store_loss(
        bot: Bot, observer: nio.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = await bot.start("XSIGNONE")
    assert (first.keys_uploaded, first.device_signed, first.verified) == (True, True, True)
    assert not first.password_used  # the first upload needs no user-interactive auth
    master = await check_signed(observer, bot, "XSIGNONE")
    assert master == first.master
    path = keys_file(bot.olm_store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"master key {master}" in caplog.text  # the fingerprint is logged at start

    # a second start: nothing uploaded, the same master key
    await bot.stop()
    again = await bot.start("XSIGNONE")
    assert (again.keys_uploaded, again.device_signed, again.verified) == (False, False, True)
    assert await check_signed(observer, bot, "XSIGNONE") == master

    # the olm store lost: a new device (new id, new olm account) is signed at its start
    await bot.stop()
    bot.olm_store.unlink()
    fresh = await bot.start("XSIGNTWO")
    assert (fresh.keys_uploaded, fresh.device_signed, fresh.verified) == (False, True, True)
    assert await check_signed(observer, bot, "XSIGNTWO") == master

    for secret in secrets_of(path):
        assert secret not in caplog.text
        assert secret not in repr(bot.megolm.cross_signing)


async def test_lost_keys_are_replaced_with_the_password_or_the_device_stays_unverified(
        bot: Bot, observer: nio.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = await bot.start("XSIGNUIA")
    await bot.stop()

    # the keys file lost: the server holds a master key the bot no longer has;
    # replacing it needs user-interactive auth, answered with the bot's password
    path = keys_file(bot.olm_store)
    path.unlink()
    replaced = await bot.start("XSIGNUIA")
    assert (replaced.keys_uploaded, replaced.device_signed, replaced.verified) == \
        (True, True, True)
    assert replaced.password_used and replaced.master != first.master
    assert await check_signed(observer, bot, "XSIGNUIA") == replaced.master

    # without a password the device stays unverified, said in the log; the bot runs on
    path.unlink()
    caplog.clear()
    refused = await CrossSigning(bot.megolm.client, path, "").ensure()
    assert not refused.verified and not refused.keys_uploaded
    assert "user-interactive auth (no password configured)" in refused.reason
    assert "stays unverified" in caplog.text and "no password configured" in caplog.text
    seen = await query(observer, bot.user_id)
    assert only_key(seen["master_keys"][bot.user_id]) == replaced.master
    assert bot.service is not None and bot.service.runner is not None  # still serving
    for secret in [*secrets_of(path), bot.password]:
        assert secret not in caplog.text


def test_a_keys_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.olm.cross-signing"
    assert load_keys(path, "@bot:example.org")[1] is True  # new, written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(path, "@bot:example.org")[1] is False  # loaded
    with pytest.raises(ValueError, match="not @other"):
        load_keys(path, "@other:example.org")
    path.chmod(0o640)
    with pytest.raises(PermissionError):
        load_keys(path, "@bot:example.org")


# -- a homeserver answering nonsense never stops the bot ----------------------------------

GARBAGE = [
    (500, "not json"),
    (200, "[1, 2]"),
    (200, '{"device_keys": [], "master_keys": "x"}'),
    (200, '{"device_keys": {"@bot:localhost": {"DEV": "x"}}}'),
    (401, '{"flows": "x"}'),
]


@pytest.mark.parametrize(("status", "body"), GARBAGE)
async def test_nonsense_from_the_homeserver_leaves_the_device_unverified(
        tmp_path: Path, status: int, body: str, caplog: pytest.LogCaptureFixture) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/keys/{what:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = nio.AsyncClient(f"http://127.0.0.1:{port}", "@bot:localhost", device_id="DEV")
    client.access_token = "token"
    client.client_session = aiohttp.ClientSession()
    try:
        result = await CrossSigning(client, tmp_path / "keys", "pw").ensure()
    finally:
        await client.close()
        await runner.cleanup()
    assert not result.verified and result.reason
    assert "stays unverified" in caplog.text


async def test_an_unreachable_homeserver_leaves_the_device_unverified(tmp_path: Path) -> None:
    client = nio.AsyncClient("http://127.0.0.1:9", "@bot:localhost", device_id="DEV")
    client.access_token = "token"
    client.client_session = aiohttp.ClientSession()
    try:
        result = await CrossSigning(client, tmp_path / "keys").ensure()
    finally:
        await client.close()
    assert not result.verified and "POST /keys/query" in result.reason
