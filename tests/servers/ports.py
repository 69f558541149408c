"""Loopback port helpers and process plumbing (moved to :mod:`bridge.devservers.ports`,
which ``mls-bridge demo`` uses too; re-exported here for the tests)."""

from bridge.devservers.ports import (
    LOOPBACK,
    ServerSetupError,
    free_port,
    port_accepts,
    render_template,
    run_checked,
    stop_process,
    tail,
    wait_for_port,
)

__all__ = ["LOOPBACK", "ServerSetupError", "free_port", "port_accepts", "render_template",
           "run_checked", "stop_process", "tail", "wait_for_port"]
