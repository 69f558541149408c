"""SIGTERM of the bridge process (hub + relay) while requests are in flight, three
times during a conversation with concurrent commits, with real Prosody and Synapse and
a relay-mode room: every stop exits 0 within the bound with no step cut short and no
leaked resource, every request in flight when a stop began ends with a reply (done, or
refused as "unavailable" and retried), and nothing accepted is lost or delivered twice
(the checks of :mod:`benchmarks.crash`)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.crash import CrashPlan, print_report, run_crash
from bridge.devservers.prosody import ProsodyServer
from bridge.devservers.synapse import SynapseServer


async def test_sigterm_mid_conversation_answers_in_flight_and_loses_nothing(
        prosody_server: ProsodyServer, synapse_server: SynapseServer,
        tmp_path: Path) -> None:
    report = await run_crash(prosody_server, synapse_server, tmp_path,
                             CrashPlan(seed=20240612, kills=3, ops_per_person=12,
                                       relay=True, graceful=True))
    print_report(report)
    assert len(report.kills) == 3
    assert all("(SIGTERM)" in stop and "exit 0" in stop for stop in report.kills)
    assert report.epoch >= 1 and report.acked > 0
