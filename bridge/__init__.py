"""The bridge: one MLS group carried across an XMPP room and a Matrix room.

A package per role (see docs/ARCHITECTURE.md):

- :mod:`bridge.hub` -- the delivery service (RFC 9750 §5.2) and its store;
- :mod:`bridge.member` -- the member client and the content format;
- :mod:`bridge.relay` -- relay mode, for people without an MLS client;
- :mod:`bridge.app` -- the command line, configuration, logs, metrics, services, demo;
- :mod:`bridge.devservers` -- local Prosody and Synapse for the demo and the tests;
- :mod:`bridge.errors` -- the one error tree; :mod:`bridge.identities` -- network
  identities in MLS credentials; :mod:`bridge.credentials` -- the Authentication
  Service's X.509 credentials (the hub's CA, attestation, the checks members make);
  :mod:`bridge.reasons` -- why the hub removes someone, as its Remove proposals say.
"""
