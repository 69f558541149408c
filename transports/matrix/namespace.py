"""Every Matrix name the MLS binding uses, under ONE project-owned prefix.

No MSC for MLS in Matrix is merged (MSC2883, MSC4244 are proposals), so the binding
follows their closest conventions under :data:`PREFIX`. Nothing else in
``transports.matrix`` spells an event type or a content key: they all come from here.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "im.mlsbridge"
VERSION: Final = 1

# -- event types -----------------------------------------------------------------------
GROUP_STATE: Final = f"{PREFIX}.group"  # room state: group id, cipher suite, hub
COMMIT_EVENT: Final = f"{PREFIX}.commit"  # room event: an accepted commit with its seq
PROPOSAL_EVENT: Final = f"{PREFIX}.proposal"  # room event: a proposal with its seq
BATCH_EVENT: Final = f"{PREFIX}.batch"  # room event: consecutive log entries of one group
#                                         (what waited in the hub's Matrix lane), by seq
ENCRYPTED_EVENT: Final = "m.room.encrypted"  # room event: an MLS application message
MLS_ALGORITHM: Final = f"{PREFIX}.mls.v1"  # ``algorithm`` of those m.room.encrypted events
SEND_EVENT: Final = f"{PREFIX}.send"  # room event, member -> hub: a SEND posted into the
#                                        group's room (everyone there reads it at once)
ACK_TO_DEVICE: Final = f"{PREFIX}.ack"  # hub -> the group's Matrix members: the send
#                                        events of one room it logged, with their seqs
REQUEST_TO_DEVICE: Final = f"{PREFIX}.request"  # member -> hub: one Inbound
RESPONSE_TO_DEVICE: Final = f"{PREFIX}.response"  # hub -> member: the reply
WELCOME_TO_DEVICE: Final = f"{PREFIX}.welcome"  # hub -> joiner: a Welcome
DELIVERY_TO_DEVICE: Final = f"{PREFIX}.delivery"  # hub -> member: a log entry, when the
#                                                  group has no Matrix room to post it in
MEMBER_EVENT: Final = "m.room.member"
MESSAGE_EVENT: Final = "m.room.message"  # plain messages (relay mode only)
BRIDGE_STATE: Final = "m.bridge"  # MSC2346 bridge info: which room it is bridged to
RELAY_KEY: Final = f"{PREFIX}.relay"  # in relayed messages and m.bridge: relay details

# -- content keys (shared) ---------------------------------------------------------------
K_VERSION: Final = "v"
K_GROUP_ID: Final = "group_id"
K_SEQ: Final = "seq"  # a delivery's place in the log; in a report, the commit's
K_EPOCH: Final = "epoch"
K_SENDER: Final = "sender"
K_ALGORITHM: Final = "algorithm"
K_CIPHERTEXT: Final = "ciphertext"  # the MLS application message (PrivateMessage)
K_SENDER_KEY: Final = "sender_key"  # m.room.encrypted requires it (Megolm); "" for MLS
K_COMMIT: Final = "commit"
K_PROPOSAL: Final = "proposal"
K_WELCOME: Final = "welcome"
K_GROUP_INFO: Final = "group_info"
K_RATCHET_TREE: Final = "ratchet_tree"
K_PAYLOAD: Final = "payload"
K_ROOMS: Final = "rooms"
K_KIND: Final = "kind"
K_EVENT_ID: Final = "event_id"  # in an ack: the send event it confirms

# -- request / response keys -------------------------------------------------------------
K_REQUEST_ID: Final = "request_id"
K_OP: Final = "op"
K_REPLY_DEVICE: Final = "reply_device"  # where the hub sends the response
K_TARGET: Final = "target"
K_DEVICE: Final = "device"
K_TRANSPORT: Final = "transport"
K_ROOM_ID: Final = "room_id"
K_CIPHER_SUITE: Final = "cipher_suite"
K_AFTER_SEQ: Final = "after_seq"
K_LIMIT: Final = "limit"
K_LAST_RESORT: Final = "last_resort"
K_OK: Final = "ok"
K_CODE: Final = "code"
K_REASON: Final = "reason"  # a refusal's explanation; in a report, the fault's code
K_ENTRIES: Final = "entries"
K_KEY_PACKAGES: Final = "key_packages"
K_REF: Final = "ref"
K_USER: Final = "user"
K_EXPIRES_AT: Final = "expires_at"

# -- group state keys ----------------------------------------------------------------------
K_HUB: Final = "hub"  # the hub's identity URI
K_HUB_USER: Final = "hub_user"  # the hub's Matrix user id
K_HUB_DEVICE: Final = "hub_device"  # the hub's device id (requests go there)

# -- media references (payloads over the event size limit) -------------------------------
K_MEDIA_URL: Final = "url"  # mxc:// URI in the media repository
K_MEDIA_SHA256: Final = "sha256"  # unpadded base64 SHA-256 of the bytes
K_MEDIA_SIZE: Final = "size"
MEDIA_CONTENT_TYPE: Final = "application/octet-stream"

# -- identities -----------------------------------------------------------------------------
URI_SCHEME: Final = "matrix:u/"  # matrix:u/alice:example.org names @alice:example.org
TRANSPORT_NAME: Final = "matrix"  # the transport's name in room mappings

# -- limits ---------------------------------------------------------------------------------
EVENT_LIMIT: Final = 65536  # Matrix PDU limit (whole event JSON)
INLINE_BUDGET: Final = 48 * 1024  # conservative budget for one event's content JSON

# -- cursor names (persisted through the hub store's cursor API) -------------------------
CURSOR_SYNC: Final = f"{PREFIX}.sync"  # + ":" + bot user id
CURSOR_GROUP_ROOM: Final = f"{PREFIX}.state"  # + ":" + room id -> group state published
