"""Errors of the Matrix transport: one root, :class:`MatrixTransportError`.

A failed hub request on the member side is a :class:`MatrixLinkError`, which is a
:class:`transports.errors.LinkError` as the :class:`transports.interface.HubLink`
contract asks. Messages never carry MLS bytes or secrets.
"""

from __future__ import annotations

from transports.errors import LinkError, TransportError


class MatrixTransportError(TransportError):
    """Root of every error raised by ``transports.matrix``."""


class MalformedEvent(MatrixTransportError):
    """An event's content does not follow the binding (missing key, bad base64...)."""


class MediaError(MatrixTransportError):
    """A media upload/download failed, or downloaded bytes do not match their SHA-256."""


class RequestTooLarge(MatrixTransportError):
    """A request declares more payload bytes than the hub takes (nothing downloaded)."""


class HomeserverError(MatrixTransportError):
    """The homeserver refused or failed a client-server API call."""


class MatrixLinkError(MatrixTransportError, LinkError):
    """A member's request to the hub got no reply (timeout, send failure, closed link)."""
