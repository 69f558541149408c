"""What a plain groupchat message says besides its body, read and written: the XEPs a
relayed room carries between legacy XMPP users and the group.

* XEP-0308 Last Message Correction: ``<replace id='...' xmlns='urn:xmpp:message-correct:0'/>``
  (the id of the message corrected; the body is the new text);
* XEP-0461 Message Replies: ``<reply to='room/nick' id='...' xmlns='urn:xmpp:reply:0'/>``;
* XEP-0424 Message Retraction: ``<retract id='...' xmlns='urn:xmpp:message-retract:1'/>``;
* XEP-0444 Message Reactions: ``<reactions id='...' xmlns='urn:xmpp:reactions:0'>`` with
  one ``<reaction>`` per emoji: the sender's whole set for that message (an empty set
  takes them all back);
* XEP-0066 Out of Band Data ``<x xmlns='jabber:x:oob'><url/></x>`` (what XEP-0447
  stateless file sharing falls back to, and what Conversations, Gajim and Dino send
  after an XEP-0363 upload, with the URL as the body): a file's URL;
* XEP-0447 Stateless File Sharing ``<file-sharing xmlns='urn:xmpp:sfs:0'>``: a XEP-0446
  ``<file/>`` (``<name/>``, ``<media-type/>``, ``<size/>``, an XEP-0300 ``<hash
  algo='sha-256'/>``) and ``<sources/>`` whose first XEP-0103 ``<url-data target/>``
  is taken (its metadata then describe the file; its URL wins over an OOB one).

A message's own id is its XEP-0359 ``<origin-id/>`` if it has one, else its ``id``
attribute. Parsing is lenient about what it does not know and strict about what it
takes: ids and emoji are bounded, an element without its id is ignored.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from transports.xmpp.namespace import NS_SID

NS_CORRECT = "urn:xmpp:message-correct:0"
NS_REPLY = "urn:xmpp:reply:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_REACTIONS = "urn:xmpp:reactions:0"
NS_OOB = "jabber:x:oob"
NS_SFS = "urn:xmpp:sfs:0"
NS_FILE = "urn:xmpp:file:metadata:0"
NS_URL_DATA = "http://jabber.org/protocol/url-data"
NS_HASHES = "urn:xmpp:hashes:2"
MAX_ID = 256
MAX_REACTIONS = 16
MAX_EMOJI = 32
MAX_URL = 2048
MAX_FILE_NAME = 255
MAX_MEDIA_TYPE = 255


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What XEP-0447 says about a shared file (each field empty/0/None when not said)."""

    name: str = field(default="", repr=False)
    media_type: str = ""
    size: int = 0
    sha256: bytes | None = None


@dataclass(frozen=True, slots=True)
class Markup:
    """The XEP elements of one groupchat message (see the module docstring)."""

    id: str = ""
    replaces: str = ""
    reply_to: str = ""
    retracts: str = ""
    reacts_to: str = ""
    reactions: tuple[str, ...] = ()
    url: str = field(default="", repr=False)
    file: FileInfo | None = None  # XEP-0447 metadata of the file at ``url``

    @property
    def empty(self) -> bool:
        """Nothing but (perhaps) an id: a body-less message of this kind says nothing."""
        return not (self.replaces or self.retracts or self.reacts_to or self.url)


def _id(element: ET.Element | None, attribute: str = "id") -> str:
    value = element.get(attribute, "") if element is not None else ""
    return value if 0 < len(value) <= MAX_ID else ""


