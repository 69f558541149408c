"""The hub's signing identity on disk, shared by every service (XMPP, Matrix).

Groups list the hub's ExternalSender key in their ``external_senders`` extension, so
the same identity must survive restarts. It lives in its own file (mode 0600), never
in the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bridge.hub import HubIdentity

ALL_SUITES = (1, 2, 3, 4, 5, 6, 7)


def load_identity(path: Path, name: str, suites: tuple[int, ...] = ALL_SUITES) -> HubIdentity:
    """The hub's identity from ``path``; generated and written (0600) if absent."""
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = {int(suite): bytes.fromhex(key) for suite, key in data["keys"].items()}
        return HubIdentity(data["name"], keys)
    identity = HubIdentity.generate(name, suites)
    text = json.dumps({"name": identity.name,
                       "keys": {str(s): k.hex() for s, k in identity.signature_keys.items()}})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return identity


def default_identity_file(store_url: str) -> Path:
    """``<database>.hub-key`` beside a SQLite store, else ``hub.key``."""
    if store_url.startswith("sqlite:///") and ":memory:" not in store_url:
        return Path(store_url.removeprefix("sqlite:///") + ".hub-key")
    return Path("hub.key")
