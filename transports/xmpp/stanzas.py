"""The XML of the XMPP binding: slixmpp stanza plugins and the Inbound/Outbound codec.

Shapes (namespace ``urn:mlsbridge:0``, see :mod:`transports.xmpp.namespace`)::

    request  <submit-commit request='r1' group='B64'>           (element name = Op)
               <payload>B64</payload><welcome>B64</welcome>
               <group-info>B64</group-info><ratchet-tree>B64</ratchet-tree>
             </submit-commit>
             <report request='r2' group='B64' seq='7' reason='membership-tag'/>
    reply    <reply request='r1' group='B64' seq='7' epoch='3'> [bytes fields]
               [<room transport='xmpp' id='room@mls.example'/>]
               [<entry kind='commit' seq='5' epoch='2' sender='xmpp:a@example'>...</entry>]
               [<key-package ref='B64' user='xmpp:b@example' device='d' suite='1'
                             expires='1700000000' last-resort='false'/>]
             </reply>
    error    <rejected code='wrong-epoch' epoch='4'/> inside the IQ's <error/>
    delivery <mls kind='commit|proposal|application|welcome' group='B64' seq='7' epoch='3'
                  sender='xmpp:a@example' request='r1'> [bytes fields] [rooms] </mls>
    sync     <sync/>  in a headline from the room (the hub reconnected: fetch the logs)

A bytes field is either base64 text or, when it travels by XEP-0363, an empty element
``<payload url='http://...' sha256='HEX' size='N'/>``. Encoding and decoding are
two-phase so the async upload/download happens outside this module: encoders take a
``place`` callback (bytes -> bytes or :class:`UploadRef`), decoders a ``resolve``
callback (bytes or :class:`UploadRef` -> bytes), and :func:`collect_refs` lists what a
decoder will need.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar
from xml.etree import ElementTree as ET

from slixmpp.stanza import Error, Iq, Message
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

from transports.interface import Inbound, KeyPackageListing, Op, Outbound
from transports.xmpp import namespace as ns
from transports.xmpp.errors import WireError


@dataclass(frozen=True, slots=True)
class UploadRef:
    """A payload stored by XEP-0363: where to GET it, its SHA-256 (hex) and size."""

    url: str
    sha256: str
    size: int


BytesValue = bytes | UploadRef
Place = Callable[[bytes], BytesValue]
Resolve = Callable[[BytesValue], bytes]

_INBOUND_BYTES = {
    ns.PAYLOAD: "payload",
    ns.WELCOME: "welcome",
    ns.GROUP_INFO: "group_info",
    ns.RATCHET_TREE: "ratchet_tree",
}
_INBOUND_STR = {"request": "request_id", "target": "target", "device": "device",
                "transport": "transport", "room": "room_id", "reason": "reason"}
_INBOUND_INT = {"suite": "cipher_suite", "after": "after_seq", "limit": "limit",
                "seq": "seq"}
_OUTBOUND_BYTES = {ns.PAYLOAD: "payload", ns.RATCHET_TREE: "ratchet_tree"}
_OUTBOUND_STR = {"kind": "kind", "request": "request_id", "sender": "sender",
                 "code": "code", "reason": "reason"}
_OUTBOUND_INT = {"seq": "seq", "epoch": "epoch"}


def b64encode(data: bytes) -> str:
    """Standard padded base64 (RFC 4648 §4), as the binding puts bytes in XML text."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict base64 decoding; :class:`WireError` naming ``what`` when it is not."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"{what}: not base64") from exc


def _int_attr(el: ET.Element, name: str) -> int:
    raw = el.get(name)
    if raw is None or raw == "":
        return 0
    # Every integer of the binding fits in uint64 (at most 20 digits); a longer run of
    # digits is malformed -- and would make int() raise ValueError past 4300 digits.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) >= 1 << 64:
        raise WireError(f"<{_local(el.tag)} {name}='{raw[:20]}'>: not a uint64")
    return int(raw)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _q(name: str) -> str:
    return f"{{{ns.NS}}}{name}"


# -- slixmpp stanza plugins --------------------------------------------------------


class _MlsElement(ElementBase):
    """Common base: every binding element lives in :data:`ns.NS`."""

    namespace = ns.NS


class Request(_MlsElement):
    """Base of the per-op request elements (``<claim-key-package/>``...), in IQs."""

    name = "request"
    plugin_attrib = "mls_request"
    interfaces: ClassVar[set[str]] = {
        "request", "group", "target", "device", "transport", "room", "suite", "after",
        "limit", "last-resort", "seq", "reason",
    }


