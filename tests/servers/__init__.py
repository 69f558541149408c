"""Real XMPP (Prosody) and Matrix (Synapse) servers on 127.0.0.1 for integration tests:
the session fixtures (:mod:`tests.servers.conftest_plugin`) over
:mod:`bridge.devservers`, and a smoke test of both servers.

The harness installs a missing server (apt-get for Prosody, a private virtualenv for
Synapse), renders the templates in ``config/``, runs the server as a child process and
stops it again. Nothing here is skipped: a server that cannot be installed or started
raises :class:`bridge.devservers.ports.ServerSetupError` with the reason.
"""
