"""``mls-bridge run`` as a process: ready, SIGTERM -> exit 0 with the store closed;
an unreachable server -> clear retry messages with backoff, never a traceback."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from bridge.devservers.ports import free_port
from bridge.devservers.prosody import ProsodyServer
from tests.cli.conftest import XMPP_SECRET, RunningBridge, minimal_config, write


def xmpp_config(tmp: Path, host: str, port: int, retry: str = "") -> Path:
    """XMPP only; the component secret comes from $TEST_SECRET."""
    return write(tmp / "bridge.toml", minimal_config(
        tmp, bridge="shutdown_timeout = 3.0",
        xmpp=f'jid = "mls.localhost"\nsecret_env = "TEST_SECRET"\nhost = "{host}"\n'
             f'port = {port}\nconnect_timeout = 10',
        metrics="port = 0", retry=retry or "initial_delay = 0.2\nmax_delay = 1.0"))


def test_run_serves_then_stops_gracefully_on_sigterm(prosody_server: ProsodyServer,
                                                     tmp_path: Path) -> None:
    config = xmpp_config(tmp_path, prosody_server.host, prosody_server.component_port)
    bridge = RunningBridge(config, env={"TEST_SECRET": prosody_server.component_secret})
    try:
        bridge.wait_for("bridge ready", timeout=40)
        assert (tmp_path / "bridge.db").exists()
        began = time.monotonic()
        bridge.proc.send_signal(signal.SIGTERM)
        code, output = bridge.finish(timeout=15)
    finally:
        bridge.kill()
    assert code == 0, output
    assert time.monotonic() - began < 8
    events = [e["event"] for e in bridge.events()]
    for expected in ("metrics listening", "store open", "xmpp server reachable",
                     "bridge ready", "signal received", "shutting down", "store closed"):
        assert expected in events, (expected, events)
    assert events.index("signal received") < events.index("store closed")
    assert "Traceback" not in output and prosody_server.component_secret not in output


def test_unreachable_server_is_retried_with_backoff(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    config = xmpp_config(tmp_path, "127.0.0.1", port)
    bridge = RunningBridge(config, env={"TEST_SECRET": XMPP_SECRET})
    try:
        retries = bridge.wait_for("xmpp unreachable, retrying", count=4, timeout=20)
        bridge.proc.send_signal(signal.SIGTERM)
        code, output = bridge.finish(timeout=10)
    finally:
        bridge.kill()
    assert code == 0, output
    assert [r["retry_in"] for r in retries[:4]] == [0.2, 0.4, 0.8, 1.0]  # doubling, capped
    assert [r["attempt"] for r in retries[:4]] == [1, 2, 3, 4]
    assert all(f"127.0.0.1:{port}" in r["reason"] and r["level"] == "warning"
               for r in retries)
    assert "Traceback" not in output and XMPP_SECRET not in output


def test_unreachable_after_the_last_attempt_exits_1_with_a_message(tmp_path: Path) -> None:
    config = xmpp_config(tmp_path, "127.0.0.1", free_port(),
                         retry="initial_delay = 0.05\nmax_delay = 0.1\nattempts = 3")
    bridge = RunningBridge(config, env={"TEST_SECRET": XMPP_SECRET})
    try:
        code, output = bridge.finish(timeout=20)
    finally:
        bridge.kill()
    assert code == 1
    assert "mls-bridge: xmpp: still unreachable after 3 attempts" in output
    assert "Connection refused" in output and "Traceback" not in output


def test_wrong_component_secret_exits_2(prosody_server: ProsodyServer, tmp_path: Path) -> None:
    config = xmpp_config(tmp_path, prosody_server.host, prosody_server.component_port)
    bridge = RunningBridge(config, env={"TEST_SECRET": "not-the-secret"})
    try:
        code, output = bridge.finish(timeout=40)
    finally:
        bridge.kill()
    assert code == 2, output
    assert "server refused component mls.localhost" in output
    assert "check xmpp.jid and xmpp.secret" in output and "Traceback" not in output


def test_unreachable_homeserver_is_retried_with_backoff(tmp_path: Path) -> None:
    port = free_port()
    config = write(tmp_path / "matrix.toml", minimal_config(
        tmp_path, xmpp="", retry="initial_delay = 0.1\nmax_delay = 0.2",
        matrix=f'homeserver = "http://127.0.0.1:{port}"\nserver_name = "localhost"\n'
               'user = "@hub:localhost"\npassword_env = "TEST_SECRET"'))
    bridge = RunningBridge(config, env={"TEST_SECRET": XMPP_SECRET})
    try:
        retries = bridge.wait_for("matrix unreachable, retrying", count=3, timeout=20)
        bridge.proc.send_signal(signal.SIGINT)
        code, output = bridge.finish(timeout=10)
    finally:
        bridge.kill()
    assert code == 0, output
    assert [r["retry_in"] for r in retries[:3]] == [0.1, 0.2, 0.2]
    assert all(r["reason"] == f"http://127.0.0.1:{port}: Connection refused" for r in retries)
    assert "Traceback" not in output and XMPP_SECRET not in output
