"""Real XMPP (Prosody) and Matrix (Synapse) servers on 127.0.0.1 for integration tests.

The harness installs a missing server (apt-get for Prosody, a private virtualenv for
Synapse), renders the templates in ``config/``, runs the server as a child process and
stops it again. Nothing here is skipped: a server that cannot be installed or started
raises :class:`ServerSetupError` with the reason.
"""

from tests.servers.ports import ServerSetupError, free_port, wait_for_port

__all__ = ["ServerSetupError", "free_port", "wait_for_port"]
