"""MLS over XMPP (namespace ``urn:mlsbridge:0``): the hub as an XEP-0114 component
(:mod:`transports.xmpp.component`, which admits its IQ requests in
:mod:`transports.xmpp.requests`, sends the hub's deliveries with
:mod:`transports.xmpp.fanout`, bounds what it keeps per user in
:mod:`transports.xmpp.limits`, holds Welcomes for offline users in
:mod:`transports.xmpp.welcomes`, keeps nicknames apart with
:mod:`transports.xmpp.nicks` and says what each room is -- disco#info, subject, relay
notices -- with :mod:`transports.xmpp.roominfo`) and members as slixmpp clients
(:mod:`transports.xmpp.client`), with XEP-0363 uploads for large payloads
(:mod:`transports.xmpp.upload`); slixmpp serialises with the escape of
:mod:`transports.xmpp.escape`. The XML lives in :mod:`transports.xmpp.stanzas`, its
names in :mod:`transports.xmpp.namespace`, the errors in :mod:`transports.xmpp.errors`.

Nothing here imports :mod:`mls`: MLS messages are opaque bytes, carried as
:class:`transports.interface.Inbound` / :class:`transports.interface.Outbound` values.
"""

from transports.xmpp import escape
from transports.xmpp.client import MLSClientPlugin, register
from transports.xmpp.component import ComponentConfig, MLSComponent
from transports.xmpp.errors import (
    ComponentAuthError,
    HubUnreachable,
    PayloadTooLarge,
    UploadError,
    WireError,
    XmppLinkError,
    XmppTransportError,
)
from transports.xmpp.namespace import NS
from transports.xmpp.welcomes import StateStore

escape.install()  # every stanza this process writes: see transports.xmpp.escape

__all__ = [
    "NS",
    "ComponentAuthError",
    "ComponentConfig",
    "HubUnreachable",
    "MLSClientPlugin",
    "MLSComponent",
    "PayloadTooLarge",
    "StateStore",
    "UploadError",
    "WireError",
    "XmppLinkError",
    "XmppTransportError",
    "register",
]
