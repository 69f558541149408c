"""The root of the transports' errors, shared by XMPP and Matrix.

:class:`LinkError` is what a client-side transport raises when a request to the hub
could not be completed (the :class:`transports.interface.HubLink` contract).
"""

from __future__ import annotations


class TransportError(Exception):
    """Root of every error raised by ``transports``."""


class LinkError(TransportError):
    """A transport could not complete a request (disconnected, timed out, reply lost).

    The outcome is unknown: the hub may or may not have acted on the request.
    """
