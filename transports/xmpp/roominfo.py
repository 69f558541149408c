"""What a room of the component says about itself, and to whom.

* disco#info (XEP-0030 §3): the ``conference`` identity, named :data:`ns.ROOM_NAME` or,
  in relay mode, :data:`ns.RELAY_ROOM_NAME`; the features ``urn:mlsbridge:0``, MUC and
  the room's properties (XEP-0045 §15.2.2), each true of every room of the component:
  ``muc_persistent`` (a room, its affiliations and its group outlive its occupants, in
  the store), ``muc_open`` (anyone may enter: occupancy grants nothing, only an
  affiliation is membership, and the MLS group decides who reads -- so *not*
  ``muc_membersonly``), ``muc_nonanonymous`` (real JIDs to everyone:
  :mod:`transports.xmpp.occupants`), ``muc_unsecured`` (no password); in relay mode
  also ``urn:mlsbridge:0#relay`` and ``urn:xmpp:mam:2`` (the component archives what
  the relay re-emits, XEP-0313) and the ``muc#roominfo``
  form (XEP-0045 §15.5.4, carried as XEP-0128 extended information) whose
  ``muc#roominfo_description`` and ``muc#roominfo_subject`` say that the bridge
  decrypts;
* the subject, sent to each occupant as it enters, last (XEP-0045 §7.2.15: clients
  take it as the end of the join) -- in a relayed room the relay notice -- after the
  relay notice itself as a message to every entering occupant, MLS client or not, so
  everyone in a relayed room is told;
* :meth:`RoomInfo.relay` / :meth:`RoomInfo.end_relay` switch a room,
  :meth:`RoomInfo.announce` tells everyone inside, :meth:`RoomInfo.send_plain` carries
  the relay's plain text.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast
from xml.etree import ElementTree as ET

from slixmpp import JID

from transports.xmpp import namespace as ns
from transports.xmpp.mam import NS_MAM

NS_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
NS_DATA = "jabber:x:data"  # XEP-0004
#: the room properties true of every room of the component (XEP-0045 §15.2.2)
ROOM_FEATURES = ("muc_persistent", "muc_open", "muc_nonanonymous", "muc_unsecured")


class RoomInfo:
    """The disco#info, subject and notices of the component's rooms."""

    def __init__(self, xmpp: Any, occupants: Callable[[str], list[str]]) -> None:
        self.xmpp = xmpp
        self.occupants = occupants  # room -> the full JIDs in it
        self.relayed: dict[str, str] = {}  # room (bare JID) -> its relay notice
        self._advertised: set[str] = set()  # rooms whose disco#info is published

    @property
    def disco(self) -> Any:
        return self.xmpp.plugin["xep_0030"]

    def advertise(self, room: str) -> None:
        """Publish the room's disco#info (see the module docstring), once."""
        if room in self._advertised:
            return
        self._advertised.add(room)
        notice = self.relayed.get(room)
        jid = JID(room)
        self.disco.add_identity(category="conference", itype="text", jid=jid,
                                name=ns.ROOM_NAME if notice is None else ns.RELAY_ROOM_NAME)
        self.disco.add_feature(ns.FEATURE, jid=jid)
        self.disco.add_feature(ns.NS_MUC, jid=jid)
        for feature in ROOM_FEATURES:
            self.disco.add_feature(feature, jid=jid)
        if notice is None:
            return
        self.disco.add_feature(ns.FEATURE_RELAY, jid=jid)
        self.disco.add_feature(NS_MAM, jid=jid)
        form = self.xmpp.plugin["xep_0004"].make_form(ftype="result")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_ROOMINFO)
        form.add_field(var="muc#roominfo_description", label="Description", value=notice)
        form.add_field(var="muc#roominfo_subject", label="Subject", value=notice)
        self._forms(jid).append(form.xml)

    def relay(self, room: str, notice: str) -> bool:
        """Relay mode for ``room``: its disco#info, subject and entry notice say
        ``notice``. Whether that changed anything (the caller then tells the occupants
        already inside: :meth:`announce`)."""
        room = JID(room).bare
        if self.relayed.get(room) == notice:
            return False
        self._withdraw(room)
        self.relayed[room] = notice
        self.advertise(room)
        return True

    def end_relay(self, room: str) -> bool:
        """``room`` is end to end again (its disco#info, and the subject to its
        occupants); whether it was relayed."""
        room = JID(room).bare
        if room not in self.relayed:
            return False
        self._withdraw(room)
        del self.relayed[room]
        self.advertise(room)
        self.send_subject(room, self.occupants(room))
        return True

    def announce(self, room: str, text: str) -> None:
        """A notice from the room to every occupant (MLS client or not)."""
        room = JID(room).bare
        self.send_plain(room, self.occupants(room), text)
        if room in self.relayed:
            self.send_subject(room, self.occupants(room))

    def _withdraw(self, room: str) -> None:
        """Take back what :meth:`advertise` published that relay mode changes."""
        self._advertised.discard(room)
        jid = JID(room)
        name = ns.RELAY_ROOM_NAME if room in self.relayed else ns.ROOM_NAME
        self.disco.del_identity(jid=jid, category="conference", itype="text", name=name)
        if room in self.relayed:
            self.disco.del_feature(jid=jid, feature=ns.FEATURE_RELAY)
            self.disco.del_feature(jid=jid, feature=NS_MAM)
            info = self._forms(jid)
            for form in info.findall(f"{{{NS_DATA}}}x"):
                info.remove(form)

    def _forms(self, jid: JID) -> ET.Element:
        """The element of the room's static disco#info that carries its data forms
        (XEP-0128 extended information)."""
        static = self.disco.static
        if not static.node_exists(jid, None):
            static.add_node(jid, None)
        return cast(ET.Element, static.get_node(jid, None)["info"].xml)

    def greet(self, room: str, occupant: str) -> None:
        """An occupant entered (its presences sent): in a relayed room the relay notice,
        then the subject, last (XEP-0045 §7.2.15)."""
        notice = self.relayed.get(room)
        if notice:
            self.send_plain(room, [occupant], notice)
        self.send_subject(room, [occupant])

    def send_plain(self, room: str, occupants: Iterable[str], body: str, nick: str = "",
                   stanza_id: str = "", extra: Sequence[ET.Element] = ()) -> None:
        """A plain-text groupchat message from ``room/nick`` (the room itself without a
        nick) to each of ``occupants`` (full JIDs) -- relay mode only; the caller
        decides who may read it. ``stanza_id`` (XEP-0359; random if empty) lets
        clients drop a re-send. ``extra``: elements to add (:mod:`transports.xmpp.markup`);
        with them the body may be empty (then none is sent)."""
        sent_from = f"{room}/{nick}" if nick else room
        stanza_id = stanza_id or f"notice-{uuid.uuid4().hex[:16]}"
        for occupant in occupants:
            message = self.xmpp.make_message(mto=occupant, mfrom=sent_from,
                                             mtype="groupchat", mbody=body or None)
            message["id"] = stanza_id
            for element in extra:
                message.xml.append(copy.deepcopy(element))
            ET.SubElement(message.xml, f"{{{ns.NS_SID}}}stanza-id",
                          {"id": stanza_id, "by": room})
            message.send()

    def send_subject(self, room: str, occupants: Iterable[str]) -> None:
        """The room's subject (in a relayed room its notice; otherwise none: an empty
        ``<subject/>``) to each of ``occupants``."""
        for occupant in occupants:
            message = self.xmpp.make_message(mto=occupant, mfrom=room, mtype="groupchat")
            ET.SubElement(message.xml, f"{{{message.namespace}}}subject").text = \
                self.relayed.get(room) or None
            message.send()


__all__ = ["NS_ROOMINFO", "ROOM_FEATURES", "RoomInfo"]
