"""The application shell: the `mls-bridge` command and what it runs.

- :mod:`bridge.app.cli` -- ``mls-bridge run | check-config | generate-registration |
  demo``;
- :mod:`bridge.app.runtime` -- building the bridge from a configuration and running it
  (what ``run`` and ``demo`` share);
- :mod:`bridge.app.config` -- the TOML configuration, validated (its table walker:
  :mod:`bridge.app.tables`);
- :mod:`bridge.app.logs` -- structured logs, secrets masked, floods collapsed;
- :mod:`bridge.app.metrics` -- the Prometheus endpoint (refusals, drops, queues too);
- :mod:`bridge.app.signals` -- stop on SIGTERM/SIGINT;
- :mod:`bridge.app.services` -- the runnable services (hub + store + transports);
- :mod:`bridge.app.demo` -- the local demo.
"""
