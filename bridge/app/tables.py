"""Typed access to the tables of a TOML configuration: :class:`Table` reads each key
with its type and range and refuses keys nobody asked for; errors are
:class:`ConfigError` naming the key by its dotted path; secrets are :class:`Secret`
(inline, from the environment or from a file). The sections themselves are
:mod:`bridge.app.config`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError

MISSING: Any = object()


class ConfigError(BridgeError):
    """A configuration key is missing, unknown or has an invalid value."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Secret:
    """A secret value and where it came from (``inline``, ``env:NAME``, ``file:PATH``)."""

    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"<secret from {self.source}>"




class Table:
    """Typed access to one TOML table; :meth:`done` rejects keys nobody asked for."""

    def __init__(self, data: Mapping[str, Any], path: str, env: Mapping[str, str],
                 base: Path) -> None:
        self.data = dict(data)
        self.path = path
        self.env = env
        self.base = base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is MISSING:
                raise ConfigError(self.key(name), "required key is missing")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.key(name), f"expected {what}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(self.key(name), f"expected {what}, got {_kind(value)}")
        return value

    def text(self, name: str, default: Any = MISSING, *, choices: tuple[str, ...] = (),
            nonempty: bool = False) -> str:
        value = self._get(name, default, (str,), "a string")
        if choices and value not in choices:
            raise ConfigError(self.key(name),
                              f"must be one of {', '.join(choices)} (got {value!r})")
        if nonempty and not value:
            raise ConfigError(self.key(name), "must not be empty")
        return str(value)

    def integer(self, name: str, default: Any = MISSING, *, low: int | None = None,
            high: int | None = None) -> int:
        value = int(self._get(name, default, (int,), "an integer"))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(self.key(name), f"must be between {low} and {high} (got {value})")
        return value

    def number(self, name: str, default: Any = MISSING, *, low: float = 0.0) -> float:
        value = float(self._get(name, default, (int, float), "a number"))
        if value < low:
            raise ConfigError(self.key(name), f"must be at least {low:g} (got {value:g})")
        return value

    def flag(self, name: str, default: Any = MISSING) -> bool:
        return bool(self._get(name, default, (bool,), "true or false"))

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name, [], (list,), "a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.key(name)}[{i}]", f"expected a string, got "
                                                            f"{_kind(item)}")
        return tuple(value)

    def table(self, name: str, required: bool = False) -> Table | None:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.key(name), "required table is missing")
            return None
        value = self.data[name]
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), f"expected a table, got {_kind(value)}")
        return Table(value, self.key(name), self.env, self.base)

    def tables(self, name: str) -> list[Table]:
        value = self._get(name, [], (list,), "an array of tables ([[...]])")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"{self.key(name)}[{i}]", f"expected a table, got "
                                                            f"{_kind(item)}")
            out.append(Table(item, f"{self.key(name)}[{i}]", self.env, self.base))
        return out

    def secret(self, name: str, required: bool = True) -> Secret | None:
        """``name`` / ``name_env`` / ``name_file``: exactly one (or none if optional)."""
        given = [k for k in (name, f"{name}_env", f"{name}_file") if k in self.data]
        self.used.update((name, f"{name}_env", f"{name}_file"))
        if len(given) > 1:
            raise ConfigError(self.key(name), f"give only one of {', '.join(given)}")
        if not given:
            if required:
                raise ConfigError(self.key(name), f"required secret is missing (set {name}, "
                                                  f"{name}_env or {name}_file)")
            return None
        key = given[0]
        raw = self.data[key]
        if not isinstance(raw, str) or not raw:
            raise ConfigError(self.key(key), "expected a non-empty string")
        if key.endswith("_env"):
            value = self.env.get(raw)
            if not value:
                raise ConfigError(self.key(key), f"environment variable {raw} is not set "
                                                 "or empty")
            return Secret(value, f"env:{raw}")
        if key.endswith("_file"):
            path = self.base / raw
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(self.key(key), f"cannot read {path}: "
                                                 f"{exc.strerror or type(exc).__name__}"
                                  ) from None
            if not value:
                raise ConfigError(self.key(key), f"{path} is empty")
            return Secret(value, f"file:{path}")
        return Secret(raw, "inline")

    def done(self) -> None:
        for name in self.data:
            if name not in self.used:
                raise ConfigError(self.key(name), "unknown key")


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)
