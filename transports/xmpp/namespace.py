"""The XMPP wire binding's names: one project-owned namespace and its element names.

There is no published XEP for MLS; the binding lives under ``urn:mlsbridge:0``
(DESIGN.md, "Wire binding"). Every element below is in that namespace unless a
constant says otherwise. MLS bytes travel as standard (padded) base64 in XML text.
"""

from __future__ import annotations

from typing import Final

NS: Final = "urn:mlsbridge:0"
"""The project's namespace; also the disco#info feature a hub advertises."""

FEATURE: Final = NS

# Foreign namespaces the binding uses.
NS_STANZAS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"  # RFC 6120 §8.3 conditions
NS_SID: Final = "urn:xmpp:sid:0"  # XEP-0359 stanza-id / origin-id
NS_HINTS: Final = "urn:xmpp:hints"  # XEP-0334 <store/>
NS_UPLOAD: Final = "urn:xmpp:http:upload:0"  # XEP-0363
NS_MUC: Final = "http://jabber.org/protocol/muc"
NS_MUC_USER: Final = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN: Final = "http://jabber.org/protocol/muc#admin"  # XEP-0045 §9, §10

# IQ payloads: one element per request, named after the request (transports.interface.Op).
# The reply to any of them is an IQ result carrying <reply/>, or an IQ error with a
# stanza condition plus <rejected/>.
REPLY: Final = "reply"
ENTRY: Final = "entry"  # one log entry inside <reply/> (fetch-log, fetch-welcomes)
KEY_PACKAGE_ITEM: Final = "key-package"  # directory listing inside <reply/>
ROOM_ITEM: Final = "room"  # a (transport, room id) pair
REJECTED: Final = "rejected"  # inside <error/>: the hub's rejection code and epoch

# Messages from the hub.
DELIVERY: Final = "mls"  # groupchat fan-out and Welcome, <mls kind='...'/>
SYNC: Final = "sync"  # "check your log": sent to occupants after the hub reconnects
LEAVE: Final = "leave"  # in an unavailable presence: a deliberate departure
CLIENT: Final = "client"  # in a room-join presence: this occupant runs an MLS client

# Relay mode (the bridge decrypts for occupants without an MLS client): the feature a
# relayed room advertises, and the disco identity name that says so.
FEATURE_RELAY: Final = NS + "#relay"
ROOM_NAME: Final = "MLS room"
RELAY_ROOM_NAME: Final = "MLS room (relay mode: end-to-end encryption ends at the bridge)"

# Bytes fields (child elements holding base64 text, or an upload reference).
PAYLOAD: Final = "payload"
WELCOME: Final = "welcome"
GROUP_INFO: Final = "group-info"
RATCHET_TREE: Final = "ratchet-tree"
BYTES_FIELDS: Final = (PAYLOAD, WELCOME, GROUP_INFO, RATCHET_TREE)

# IQ type per request: reads are "get", everything else "set".
READ_OPS: Final = frozenset(
    {"hub-info", "fetch-log", "get-group-info", "list-key-packages", "fetch-welcomes",
     "fetch-media"}
)

TRANSPORT_NAME: Final = "xmpp"  # the transport name in (transport, room id) pairs
URI_SCHEME: Final = "xmpp:"  # identities are xmpp:<bare JID>
