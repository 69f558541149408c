"""A CI-sized load run through the bridge process and the real servers (the full size
is ``python -m benchmarks.load``): several bridged rooms with XMPP and Matrix members in
each, messages from everyone at once while commits race with them. Nothing may be lost
or delivered twice; no timing is asserted (the numbers are printed)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import LoadSpec, print_report, run_load
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer


async def test_small_load_loses_and_duplicates_nothing(
        prosody_server: ProsodyServer, synapse_server: SynapseServer,
        tmp_path: Path) -> None:
    spec = LoadSpec(rooms=4, members=5, messages=20, commits=2, pool=4, timeout=300.0)
    report = await run_load(prosody_server, synapse_server, tmp_path, spec)
    print_report(report)
    assert report.messages == spec.rooms * spec.messages
    assert report.deliveries == report.messages * (spec.members - 1)
    assert report.lost == 0 and report.duplicated == 0
    assert report.commits == spec.rooms * spec.commits
