"""The Matrix transport: MLS-encrypted Matrix rooms through a bot that is the hub.

Modules: :mod:`~transports.matrix.namespace` (every event type and key, one prefix),
:mod:`~transports.matrix.events` (content builders and parsers),
:mod:`~transports.matrix.media` (large payloads through the media repository),
:mod:`~transports.matrix.bot` (hub side, /sync), :mod:`~transports.matrix.appservice`
(hub side as an application service), :mod:`~transports.matrix.e2e` (Megolm in the
rooms the bot reads), :mod:`~transports.matrix.crosssign` (the bot's device
cross-signed by its account), :mod:`~transports.private_files` (the 0600
rule of the bot's secret files), :mod:`~transports.matrix.seen` (ids acted on,
across restarts), :mod:`~transports.matrix.client` (member side on matrix-nio),
:mod:`~transports.matrix.errors` (one root, ``MatrixTransportError``).
Like every transport it moves opaque bytes and never imports ``mls``.
"""
