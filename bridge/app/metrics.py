"""Prometheus metrics for the bridge, with the standard library only.

:class:`Metrics` holds counters, gauges and histograms and renders them in the
Prometheus text exposition format (version 0.0.4). :class:`HubMetrics` is the
:class:`bridge.hub.HubObserver` that feeds them from the hub (requests, commits
accepted/rejected, deliveries relayed, in-flight queues, request latency), so the hub
itself holds no metrics code. :class:`MetricsServer` serves ``GET /metrics`` on a
loopback port (asyncio, no extra dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence

from transports.fairness import RATE_LIMITED, op_label
from transports.interface import Inbound, Op, Outbound

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Family:
    def __init__(self, name: str, help_text: str, kind: str) -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.values: dict[Labels, float] = {}

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text, "counter")

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels(k)} {_number(v)}"
                                for k, v in sorted(self.values.items())]


class Gauge(Counter):
    def __init__(self, name: str, help_text: str) -> None:
        _Family.__init__(self, name, help_text, "gauge")

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class Histogram(_Family):
    def __init__(self, name: str, help_text: str,
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_text, "histogram")
        self.buckets = (*tuple(buckets), math.inf)
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, total = self.series.setdefault(key, ([0] * len(self.buckets), [0.0]))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        total[0] += value

    def count(self, **labels: str) -> int:
        entry = self.series.get(tuple(sorted(labels.items())))
        return entry[0][-1] if entry else 0

    def render(self) -> list[str]:
        lines = self.header()
        for key, (counts, total) in sorted(self.series.items()):
            for bound, count in zip(self.buckets, counts, strict=True):
                lines.append(f"{self.name}_bucket{_labels((*key, ('le', _number(bound))))} "
                             f"{count}")
            lines.append(f"{self.name}_sum{_labels(key)} {_number(total[0])}")
            lines.append(f"{self.name}_count{_labels(key)} {counts[-1]}")
        return lines


class Metrics:
    """Every metric the bridge exports."""

    def __init__(self) -> None:
        p = "mls_bridge_"
        self.requests = Counter(p + "requests_total", "Hub requests by op and result")
        self.commits_accepted = Counter(p + "commits_accepted_total",
                                        "Commits the hub accepted (one per epoch)")
        self.commits_rejected = Counter(p + "commits_rejected_total",
                                        "Commits the hub refused, by reason code")
        self.messages_relayed = Counter(p + "messages_relayed_total",
                                        "Deliveries handed to a transport, by kind")
        self.delivery_failures = Counter(p + "delivery_failures_total",
                                         "Deliveries the transport could not carry")
        self.requests_in_flight = Gauge(p + "requests_in_flight",
                                        "Hub requests being processed (queue depth)")
        self.deliveries_in_flight = Gauge(p + "deliveries_in_flight",
                                          "Deliveries being handed to transports")
        self.request_seconds = Histogram(p + "request_seconds", "Hub request latency")
        self.refusals = Counter(p + "refusals_total",
                                "Requests refused, by op and code (by the hub, or by a "
                                "transport before it: rate-limited, busy, too-large...)")
        self.rate_limited = Counter(p + "rate_limited_total",
                                    "Requests refused by a per-sender rate limit, by network")
        self.dropped = Counter(p + "dropped_total",
                               "Items a bounded queue dropped or could not take, by queue "
                               "and reason")
        self.queue_depth = Gauge(p + "queue_depth", "Items waiting in a bounded queue")
        self.network_up = Gauge(p + "network_up", "1 when connected to the network")
        self.connect_retries = Counter(p + "connect_retries_total",
                                       "Failed attempts to reach a server")
        self.started = Gauge(p + "start_time_seconds", "Unix time the bridge started")
        self.started.set(time.time())

    def families(self) -> list[_Family]:
        return [v for v in vars(self).values() if isinstance(v, _Family)]

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families():
            lines += family.render()
        return "\n".join(lines) + "\n"


class HubMetrics:
    """The :class:`bridge.hub.HubObserver` that counts into :class:`Metrics`, and the
    :class:`transports.fairness.LimitObserver` of the transports and the relay
    (refusals before the hub, drops, queue depths); it also lets shutdown wait until
    in-flight requests are done (:meth:`drained`). Labels come from closed sets only
    (an op a client made up is ``unknown``), so no request grows the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def request_started(self, request: Inbound) -> None:
        self.in_flight += 1
        self._idle.clear()
        self.metrics.requests_in_flight.set(self.in_flight)

    def request_finished(self, request: Inbound, reply: Outbound | None,
                         seconds: float) -> None:
        self.in_flight -= 1
        m = self.metrics
        m.requests_in_flight.set(self.in_flight)
        if self.in_flight == 0:
            self._idle.set()
        op = op_label(request.op)
        if reply is None:  # cancelled (shutdown) or crashed
            m.requests.inc(op=op, result="error")
            return
        m.requests.inc(op=op, result="ok" if reply.ok else reply.code or "refused")
        if not reply.ok:
            self._refused(str(request.network), op, reply.code or "refused")
        m.request_seconds.observe(seconds, op=op)
        if request.op == Op.SUBMIT_COMMIT:
            if reply.ok:
                m.commits_accepted.inc()
            else:
                m.commits_rejected.inc(code=reply.code or "refused")

    def delivery_started(self, message: Outbound) -> None:
        self.metrics.deliveries_in_flight.inc()

    def delivery_finished(self, message: Outbound, ok: bool) -> None:
        self.metrics.deliveries_in_flight.dec()
        if ok:
            self.metrics.messages_relayed.inc(kind=str(message.kind))
        else:
            self.metrics.delivery_failures.inc(kind=str(message.kind))

    # -- LimitObserver ---------------------------------------------------------------

    def refused(self, network: str, op: str, code: str) -> None:
        self._refused(network, op_label(op), code)

    def _refused(self, network: str, op: str, code: str) -> None:
        self.metrics.refusals.inc(op=op, code=code)
        if code == RATE_LIMITED:
            self.metrics.rate_limited.inc(network=network or "local")

    def dropped(self, queue: str, reason: str) -> None:
        self.metrics.dropped.inc(queue=queue, reason=reason)

    def depth(self, queue: str, size: int) -> None:
        self.metrics.queue_depth.set(size, queue=queue)

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class MetricsServer:
    """``GET /metrics`` (and ``/healthz``) over plain HTTP/1.1 on ``host:port``."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = request.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
            if parts[:1] != [b"GET"]:
                status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path == b"/metrics":
                status, body = "200 OK", self.metrics.render().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            elif path == b"/healthz":
                status, body, ctype = "200 OK", b"ok\n", "text/plain"
            else:
                status, body, ctype = "404 Not Found", b"not found\n", "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
