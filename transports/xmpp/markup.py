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
  stateless file sharing falls back to): a file's URL.

A message's own id is its XEP-0359 ``<origin-id/>`` if it has one, else its ``id``
attribute. Parsing is lenient about what it does not know and strict about what it
takes: ids and emoji are bounded, an element without its id is ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from transports.xmpp.namespace import NS_SID

NS_CORRECT = "urn:xmpp:message-correct:0"
NS_REPLY = "urn:xmpp:reply:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_REACTIONS = "urn:xmpp:reactions:0"
NS_OOB = "jabber:x:oob"
MAX_ID = 256
MAX_REACTIONS = 16
MAX_EMOJI = 32
MAX_URL = 2048


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
    url = (oob.text or "").strip() if oob is not None else ""
    return Markup(own, _id(message.find(f"{{{NS_CORRECT}}}replace")),
                  _id(message.find(f"{{{NS_REPLY}}}reply")),
                  _id(message.find(f"{{{NS_RETRACT}}}retract")), _id(reactions), emoji,
                  url if url.startswith(("https://", "http://")) and len(url) <= MAX_URL
                  else "")


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


__all__ = ["NS_CORRECT", "NS_OOB", "NS_REACTIONS", "NS_REPLY", "NS_RETRACT", "Markup",
           "elements", "parse"]
