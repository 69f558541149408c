"""Project-wide pytest configuration: the real-server fixtures (Prosody, Synapse)."""

pytest_plugins = ["tests.servers.conftest_plugin"]