def _request_class(op: Op) -> type[Request]:
    attrib = "mls_" + op.value.replace("-", "_")
    return type(f"Request_{attrib}", (Request,), {"name": op.value, "plugin_attrib": attrib})


REQUEST_CLASSES: dict[Op, type[Request]] = {op: _request_class(op) for op in Op}


class Reply(_MlsElement):
    """``<reply/>``: the IQ result of any request."""

    name = ns.REPLY
    plugin_attrib = "mls_reply"
    interfaces: ClassVar[set[str]] = {"request", "group", "seq", "epoch", "sender"}


class Rejected(_MlsElement):
    """``<rejected code='...' epoch='N'/>`` inside an IQ ``<error/>``."""

    name = ns.REJECTED
    plugin_attrib = "mls_rejected"
    interfaces: ClassVar[set[str]] = {"code", "epoch"}


class Delivery(_MlsElement):
    """``<mls kind='...'/>``: a commit, proposal, application message or Welcome."""

    name = ns.DELIVERY
    plugin_attrib = "mls"
    interfaces: ClassVar[set[str]] = {"kind", "group", "seq", "epoch", "sender", "request"}


class Sync(_MlsElement):
    """``<sync/>``: the hub (re)connected; members fetch what they missed (``group``,
    when present, limits it to one group)."""

    name = ns.SYNC
    plugin_attrib = "mls_sync"
    interfaces: ClassVar[set[str]] = {"group"}


def register_plugins() -> None:
    """Register the binding's elements on slixmpp's stanzas (idempotent), and the
    RFC 6120 §8.3.3.12 condition ``policy-violation`` (too large, rate-limited), which
    slixmpp's :class:`Error` does not list (it would silently drop it)."""
    Error.conditions = Error.conditions | {"policy-violation"}
    for cls in REQUEST_CLASSES.values():
        register_stanza_plugin(Iq, cls)
    register_stanza_plugin(Iq, Reply)
    register_stanza_plugin(Error, Rejected)
    register_stanza_plugin(Message, Delivery)
    register_stanza_plugin(Message, Sync)


# -- bytes fields -------------------------------------------------------------------


def _put_bytes(parent: ET.Element, name: str, data: bytes, place: Place) -> None:
    if not data:
        return
    child = ET.SubElement(parent, _q(name))
    value = place(data)
    if isinstance(value, UploadRef):
        child.set("url", value.url)
        child.set("sha256", value.sha256)
        child.set("size", str(value.size))
    else:
        child.text = b64encode(value)


def _bytes_value(child: ET.Element) -> BytesValue:
    url = child.get("url")
    if url:
        digest = (child.get("sha256") or "").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise WireError(f"<{_local(child.tag)} url=...>: missing or bad sha256")
        return UploadRef(url=url, sha256=digest, size=_int_attr(child, "size"))
    return b64decode(child.text or "", f"<{_local(child.tag)}>")


def _get_bytes(parent: ET.Element, name: str, resolve: Resolve) -> bytes:
    child = parent.find(_q(name))
    return b"" if child is None else resolve(_bytes_value(child))


def collect_refs(root: ET.Element) -> list[UploadRef]:
    """Every upload reference under ``root`` (to download before decoding)."""
    refs: list[UploadRef] = []
    for child in root.iter():
        if _local(child.tag) in ns.BYTES_FIELDS and child.get("url"):
            value = _bytes_value(child)
            if isinstance(value, UploadRef):
                refs.append(value)
    return refs


def declared_size(root: ET.Element) -> int:
    """The payload bytes the fields directly under ``root`` declare, without fetching
    anything: base64 text its decoded length, an upload reference its ``size``."""
    total = 0
    for child in root:
        if _local(child.tag) in ns.BYTES_FIELDS:
            total += _int_attr(child, "size") if child.get("url") \
                else len("".join((child.text or "").split()).rstrip("=")) * 3 // 4
    return total


def blobs_of(value: Inbound | Outbound) -> Iterator[bytes]:
    """The bytes fields of a request or reply (nested entries included)."""
    if isinstance(value, Inbound):
        yield from (value.payload, value.welcome, value.group_info, value.ratchet_tree)
        return
    yield from (value.payload, value.ratchet_tree)
    for entry in value.entries:
        yield from blobs_of(entry)


def inline(data: bytes) -> BytesValue:
    """The ``place`` callback that never uploads."""
    return data


def no_refs(value: BytesValue) -> bytes:
    """The ``resolve`` callback for stanzas that must not carry upload references."""
    if isinstance(value, UploadRef):
        raise WireError("unexpected upload reference")
    return value


