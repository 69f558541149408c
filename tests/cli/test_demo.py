"""``mls-bridge demo`` end to end: real Prosody and Synapse, XMPP and Matrix members in
one MLS group, no plaintext in the bridge's database, everything stopped afterwards."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bridge.app.demo import scan_files
from tests.cli.conftest import cli


def test_scan_finds_plaintext_when_it_is_there(tmp_path: Path) -> None:
    (tmp_path / "bridge.db").write_bytes(b"\x00\x01 hello world \xff")
    files, found = scan_files(tmp_path, ("bridge.db", "bridge.db-wal"), ["hello", "absent"])
    assert files == [tmp_path / "bridge.db"] and found == ["hello"]


def test_demo_runs_a_bridged_conversation(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    began = time.monotonic()
    done = cli("demo", "--workdir", str(workdir), timeout=240)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("demo: OK — XMPP and Matrix members shared one MLS group"), lines
    assert any(line.startswith("[matrix] bob   sees:  alice: 'Hello Bob, Alice here on XMPP")
               for line in lines)
    assert any(line.startswith("[xmpp  ] alice sees:  bob: 'Hi Alice! Bob from Matrix")
               for line in lines)
    assert any(line.startswith("[xmpp  ] carol joined from the Welcome") for line in lines)
    assert any("plaintexts: 0 found" in line for line in lines)
    assert any("for them too: 0 found" in line for line in lines)
    assert "Traceback" not in done.stdout + done.stderr
    # the servers it started are gone
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True,
                               check=False)
    assert leftovers.stdout == "", leftovers.stdout
    print(f"demo took {elapsed:.1f} s")
