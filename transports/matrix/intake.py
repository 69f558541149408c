"""The Matrix bot's requests in: to-device ``im.mlsbridge.request`` events and the
``im.mlsbridge.send`` room events members post, turned into hub requests.

Each request is admitted to its sender's queue (:mod:`transports.fairness`) and handled
by the worker pool: over its sender's rate it is refused ``rate-limited`` (answered in
turn, without being handled); beyond the queue bounds it is dropped unanswered and
counted. The requester is :func:`requester` of the event's Matrix ``sender`` (set by
the homeserver), never a value of the content. A request is handled once per (sender,
request id), also across restarts (:class:`transports.matrix.seen.SeenSet`); the sizes
it declares are checked before any payload is downloaded. The reply goes back
to-device (``im.mlsbridge.response``), except for an accepted send event: the ack the
hub's delivery posts in its room answers it (:mod:`transports.matrix.output`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from transports.fairness import RATE_LIMITED, TOO_LARGE, Admission, Overloaded, op_label
from transports.interface import AGAIN, Inbound, Kind, Network, Outbound
from transports.matrix import events
from transports.matrix import namespace as ns
from transports.matrix.errors import (
    MalformedEvent,
    MatrixTransportError,
    MediaError,
    RequestTooLarge,
)
from transports.matrix.media import MediaRepository, pack
from transports.matrix.output import ToDevice
from transports.matrix.seen import SeenSet

log = logging.getLogger(__name__)

Handle = Callable[[Inbound], Awaitable[Outbound]]


def requester(sender: str) -> tuple[str, str]:
    """Who sent an event, as the hub authenticates requesters: the identity of its
    Matrix ``sender`` (set by the homeserver; for an application service, in a
    transaction the homeserver authenticated with ``hs_token``) and the network,
    ``matrix``. :class:`MalformedEvent` if ``sender`` is not a user id."""
    return events.user_uri(sender), Network.MATRIX


class RequestIntake:
    """Admits, handles (through ``handle``: the bot's way to the hub) and answers
    requests (see the module docstring)."""

    def __init__(self, admission: Admission, seen: SeenSet, media: MediaRepository,
                 handle: Handle, to_device: ToDevice,
                 ignore: Callable[[str, str], None]) -> None:
        self.admission = admission
        self.seen = seen
        self.media = media
        self._handle = handle
        self._to_device = to_device
        self._ignore = ignore
        self.handled = 0

    async def settle(self) -> None:
        """Wait until every admitted request was handled and answered."""
        await self.admission.queue.join()

    def admit(self, sender: str, content: Mapping[str, Any], posted: tuple[str, ...] = ()
              ) -> None:
        """Admit one request (to-device, or ``posted`` as (room id, event id): a send
        event) to its sender's queue."""
        request_id = content.get(ns.K_REQUEST_ID)
        try:
            identity, network = requester(sender)
        except MalformedEvent:
            return
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
            log.info("ignored a request from %s without a request id", sender)
            return
        reply_device = content.get(ns.K_REPLY_DEVICE)
        reply_device = reply_device if isinstance(reply_device, str) and reply_device \
            else "*"
        op = op_label(content.get(ns.K_OP))
        allowed = self.admission.rate.allow(sender)

        async def job() -> None:
            if allowed:
                await self._serve(sender, identity, network, request_id, reply_device,
                                  content, posted)
                return
            await self._respond(sender, reply_device, Outbound(
                str(Kind.REPLY), (identity,), request_id, ok=False, code=RATE_LIMITED,
                reason="too many requests: slow down"))
        try:
            self.admission.queue.submit(sender, job)
        except Overloaded as exc:
            log.info("dropped a %s request from %s: queue full (%s)", op, sender,
                     exc.reason, extra={"flood_key": f"drop|{sender}"})
            return
        if not allowed:
            self.admission.observer.refused(Network.MATRIX, op, RATE_LIMITED)
            log.info("refused %s from %s: %s", op, sender, RATE_LIMITED,
                     extra={"flood_key": f"{sender}|{RATE_LIMITED}"})

    async def _serve(self, sender: str, identity: str, network: str, request_id: str,
                     reply_device: str, content: Mapping[str, Any],
                     posted: tuple[str, ...] = ()) -> None:
        """Handle one admitted request (its sender's requests run one at a time, in
        order; see the module docstring). A send event (``posted``) is a ``send``
        naming its room and event."""
        key = f"req:{sender}:{request_id}"
        if await self.seen.contains(key):
            self._ignore("duplicate request", request_id)
            return
        try:
            parsed = await events.parse_request(
                content, identity, self.media.read_blob, network=network,
                max_size=self.admission.limits.max_request)
        except (MalformedEvent, MediaError, RequestTooLarge) as exc:
            code = TOO_LARGE if isinstance(exc, RequestTooLarge) else "malformed"
            self.admission.observer.refused(Network.MATRIX,
                                            op_label(content.get(ns.K_OP)), code)
            reply = Outbound(str(Kind.REPLY), (identity,), request_id, ok=False,
                             code=code, reason=str(exc))
        else:
            reply = await self._handle(_posted_request(parsed.inbound, posted))
        await self.seen.add(key)
        self.handled += 1
        if not (posted and reply.ok and reply.code != AGAIN):  # else: the ack answers
            await self._respond(sender, reply_device, reply)

    async def _respond(self, user_id: str, device_id: str, reply: Outbound) -> None:
        try:
            content = await pack(events.response_content(reply), self.media.upload)
            await self._to_device(ns.RESPONSE_TO_DEVICE, user_id, device_id, content)
        except MatrixTransportError as exc:
            log.warning("reply to %s (%s) lost: %s", user_id, reply.request_id, exc)


def _posted_request(request: Inbound, posted: tuple[str, ...]) -> Inbound:
    """A send event's request, naming its room and event."""
    if not posted:
        return request
    room_id, event_id = posted
    return replace(request, transport=ns.TRANSPORT_NAME, room_id=room_id, event_id=event_id)


__all__ = ["RequestIntake", "requester"]