# -- requests -----------------------------------------------------------------------


def encode_request(request: Inbound, place: Place = inline) -> ET.Element:
    """The IQ child for ``request`` (``sender`` is not sent: the network supplies it)."""
    el = ET.Element(_q(Op(request.op).value))
    if request.group_id:
        el.set("group", b64encode(request.group_id))
    for attr, field_name in _INBOUND_STR.items():
        if value := getattr(request, field_name):
            el.set(attr, value)
    for attr, field_name in _INBOUND_INT.items():
        if number := getattr(request, field_name):
            el.set(attr, str(number))
    if request.last_resort:
        el.set("last-resort", "true")
    for child, field_name in _INBOUND_BYTES.items():
        _put_bytes(el, child, getattr(request, field_name), place)
    return el


def decode_request(el: ET.Element, sender: str, resolve: Resolve = no_refs, *,
                   network: str = "") -> Inbound:
    """The :class:`Inbound` an IQ child asks for, with the network-given ``sender`` and
    ``network`` (:func:`transports.xmpp.requests.requester`)."""
    try:
        op = Op(_local(el.tag))
    except ValueError as exc:
        raise WireError(f"unknown request <{_local(el.tag)}>") from exc
    fields: dict[str, Any] = {"op": op.value, "sender": sender, "network": network}
    if group := el.get("group"):
        fields["group_id"] = b64decode(group, "group")
    for attr, field_name in _INBOUND_STR.items():
        fields[field_name] = el.get(attr, "")
    for attr, field_name in _INBOUND_INT.items():
        fields[field_name] = _int_attr(el, attr)
    fields["last_resort"] = el.get("last-resort", "false") in ("true", "1")
    for child, field_name in _INBOUND_BYTES.items():
        fields[field_name] = _get_bytes(el, child, resolve)
    return Inbound(**fields)


# -- replies, entries and deliveries --------------------------------------------------


def _fill_outbound(el: ET.Element, out: Outbound, place: Place, *, with_kind: bool) -> None:
    if out.group_id:
        el.set("group", b64encode(out.group_id))
    for attr, field_name in _OUTBOUND_STR.items():
        if attr == "kind" and not with_kind:
            continue
        if attr in ("code", "reason"):
            continue  # rejections travel as IQ errors
        if value := getattr(out, field_name):
            el.set(attr, value)
    for attr, field_name in _OUTBOUND_INT.items():
        if number := getattr(out, field_name):
            el.set(attr, str(number))
    for child, field_name in _OUTBOUND_BYTES.items():
        _put_bytes(el, child, getattr(out, field_name), place)
    for transport, room_id in out.rooms:
        ET.SubElement(el, _q(ns.ROOM_ITEM), {"transport": transport, "id": room_id})
    for entry in out.entries:
        _fill_outbound(ET.SubElement(el, _q(ns.ENTRY)), entry, place, with_kind=True)
    for kp in out.key_packages:
        ET.SubElement(el, _q(ns.KEY_PACKAGE_ITEM), {
            "ref": b64encode(kp.ref), "user": kp.user, "device": kp.device,
            "suite": str(kp.cipher_suite), "expires": str(kp.expires_at),
            "last-resort": "true" if kp.last_resort else "false",
        })


def _read_outbound(el: ET.Element, resolve: Resolve, kind: str,
                   nested: bool = False) -> Outbound:
    """One reply or delivery; its ``<entry/>`` children (a log page) are entries of
    their own and hold none (a nested one is a :class:`WireError`, never recursion)."""
    if nested and el.find(_q(ns.ENTRY)) is not None:
        raise WireError("<entry/> inside an <entry/>")
    fields: dict[str, Any] = {"kind": el.get("kind", kind) or kind}
    if group := el.get("group"):
        fields["group_id"] = b64decode(group, "group")
    for attr in ("request", "sender"):
        fields[_OUTBOUND_STR[attr]] = el.get(attr, "")
    for attr, field_name in _OUTBOUND_INT.items():
        fields[field_name] = _int_attr(el, attr)
    for child, field_name in _OUTBOUND_BYTES.items():
        fields[field_name] = _get_bytes(el, child, resolve)
    fields["rooms"] = tuple(
        (room.get("transport", ""), room.get("id", "")) for room in el.findall(_q(ns.ROOM_ITEM))
    )
    fields["entries"] = tuple(
        _read_outbound(entry, resolve, "", nested=True) for entry in el.findall(_q(ns.ENTRY))
    )
    fields["key_packages"] = tuple(_read_listing(kp) for kp in el.findall(_q(ns.KEY_PACKAGE_ITEM)))
    return Outbound(**fields)


