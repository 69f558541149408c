"""Errors of the XMPP transport.

Every error a member sees from :class:`transports.xmpp.client.MLSClientPlugin` is a
:class:`transports.errors.LinkError` (the HubLink contract); the more specific classes
say why. :class:`XmppTransportError` is the root of the errors that are not about a
single request (configuration, component authentication, bad stanzas).
"""

from __future__ import annotations

from transports.errors import LinkError, TransportError


class XmppTransportError(TransportError):
    """Root of the XMPP transport's own errors."""


class WireError(XmppTransportError):
    """A stanza of the binding is malformed (bad base64, missing attribute...)."""


class RequestTooLarge(XmppTransportError):
    """A request declares more payload bytes than the hub takes (nothing downloaded)."""


class ComponentAuthError(XmppTransportError):
    """The server refused the component's handshake (wrong secret or name)."""


class XmppLinkError(LinkError):
    """A request to the hub over XMPP failed (timeout, disconnected, bounced)."""


class HubUnreachable(XmppLinkError):
    """The server bounced the request: the hub component is not connected."""


class PayloadTooLarge(XmppLinkError):
    """A payload exceeds the stanza limit and no XEP-0363 upload service is offered.

    Nothing was sent: payloads are never truncated.
    """


class UploadError(XmppLinkError):
    """An XEP-0363 upload or download failed, or the download's SHA-256 did not match."""
