"""Files across networks (docs/SECURITY.md A23): the hub fetches a Matrix ``mxc://``
file for a member of a group with a Matrix room -- nobody else, nothing else, nothing
too large, not too often -- and returns the bytes it was given without keeping them.

The Matrix media store here is a :class:`FakeMedia` that records what it was asked;
the real one (:class:`transports.matrix.media.MediaFetcher`) runs against Synapse in
``tests/e2e/test_three_terminals.py``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.hub import HubConfig
from tests.authz.conftest import MATRIX_ROOM, XMPP_ROOM, AuthzBench, authz_bench
from transports.errors import TransportError
from transports.interface import Inbound, Op
from transports.matrix.media import MediaFetcher, MediaRepository

CIPHERTEXT = b"\x8a" * 1000  # what a member uploaded: ciphertext, opaque to the hub
SHA = hashlib.sha256(CIPHERTEXT).digest()
URL = "mxc://example.org/AbCdEf"


class FakeMedia:
    """A :class:`transports.interface.MediaSource` for ``example.org``."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, bytes]] = []
        self.broken = False

    def owns(self, url: str) -> bool:
        return url.startswith("mxc://example.org/")

    async def fetch(self, url: str, size: int, sha256: bytes) -> bytes:
        self.asked.append((url, size, sha256))
        if self.broken:
            raise TransportError("the homeserver answered 404")
        return CIPHERTEXT


@pytest.fixture
async def media_bench(tmp_path: Path) -> AsyncIterator[tuple[AuthzBench, FakeMedia]]:
    config = HubConfig(max_media_size=4096, media_fetch_limit=3, media_fetch_window=60)
    async for bench in authz_bench(tmp_path, config):
        media = FakeMedia()
        bench.hub.authz.media["matrix"] = media
        yield bench, media


def fetch(bench: AuthzBench, name: str, url: str = URL, size: int = len(CIPHERTEXT),
          sha256: bytes = SHA) -> Inbound:
    return bench.request(Op.FETCH_MEDIA, name, group_id=bench.group_id, target=url,
                         limit=size, payload=sha256)


async def test_a_member_on_xmpp_gets_a_matrix_file(
        media_bench: tuple[AuthzBench, FakeMedia]) -> None:
    """A23: alice (XMPP) gets the bytes of carol's (Matrix) file; the hub keeps none."""
    bench, media = media_bench
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    before, delivered = await bench.snapshot(), len(bench.deliverer.delivered)
    reply = await bench.accepted(fetch(bench, "alice"))
    assert reply.payload == CIPHERTEXT
    assert media.asked == [(URL, len(CIPHERTEXT), SHA)]
    assert await bench.snapshot() == before
    assert len(bench.deliverer.delivered) == delivered


async def test_strangers_and_groups_without_a_matrix_room_get_nothing(
        media_bench: tuple[AuthzBench, FakeMedia]) -> None:
    """A23: a stranger of either network is refused; so is a member of a group with
    no Matrix room (the file cannot be the group's); the media store is never asked."""
    bench, media = media_bench
    await bench.attach(("xmpp", XMPP_ROOM))
    for name in ("mallory", "eve"):
        await bench.refused(fetch(bench, name), "not-member")
    await bench.refused(fetch(bench, "alice"), "forbidden")
    assert media.asked == []


async def test_only_the_bridges_own_homeserver_and_sizes_within_the_limit(
        media_bench: tuple[AuthzBench, FakeMedia]) -> None:
    """A23: other homeservers' media, URLs of no media store, sizes of 0 or over
    ``max_media_size``, and a digest that is not a SHA-256 are refused before any
    download."""
    bench, media = media_bench
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    for url in ("mxc://evil.example/AbCdEf", "https://example.org/file", "file:///etc/x"):
        await bench.refused(fetch(bench, "alice", url=url), "forbidden")
    for size in (0, 4097, 1 << 40):
        await bench.refused(fetch(bench, "alice", size=size), "too-large")
    await bench.refused(fetch(bench, "alice", sha256=SHA[:16]), "malformed")
    assert media.asked == []


async def test_fetches_are_rate_limited_per_identity(
        media_bench: tuple[AuthzBench, FakeMedia]) -> None:
    """A23: at most ``media_fetch_limit`` fetches per identity in the window; others
    are not affected; the window passing lifts it."""
    bench, media = media_bench
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    for _ in range(3):
        await bench.accepted(fetch(bench, "alice"))
    await bench.refused(fetch(bench, "alice"), "rate-limited")
    await bench.accepted(fetch(bench, "bob"))
    assert len(media.asked) == 4
    now = bench.hub.clock()
    bench.hub.clock = lambda: now + 61
    await bench.accepted(fetch(bench, "alice"))


async def test_a_failed_download_is_unavailable(
        media_bench: tuple[AuthzBench, FakeMedia]) -> None:
    """A23: the homeserver's failure is the member's ``unavailable``; nothing kept."""
    bench, media = media_bench
    await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
    media.broken = True
    await bench.refused(fetch(bench, "alice"), "unavailable")


async def test_a_hub_without_a_matrix_side_fetches_nothing(tmp_path: Path) -> None:
    """A23: without a media source (an XMPP-only bridge) the op is refused."""
    async for bench in authz_bench(tmp_path):
        await bench.attach(("xmpp", XMPP_ROOM), ("matrix", MATRIX_ROOM))
        await bench.refused(fetch(bench, "alice"), "forbidden")


def test_the_matrix_fetcher_owns_only_its_homeservers_media() -> None:
    """A23: ``mxc://<server_name>/<media id>`` and nothing else (no other server, no
    path tricks)."""
    fetcher = MediaFetcher(MediaRepository("http://127.0.0.1:1", "token"), "example.org")
    assert fetcher.owns("mxc://example.org/AbCdEf")
    for url in ("mxc://example.org/", "mxc://example.org/a/b", "mxc://evil.example/Ab",
                "mxc://example.org.evil/Ab", "https://example.org/Ab", "mxc://example.org"):
        assert not fetcher.owns(url), url