def _read_listing(el: ET.Element) -> KeyPackageListing:
    return KeyPackageListing(
        ref=b64decode(el.get("ref", ""), "key-package ref"),
        user=el.get("user", ""),
        device=el.get("device", ""),
        cipher_suite=_int_attr(el, "suite"),
        expires_at=_int_attr(el, "expires"),
        last_resort=el.get("last-resort") == "true",
    )


def encode_reply(reply: Outbound, place: Place = inline) -> ET.Element:
    """``<reply/>`` for an accepted request (rejections use :func:`encode_rejected`)."""
    el = ET.Element(_q(ns.REPLY))
    _fill_outbound(el, reply, place, with_kind=False)
    return el


def decode_reply(el: ET.Element, resolve: Resolve = no_refs) -> Outbound:
    """The ok :class:`Outbound` a ``<reply/>`` carries."""
    return _read_outbound(el, resolve, "reply")


def encode_delivery(delivery: Outbound, place: Place = inline) -> ET.Element:
    """``<mls kind='...'/>`` for a groupchat fan-out or a Welcome."""
    el = ET.Element(_q(ns.DELIVERY))
    _fill_outbound(el, delivery, place, with_kind=True)
    return el


def decode_delivery(el: ET.Element, resolve: Resolve = no_refs) -> Outbound:
    """The delivery an ``<mls/>`` element carries."""
    out = _read_outbound(el, resolve, "")
    if not out.kind or out.kind == "reply":
        raise WireError("<mls/> without a delivery kind")
    return out


def encode_rejected(code: str, epoch: int) -> ET.Element:
    """``<rejected code='...' epoch='N'/>`` for an IQ error."""
    el = ET.Element(_q(ns.REJECTED), {"code": code})
    if epoch:
        el.set("epoch", str(epoch))
    return el


def decode_rejected(el: ET.Element | None, text: str, condition: str,
                    request_id: str) -> Outbound:
    """The refused reply an IQ error stands for (``condition`` when no <rejected/>)."""
    code = el.get("code", condition) if el is not None else condition
    epoch = _int_attr(el, "epoch") if el is not None else 0
    return Outbound(kind="reply", request_id=request_id, ok=False, code=code,
                    reason=text or code, epoch=epoch)


# Hub rejection codes (bridge.errors.Rejection.code) -> RFC 6120 §8.3.3 conditions.
CONDITIONS: dict[str, tuple[str, str]] = {
    "wrong-epoch": ("conflict", "cancel"),
    "stale-epoch": ("conflict", "cancel"),
    "conflict": ("conflict", "cancel"),
    "malformed": ("bad-request", "modify"),
    "too-large": ("policy-violation", "modify"),
    "unknown-group": ("item-not-found", "cancel"),
    "no-key-package": ("item-not-found", "cancel"),
    "not-member": ("forbidden", "auth"),
    "forbidden": ("forbidden", "auth"),
    "not-moderator": ("forbidden", "auth"),
    "join-policy": ("forbidden", "auth"),
    "unauthenticated": ("not-authorized", "auth"),
    "quota": ("resource-constraint", "wait"),
    "lifetime-too-long": ("not-acceptable", "modify"),
    "unsupported": ("feature-not-implemented", "cancel"),
    "unavailable": ("internal-server-error", "wait"),
    "bad-signature": ("not-acceptable", "modify"),
    "invalid-commit": ("not-acceptable", "modify"),
    "invalid-group": ("not-acceptable", "modify"),
    "invalid-proposal": ("not-acceptable", "modify"),
    "private-proposal": ("not-acceptable", "modify"),
    "rate-limited": ("policy-violation", "wait"),
    "busy": ("resource-constraint", "wait"),
    "proposals-not-covered": ("not-acceptable", "modify"),
}


def condition_for(code: str) -> tuple[str, str]:
    """The (condition, error type) of a rejection code; ``not-acceptable`` otherwise."""
    return CONDITIONS.get(code, ("not-acceptable", "modify"))


def find(stanza: ElementBase, name: str) -> ET.Element | None:
    """The first child of ``stanza`` named ``name`` in the binding's namespace."""
    return stanza.xml.find(_q(name))


def find_request(stanza: ElementBase) -> ET.Element | None:
    """The request element (any op) of an IQ, if it has one."""
    for child in stanza.xml:
        if child.tag.startswith(f"{{{ns.NS}}}") and _local(child.tag) in Op._value2member_map_:
            return child
    return None
