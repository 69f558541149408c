"""The bridge's secret files (the hub's identity and CA key, the Matrix bot's olm store
and cross-signing keys): mode 0600, owned by the bridge's user, refused when anyone
else may read or write them.

One rule for these files: created with mode 0600, never widened, replaced atomically;
a file that its group or others may access is refused with a :class:`PermissionError`
that names the file and its mode, never its content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def require_private(path: Path, what: str) -> None:
    """Refuse (:class:`PermissionError`) a file that anyone but its owner may access."""
    mode = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
    if mode & 0o077:
        raise PermissionError(f"{path} is mode {mode:o}: {what} must be 0600")


def create_private(path: Path, what: str) -> None:
    """Create ``path`` empty with mode 0600 if absent (its directory too); refuse it
    if it exists and others may access it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    require_private(path, what)


def read_private(path: Path, what: str) -> str | None:
    """The text of ``path`` (``None`` if absent), refused if others may access it."""
    if not path.exists():
        return None
    require_private(path, what)
    return path.read_text(encoding="utf-8")


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``: a 0600 file beside it, synced, then
    renamed over it (a crash leaves the old file or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


__all__ = ["create_private", "read_private", "require_private", "write_private"]
