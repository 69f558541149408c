"""The component's IQ requests into the hub, admitted fairly and within limits.

slixmpp runs one coroutine per stanza as it arrives, so without a bound one sender
could have any number of requests in progress. :class:`RequestService` admits each
request (:mod:`transports.fairness`) before any work is done for it:

* over its sender's rate (a token bucket per bare JID) it is refused at once with
  ``rate-limited``; when its sender's queue is full, ``rate-limited`` too, and when
  the queue of everyone is full, ``busy`` -- answering an IQ costs one stanza, so every
  refusal is answered;
* admitted, it waits in its sender's queue; the queues are served round-robin by the
  worker pool, one request per sender at a time (so each sender's requests are handled
  in the order they came; the hub serialises each group itself);
* handled, the sizes its payloads declare are checked against the hub's limit before
  any XEP-0363 download (``too-large``), then the hub answers.

The requester is :func:`requester`: ``xmpp:`` + the bare JID of the stanza's ``from``,
which the server stamped, and network ``xmpp`` (docs/SECURITY.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast
from xml.etree import ElementTree as ET

from slixmpp.stanza import Iq
from slixmpp.xmlstream import StanzaBase

from transports.fairness import (
    BUSY,
    RATE_LIMITED,
    TOO_LARGE,
    Admission,
    Overloaded,
    RequestLimits,
)
from transports.interface import HubService, Network
from transports.xmpp import namespace as ns
from transports.xmpp.errors import RequestTooLarge, UploadError, WireError, XmppLinkError
from transports.xmpp.stanzas import (
    blobs_of,
    condition_for,
    decode_request,
    encode_rejected,
    encode_reply,
    find_request,
)
from transports.xmpp.upload import Uploader, fit_entries, placements, resolver

log = logging.getLogger(__name__)

IqError = Callable[..., None]  # MLSComponent.iq_error(iq, condition, type, text, extra)


def requester(stanza: StanzaBase) -> tuple[str, str]:
    """Who sent ``stanza``, as the hub authenticates requesters: the identity of the
    ``from`` the XMPP server stamped (a component's server sets it for its users) and
    the network, ``xmpp``."""
    return ns.URI_SCHEME + stanza["from"].bare, Network.XMPP


class RequestService:
    """Admits, handles and answers the component's IQ requests (module docstring)."""

    def __init__(self, hub: Callable[[], HubService | None], uploader: Uploader,
                 iq_error: IqError, stanza_limit: int, limits: RequestLimits) -> None:
        self._hub = hub
        self._uploader = uploader
        self._iq_error = iq_error
        self._stanza_limit = stanza_limit
        self.admission = Admission(limits, "xmpp-requests")

    async def on_request(self, stanza: StanzaBase) -> None:
        """One IQ request, as slixmpp hands it over: admitted or refused at once."""
        iq = cast(Iq, stanza)
        if iq["type"] not in ("get", "set"):
            return
        element = find_request(iq)
        if element is None or self._hub() is None:
            self._iq_error(iq, "service-unavailable", "cancel", "hub not ready")
            return
        sender, network = requester(iq)
        op = _op(element)
        if not self.admission.rate.allow(sender):
            self._refuse(iq, op, RATE_LIMITED, "too many requests: slow down")
            return
        try:
            self.admission.queue.submit(sender, lambda: self._serve(iq, element, sender,
                                                                    network))
        except Overloaded as exc:
            code = RATE_LIMITED if exc.reason == "sender" else BUSY
            self._refuse(iq, op, code, "too many requests waiting")

    def _refuse(self, iq: Iq, op: str, code: str, text: str) -> None:
        """Refuse a request before it reaches the hub: counted, and logged under the
        flood limit of the log (one key per sender and code)."""
        self.admission.observer.refused(Network.XMPP, op, code)
        sender = iq["from"].bare
        log.info("refused %s from %s: %s", op, sender, code,
                 extra={"flood_key": f"{sender}|{code}"})
        condition, error_type = condition_for(code)
        self._iq_error(iq, condition, error_type, text, encode_rejected(code, 0))

    async def _serve(self, iq: Iq, element: ET.Element, sender: str, network: str) -> None:
        """Handle one admitted request: payload sizes checked before any download."""
        hub = self._hub()
        if hub is None:
            self._iq_error(iq, "service-unavailable", "cancel", "hub not ready")
            return
        try:
            resolve = await resolver(self._uploader, element,
                                     max_size=self.admission.limits.max_request)
            request = decode_request(element, sender, resolve, network=network)
        except RequestTooLarge as exc:
            self._refuse(iq, _op(element), TOO_LARGE, str(exc))
            return
        except (WireError, UploadError) as exc:
            self._iq_error(iq, "bad-request", "modify", str(exc))
            return
        reply = await hub.handle(request)
        if not reply.ok:
            condition, error_type = condition_for(reply.code)
            self._iq_error(iq, condition, error_type, reply.reason,
                           encode_rejected(reply.code, reply.epoch))
            return
        reply = fit_entries(reply, self._stanza_limit)
        try:
            place = await placements(self._uploader, list(blobs_of(reply)),
                                     self._stanza_limit)
        except XmppLinkError as exc:
            self._iq_error(iq, "resource-constraint", "wait", str(exc))
            return
        result = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        result.xml.append(encode_reply(reply, place))
        result.send()


def _op(element: ET.Element) -> str:
    """The op a request element names (its local name; one of ``Op``: find_request)."""
    return element.tag.rsplit("}", 1)[-1]


__all__ = ["RequestService", "requester"]
