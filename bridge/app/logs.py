"""Structured logs: one event per line, JSON or ``key=value``, secrets redacted.

:func:`setup_logging` installs one handler on the root logger. Each record becomes one
line with ``ts``, ``level``, ``logger`` and ``event`` (the message), plus any fields
passed with ``extra={"fields": {...}}`` (see :func:`event`). A :class:`Redactor` replaces
every configured secret value by ``***`` in the rendered line, as a last line of
defence: the bridge logs ids, sizes and hashes, never plaintext (the hub never has any),
secrets or MLS bytes (``Inbound``/``Outbound`` hide their bytes from ``repr``). A
:class:`FloodLimit` on the handler collapses floods of similar lines (a flooding
sender's refusals) into "N similar messages suppressed" lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, TextIO

from transports.fairness import Clock, RateLimiter

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_NOT_FIELDS = frozenset({"fields", "message", "asctime", "flood_key", "flood_summary"})
FLOOD_RATE = 1.0  # lines per second per key, sustained
FLOOD_BURST = 20  # ... at once
FLOOD_KEYS = 10_000  # keys remembered


class Redactor:
    """Replaces known secret values in rendered log lines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for value in secrets:
            if value and len(value) >= 4 and value not in self._secrets:
                self._secrets.append(value)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._secrets:
            if value in text:
                text = text.replace(value, "***")
        return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        fields.update(extra)
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in _NOT_FIELDS:
            fields[key] = value
    return fields


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return digest(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class StructuredFormatter(logging.Formatter):
    """One line per record: JSON (``json``) or ``key=value`` pairs (``text``)."""

    def __init__(self, style: str = "json", redactor: Redactor | None = None) -> None:
        super().__init__()
        self.style = style
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            event.setdefault(key, _scalar(value))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            event["error"] = f"{type(exc).__name__}: {exc}"
        if self.style == "json":
            line = json.dumps(event, ensure_ascii=False, default=str)
        else:
            line = " ".join(f"{key}={_quote(value)}" for key, value in event.items())
        return self.redactor(line.replace("\n", "\\n"))


def _quote(value: Any) -> str:
    text = "" if value is None else str(value)
    if not text or any(c in text for c in ' "=\\'):
        return json.dumps(text, ensure_ascii=False)
    return text


def digest(data: bytes) -> str:
    """How logs name bytes: their length and a short SHA-256 prefix, never the bytes."""
    return f"{len(data)}B:{hashlib.sha256(data).hexdigest()[:12]}"


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log one structured event: ``event(log, logging.INFO, "commit accepted", seq=3)``."""
    logger.log(level, name, extra={"fields": fields})


class FloodLimit(logging.Filter):
    """The log's limit for floods, on the handler: a token bucket per key lets
    ``burst`` lines through at once and ``rate`` per second after; the others are
    counted and collapse into one ``N similar messages suppressed`` line, written
    before the key's next line that passes (or by :meth:`flush`, at most once a second
    on any line, for keys that went quiet). The key is ``extra={"flood_key": ...}``
    when given (per sender and code for refusals), else the logger and the message
    template. Keys are bounded (the least recently used forgotten, with their
    counts)."""

    def __init__(self, handler: logging.Handler, *, rate: float = FLOOD_RATE,
                 burst: int = FLOOD_BURST, clock: Clock = time.monotonic,
                 max_keys: int = FLOOD_KEYS) -> None:
        super().__init__()
        self._handler = handler
        self._clock = clock
        self._buckets = RateLimiter(rate, burst, clock=clock, max_keys=max_keys)
        self._suppressed: OrderedDict[str, tuple[int, logging.LogRecord]] = OrderedDict()
        self._max_keys = max_keys
        self._next_flush = 0.0
        self.total_suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flood_summary", False):
            return True
        key = getattr(record, "flood_key", None) or f"{record.name}|{record.msg}"
        if not self._buckets.allow(str(key)):
            count, _ = self._suppressed.pop(str(key), (0, record))
            self._suppressed[str(key)] = (count + 1, record)
            while len(self._suppressed) > self._max_keys:
                self._suppressed.popitem(last=False)
            self.total_suppressed += 1
            return False
        self._summarise(str(key))
        if self._clock() >= self._next_flush:
            self.flush(quiet_only=True)
        return True

    def flush(self, *, quiet_only: bool = False) -> None:
        """Write the summary of every key with suppressed lines (``quiet_only``: of
        those whose bucket has refilled, i.e. whose flood is over)."""
        self._next_flush = self._clock() + 1.0
        for key in list(self._suppressed):
            if not quiet_only or self._buckets.allow(key):
                self._summarise(key)

    def _summarise(self, key: str) -> None:
        count, last = self._suppressed.pop(key, (0, None))
        if not count or last is None:
            return
        summary = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno,
                                    "%d similar messages suppressed", (count,), None)
        summary.flood_summary = True
        summary.fields = {"suppressed": count, "like": last.getMessage()[:200]}
        self._handler.handle(summary)


def setup_logging(level: str = "info", style: str = "json", file: str = "",
                  secrets: Iterable[str] = (), stream: TextIO | None = None) -> Redactor:
    """Send every log record to one structured handler (stderr or ``file``), under
    the flood limit (:class:`FloodLimit`)."""
    redactor = Redactor(secrets)
    handler: logging.Handler
    if file:
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(style, redactor))
    handler.addFilter(FloodLimit(handler))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # chatty libraries: their DEBUG output may include raw stanzas / HTTP bodies
    for noisy in ("slixmpp", "nio", "aiohttp", "asyncio", "aiosqlite", "asyncpg"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return redactor
