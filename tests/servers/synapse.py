"""A throw-away Synapse on 127.0.0.1 (moved to :mod:`bridge.devservers.synapse`, which
``mls-bridge demo`` uses too; re-exported here for the tests)."""

from bridge.devservers.synapse import (
    START_TIMEOUT,
    TEMPLATE,
    AppServiceSpec,
    SynapseServer,
    ensure_synapse_installed,
    synapse_venv_dir,
    write_signing_key,
)

__all__ = ["START_TIMEOUT", "TEMPLATE", "AppServiceSpec", "SynapseServer",
           "ensure_synapse_installed", "synapse_venv_dir", "write_signing_key"]
