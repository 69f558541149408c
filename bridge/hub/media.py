"""Files across networks: the hub fetches another network's media for a member
(``fetch-media``, rule A23 of ``docs/SECURITY.md``).

A file sent in a group is end-to-end encrypted (:mod:`bridge.member.attachments`): its
ciphertext is stored on the sender's network -- an XEP-0363 upload (a plain HTTP GET,
which a Matrix client can read) or the Matrix media repository (``mxc://``, readable
only with a login on that homeserver). A member on XMPP cannot log in there, so it
asks the hub, whose Matrix side downloads the ciphertext with its own credentials
(a :class:`transports.interface.MediaSource`) and returns it in the reply (over XMPP
the component re-uploads a reply over its stanza limit by XEP-0363; the ciphertext
only ever passes through memory). The bridge sees ciphertext only, and stores
nothing of it.

Who may, what and how much (:meth:`bridge.hub.authz.Authorizer.check` has the rules,
this module the rate limit): a current member of the group the request names; the
group is attached to a room on the network that holds the media; only media of that
network's own server (the bridge's homeserver); the declared size at most
``max_media_size`` (checked before any download; the download stops past it and the
SHA-256 the member gives must match); at most ``media_fetch_limit`` fetches per
identity in any ``media_fetch_window`` seconds (:class:`MediaFetches`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping

from bridge.errors import RateLimited, Unavailable, Unsupported
from bridge.hub.faults import expire
from bridge.hub.policy import HubConfig
from transports.errors import TransportError
from transports.interface import Inbound, MediaSource

log = logging.getLogger(__name__)

#: The URL scheme of each network's own media store.
MEDIA_SCHEMES = {"mxc://": "matrix"}
SWEEP_AT = 10_000  # identities tracked before idle ones are forgotten


def media_network(url: str) -> str:
    """The network whose media store ``url`` names ("" if none)."""
    return next((network for scheme, network in MEDIA_SCHEMES.items()
                 if url.startswith(scheme)), "")


class MediaFetches:
    """Runs an authorized ``fetch-media``: the rate limit, then the network's
    :class:`~transports.interface.MediaSource` (``sources``: network -> source)."""

    def __init__(self, config: Callable[[], HubConfig], clock: Callable[[], int],
                 sources: Mapping[str, MediaSource]) -> None:
        self._config = config
        self._clock = clock
        self.sources = sources
        self._recent: dict[str, deque[int]] = {}

    def source(self, url: str) -> MediaSource:
        """The source of ``url``'s network (:class:`Unsupported` when none is attached)."""
        source = self.sources.get(media_network(url))
        if source is None:
            raise Unsupported("this bridge fetches no media of that kind")
        return source

    def admit(self, identity: str) -> None:
        """Count one fetch of ``identity``; :class:`RateLimited` over the limit."""
        config, now = self._config(), self._clock()
        window, limit = config.media_fetch_window, config.media_fetch_limit
        if len(self._recent) >= SWEEP_AT:
            for who in [w for w, times in self._recent.items() if not expire(times, now,
                                                                               window)]:
                del self._recent[who]
        times = expire(self._recent.setdefault(identity, deque()), now, window)
        if len(times) >= limit:
            raise RateLimited(f"at most {limit} media fetches per {window} s")
        times.append(now)

    async def fetch(self, request: Inbound) -> bytes:
        """The bytes (authorization already done by the hub's dispatcher)."""
        self.admit(request.sender)
        try:
            return await self.source(request.target).fetch(request.target, request.limit,
                                                           request.payload)
        except TransportError as exc:
            log.info("media fetch for %s failed: %s", request.sender, exc)
            raise Unavailable(f"the media could not be fetched: {exc}") from exc
