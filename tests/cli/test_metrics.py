"""The Prometheus endpoint: counters that move when the hub accepts (and refuses)
commits, relays messages; the latency histogram; in-flight gauges."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

from bridge.app.metrics import HubMetrics, Metrics, MetricsServer
from tests.bridge.conftest import Harness, domain


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())  # in exposition order
    pattern = "^" + re.escape(name + (f"{{{want}}}" if want else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    def get() -> tuple[int, str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    return await asyncio.to_thread(get)


async def test_counters_move_when_the_hub_accepts_commits(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "hub.db")
    hub = await harness.start_hub()
    metrics = Metrics()
    observer = HubMetrics(metrics)
    hub.observer = observer
    server = MetricsServer(metrics, "127.0.0.1", 0)
    await server.start()
    try:
        status, ctype, before = await scrape(server.port)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert sample(before, "mls_bridge_commits_accepted_total") == 0

        alice = await harness.member("alice")
        bob = await harness.member("bob")
        group_id = await alice.create_group(
            transport="xmpp", room_id=harness.room("r@mls.example.org", alice))
        await alice.add_members(group_id, [domain("bob")])
        await harness.quiesce()
        _, _, after_add = await scrape(server.port)
        assert sample(after_add, "mls_bridge_commits_accepted_total") == 1
        assert sample(after_add, "mls_bridge_messages_relayed_total", kind="welcome") == 1

        await bob.send_text(group_id, "one")
        # two commits in one epoch: one is refused with wrong-epoch, then retried
        await asyncio.gather(alice.update(group_id), bob.update(group_id))
        await harness.quiesce()
        _, _, text = await scrape(server.port)
        assert sample(text, "mls_bridge_commits_accepted_total") == 3
        assert sample(text, "mls_bridge_commits_rejected_total", code="wrong-epoch") >= 1
        assert sample(text, "mls_bridge_messages_relayed_total", kind="application") == 1
        assert sample(text, "mls_bridge_messages_relayed_total", kind="commit") == 3
        assert sample(text, "mls_bridge_requests_total", op="send", result="ok") == 1
        assert sample(text, "mls_bridge_request_seconds_count", op="submit-commit") >= 4
        assert sample(text, "mls_bridge_request_seconds_bucket", op="submit-commit",
                      le="+Inf") >= 4
        assert sample(text, "mls_bridge_requests_in_flight") == 0
        assert sample(text, "mls_bridge_deliveries_in_flight") == 0
        assert "# TYPE mls_bridge_request_seconds histogram" in text
        assert await observer.drained(0.1)

        status, _, body = await scrape(server.port, "/healthz")
        assert (status, body) == (200, "ok\n")
    finally:
        await server.stop()
        await harness.close()
