"""Structured logs: one event per line, JSON or ``key=value``, secrets redacted.

:func:`setup_logging` installs one handler on the root logger. Each record becomes one
line with ``ts``, ``level``, ``logger`` and ``event`` (the message), plus any fields
passed with ``extra={"fields": {...}}`` (see :func:`event`). A :class:`Redactor` replaces
every configured secret value by ``***`` in the rendered line, as a last line of
defence: the bridge logs ids, sizes and hashes, never plaintext (the hub never has any),
secrets or MLS bytes (``Inbound``/``Outbound`` hide their bytes from ``repr``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


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
        if key not in _STANDARD and key not in ("fields", "message", "asctime"):
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


def setup_logging(level: str = "info", style: str = "json", file: str = "",
                  secrets: Iterable[str] = (), stream: TextIO | None = None) -> Redactor:
    """Send every log record to one structured handler (stderr or ``file``)."""
    redactor = Redactor(secrets)
    handler: logging.Handler
    if file:
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(style, redactor))
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