def parse(message: ET.Element) -> Markup:
    """The markup of a ``<message/>`` element (:class:`Markup`)."""
    own = _id(message.find(f"{{{NS_SID}}}origin-id")) or _id(message)
    reactions = message.find(f"{{{NS_REACTIONS}}}reactions")
    emoji: tuple[str, ...] = ()
    if reactions is not None:
        emoji = tuple(dict.fromkeys(
            r.text.strip() for r in reactions.findall(f"{{{NS_REACTIONS}}}reaction")
            if r.text and 0 < len(r.text.strip()) <= MAX_EMOJI))[:MAX_REACTIONS]
    oob = message.find(f"{{{NS_OOB}}}x/{{{NS_OOB}}}url")
    url = _url((oob.text or "") if oob is not None else "")
    shared = _file_sharing(message)
    if shared is not None:
        url, info = shared
    return Markup(own, _id(message.find(f"{{{NS_CORRECT}}}replace")),
                  _id(message.find(f"{{{NS_REPLY}}}reply")),
                  _id(message.find(f"{{{NS_RETRACT}}}retract")), _id(reactions), emoji,
                  url, info if shared is not None else None)


def _url(text: str) -> str:
    url = text.strip()
    return url if url.startswith(("https://", "http://")) and len(url) <= MAX_URL else ""


def _file_sharing(message: ET.Element) -> tuple[str, FileInfo] | None:
    """(URL, metadata) of an XEP-0447 ``<file-sharing/>`` with an HTTP ``<url-data/>``
    source (XEP-0447 §3, XEP-0446 §2); None without one."""
    sharing = message.find(f"{{{NS_SFS}}}file-sharing")
    if sharing is None:
        return None
    url = next((found for source in sharing.iter(f"{{{NS_URL_DATA}}}url-data")
                if (found := _url(source.get("target", "")))), "")
    if not url:
        return None
    meta = sharing.find(f"{{{NS_FILE}}}file")
    if meta is None:
        return url, FileInfo()
    name = (meta.findtext(f"{{{NS_FILE}}}name") or "").strip()
    media_type = (meta.findtext(f"{{{NS_FILE}}}media-type") or "").strip()
    size = (meta.findtext(f"{{{NS_FILE}}}size") or "").strip()
    digest = None
    for hashed in meta.findall(f"{{{NS_HASHES}}}hash"):
        if hashed.get("algo") == "sha-256":
            try:
                digest = base64.b64decode((hashed.text or "").strip(), validate=True)
            except binascii.Error:
                digest = None
            digest = digest if digest is not None and len(digest) == 32 else None
    return url, FileInfo(name if len(name) <= MAX_FILE_NAME else "",
                         media_type if len(media_type) <= MAX_MEDIA_TYPE else "",
                         int(size) if size.isascii() and size.isdigit() and len(size) <= 18
                         else 0, digest)


def elements(*, replaces: str = "", reply_to: str = "", reply_author: str = "",
             retracts: str = "", reacts_to: str = "", reactions: Sequence[str] = (),
             url: str = "") -> list[ET.Element]:
    """The elements to add to an outgoing groupchat message (:func:`parse`'s inverse)."""
    out: list[ET.Element] = []
    if replaces:
        out.append(ET.Element(f"{{{NS_CORRECT}}}replace", {"id": replaces}))
    if reply_to:
        attrs = {"id": reply_to} | ({"to": reply_author} if reply_author else {})
        out.append(ET.Element(f"{{{NS_REPLY}}}reply", attrs))
    if retracts:
        out.append(ET.Element(f"{{{NS_RETRACT}}}retract", {"id": retracts}))
    if reacts_to:
        element = ET.Element(f"{{{NS_REACTIONS}}}reactions", {"id": reacts_to})
        for emoji in reactions:
            ET.SubElement(element, f"{{{NS_REACTIONS}}}reaction").text = emoji
        out.append(element)
    if url:
        oob = ET.Element(f"{{{NS_OOB}}}x")
        ET.SubElement(oob, f"{{{NS_OOB}}}url").text = url
        out.append(oob)
    return out


__all__ = ["NS_CORRECT", "NS_FILE", "NS_HASHES", "NS_OOB", "NS_REACTIONS", "NS_REPLY",
           "NS_RETRACT", "NS_SFS", "NS_URL_DATA", "FileInfo", "Markup", "elements", "parse"]
