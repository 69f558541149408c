"""Runnable services: the hub wired to a store and its transports in one process.

- :mod:`bridge.app.services.bridge` -- :class:`BridgeService`: one hub, both networks;
- :mod:`bridge.app.services.xmpp` -- the XEP-0114 component alone
  (``python -m bridge.app.services.xmpp``);
- :mod:`bridge.app.services.matrix` -- the Matrix bot or application service alone
  (``python -m bridge.app.services.matrix``);
- :mod:`bridge.app.services.identity` -- the hub's signing identity in its own 0600 file.
"""
