"""Self-test of the ts-mls driver: every command, ts-mls talking to itself, so that a
failure in an interop test points at our code, not at the harness."""

from __future__ import annotations

import pytest

from tests.interop.peer import TsMlsError, TsMlsPeer


def test_info_reports_pinned_version(ts_mls: TsMlsPeer) -> None:
    info = ts_mls.info()
    assert info["ts_mls_version"] == "1.6.4"
    assert set(range(1, 8)) <= set(info["suites"])


def test_every_command_between_ts_mls_members(ts_mls: TsMlsPeer) -> None:
    alice = ts_mls.create_group(1, b"alice", b"driver-self-test")
    bob_kp = ts_mls.generate_key_package(1, b"bob")
    added = ts_mls.add(alice, [bob_kp.key_package])
    assert added.welcome is not None
    bob = ts_mls.join(bob_kp.handle, added.welcome, added.ratchet_tree)
    assert ts_mls.decrypt(bob, ts_mls.encrypt(alice, b"hi")) == b"hi"

    update = ts_mls.update(bob, public=False)
    assert update.has_path is None  # a PrivateMessage commit: the driver cannot see it
    assert ts_mls.process(alice, update.commit)["kind"] == "commit"
    info, tree = ts_mls.group_info(alice, external_pub="native")
    carol, external_commit = ts_mls.external_join(1, b"carol", info, tree)
    for member in (alice, bob):
        assert ts_mls.process(member, external_commit)["epoch"] == update.epoch + 1

    proposal = ts_mls.propose_remove(carol, 1)
    for member in (alice, bob):
        assert ts_mls.process(member, proposal)["kind"] == "proposal"
    removal = ts_mls.commit(carol, merge=False)
    assert ts_mls.state(carol)["has_pending"]
    ts_mls.merge_pending(carol)
    ts_mls.process(alice, removal.commit)
    assert ts_mls.process(bob, removal.commit)["active"] == "removedFromGroup"

    assert ts_mls.epoch_authenticator(alice) == ts_mls.epoch_authenticator(carol)
    assert ts_mls.export(alice, b"x", b"y", 16) == ts_mls.export(carol, b"x", b"y", 16)
    members = [m["identity"] for m in ts_mls.state(alice)["members"]]
    assert members == [b"alice", b"carol"]

    ts_mls.process(carol, ts_mls.reinit(alice, b"next-group", 1))
    assert ts_mls.state(carol)["active"] == "suspendedPendingReinit"
    for handle in (alice, bob, carol):
        ts_mls.free(handle)


def test_errors_carry_the_reason(ts_mls: TsMlsPeer) -> None:
    with pytest.raises(TsMlsError, match="no group handle"):
        ts_mls.state("nonexistent")
    with pytest.raises(TsMlsError, match="unknown command"):
        ts_mls.request("no_such_command")
    assert ts_mls.info()["ts_mls_version"]  # the driver is still usable
