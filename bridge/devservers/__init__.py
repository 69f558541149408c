"""Real XMPP (Prosody) and Matrix (Synapse) servers on 127.0.0.1 for development.

Used by the integration tests (the fixtures in ``tests/servers/conftest_plugin.py``)
and by ``mls-bridge demo``. A missing server is installed (apt-get for Prosody, a private
virtualenv for Synapse), ``config/*.tmpl`` is rendered into a private data directory,
and the server runs as a child process until stopped. Nothing here is skipped: a server
that cannot be installed or started raises :class:`ServerSetupError` with the reason.
"""

from bridge.devservers.ports import ServerSetupError, free_port, wait_for_port

__all__ = ["ServerSetupError", "free_port", "wait_for_port"]
