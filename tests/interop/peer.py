"""Drive ts-mls (TypeScript RFC 9420 implementation) from Python.

:class:`TsMlsPeer` starts ``tests/interop/node/driver.mjs`` once and talks to it in
JSON lines over pipes: one request, one response, every byte string as hex.  The
typed methods below mirror the driver's commands (see the header of driver.mjs).
State lives in the node process and is named by opaque handle strings.
"""

from __future__ import annotations

import collections
import json
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INTEROP_DIR = Path(__file__).resolve().parent
NODE_DIR = INTEROP_DIR / "node"
DRIVER = NODE_DIR / "driver.mjs"
SETUP_SCRIPT = INTEROP_DIR / "setup.sh"

#: Response fields holding bytes (hex on the wire); converted to ``bytes``.
HEX_FIELDS = frozenset({
    "key_package", "commit", "welcome", "group_info", "ratchet_tree", "message",
    "plaintext", "epoch_authenticator", "secret", "group_id", "group_context",
    "tree_hash", "confirmed_transcript_hash", "confirmation_tag", "identity",
    "signature_key",
})


class TsMlsError(RuntimeError):
    """ts-mls refused a request, or the driver process misbehaved."""


def ensure_installed(timeout: float = 300.0) -> None:
    """Run setup.sh (idempotent) so node_modules matches the committed lock file.

    Raises :class:`TsMlsError` with the reason if node/npm are missing or npm fails.
    """
    missing = [tool for tool in ("node", "npm", "bash") if shutil.which(tool) is None]
    if missing:
        raise TsMlsError(f"{', '.join(missing)} not on PATH: the ts-mls interop tests need "
                         "Node.js >= 20 and npm")
    done = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise TsMlsError(f"{SETUP_SCRIPT} failed (exit {done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")


def _to_wire(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


def _from_wire(value: Any, key: str = "") -> Any:
    if key in HEX_FIELDS and isinstance(value, str):
        return bytes.fromhex(value)
    if isinstance(value, list):
        return [_from_wire(v, key) for v in value]
    if isinstance(value, dict):
        return {k: _from_wire(v, k) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class KeyPackageOut:
    handle: str
    key_package: bytes  # MLSMessage(mls_key_package)


@dataclass(frozen=True, slots=True)
class CommitOut:
    commit: bytes  # MLSMessage (PublicMessage unless public=False)
    welcome: bytes | None  # MLSMessage(mls_welcome) if members were added
    group_info: bytes  # MLSMessage(mls_group_info) of the new epoch, with external_pub
    ratchet_tree: bytes  # the new epoch's ratchet tree (RFC 9420 §12.4.3.3 encoding)
    epoch: int
    has_path: bool | None  # None when the commit is a PrivateMessage


class TsMlsPeer:
    """One long-running ``node driver.mjs`` process."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._next_id = 0
        self._proc = subprocess.Popen(
            ["node", str(DRIVER)], cwd=NODE_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    # -- process plumbing ---------------------------------------------------------

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _stderr_tail(self) -> str:
        return "\n".join(self._stderr) or "(no stderr)"

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return its response with hex fields as bytes.

        Raises :class:`TsMlsError` if ts-mls reports an error, the process died, or no
        answer came within ``self.timeout`` seconds.
        """
        if self._proc.poll() is not None:
            raise TsMlsError(f"ts-mls driver exited ({self._proc.returncode}):\n"
                             f"{self._stderr_tail()}")
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({"id": request_id, "cmd": cmd, **_to_wire(args)})
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            raise TsMlsError(f"ts-mls driver pipe closed:\n{self._stderr_tail()}") from exc
        try:
            answer = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise TsMlsError(f"ts-mls driver gave no answer to {cmd} within {self.timeout}s:"
                             f"\n{self._stderr_tail()}") from None
        if answer is None:
            raise TsMlsError(f"ts-mls driver exited during {cmd}:\n{self._stderr_tail()}")
        response: dict[str, Any] = json.loads(answer)
        if response.get("id") != request_id:
            raise TsMlsError(f"ts-mls driver answered request {response.get('id')} "
                             f"instead of {request_id}")
        if not response.get("ok"):
            raise TsMlsError(f"ts-mls {cmd} failed: {response.get('error')}\n"
                             f"{response.get('stack', '')}\nstderr:\n{self._stderr_tail()}")
        result: dict[str, Any] = _from_wire(response)
        return result

    def close(self) -> None:
        """Ask the driver to exit; kill it if it does not within a few seconds."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"id": 0, "cmd": "shutdown"}) + "\n")
                self._proc.stdin.flush()
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(timeout=5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> TsMlsPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- typed commands -----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self.request("info")

    def generate_key_package(self, suite: int, identity: bytes, *,
                             signature_keys: str = "uncompressed") -> KeyPackageOut:
        """``signature_keys="native"`` keeps ts-mls's own signature key generation,
        which encodes ECDSA keys as compressed points (not RFC 9420 §5.1.1); the
        default makes RFC-encoded keys in the driver."""
        r = self.request("generate_key_package", suite=suite, identity=identity,
                         signature_keys=signature_keys)
        return KeyPackageOut(r["handle"], r["key_package"])

    def create_group(self, suite: int, identity: bytes, group_id: bytes, *,
                     signature_keys: str = "uncompressed") -> str:
        return str(self.request("create_group", suite=suite, identity=identity,
                                group_id=group_id, signature_keys=signature_keys)["handle"])

    def _commit_out(self, r: dict[str, Any]) -> CommitOut:
        return CommitOut(r["commit"], r["welcome"], r["group_info"], r["ratchet_tree"],
                         r["epoch"], r["has_path"])

    def commit(self, handle: str, *, adds: tuple[bytes, ...] = (),
               removes: tuple[int, ...] = (),
               group_context_extensions: tuple[tuple[int, bytes], ...] | None = None,
               public: bool = True, ratchet_tree_extension: bool = False,
               merge: bool = True) -> CommitOut:
        """A commit of the pending proposals plus the given adds/removes (and a
        GroupContextExtensions proposal if given).  ts-mls decides itself whether to
        include a path (no option to force one).  ``merge=False`` keeps the new state
        pending (see :meth:`merge_pending`, :meth:`discard_pending`)."""
        args: dict[str, Any] = {"handle": handle, "adds": list(adds), "removes": list(removes),
                                "public": public, "merge": merge,
                                "ratchet_tree_extension": ratchet_tree_extension}
        if group_context_extensions is not None:
            args["group_context_extensions"] = [list(e) for e in group_context_extensions]
        return self._commit_out(self.request("commit", **args))

    def add(self, handle: str, key_packages: list[bytes], *, public: bool = True) -> CommitOut:
        return self._commit_out(self.request("add", handle=handle, key_packages=key_packages,
                                             public=public))

    def remove(self, handle: str, leaf_indices: list[int], *, public: bool = True) -> CommitOut:
        return self._commit_out(self.request("remove", handle=handle,
                                             leaf_indices=leaf_indices, public=public))

    def update(self, handle: str, *, public: bool = True) -> CommitOut:
        return self._commit_out(self.request("update", handle=handle, public=public))

    def propose_add(self, handle: str, key_package: bytes, *, public: bool = True) -> bytes:
        return bytes(self.request("propose", handle=handle, adds=[key_package],
                                  public=public)["message"])

    def propose_remove(self, handle: str, leaf_index: int, *, public: bool = True) -> bytes:
        return bytes(self.request("propose", handle=handle, removes=[leaf_index],
                                  public=public)["message"])

    def merge_pending(self, handle: str) -> int:
        return int(self.request("merge_pending", handle=handle)["epoch"])

    def discard_pending(self, handle: str) -> None:
        self.request("discard_pending", handle=handle)

    def join(self, key_package_handle: str, welcome: bytes,
             ratchet_tree: bytes | None = None) -> str:
        args: dict[str, Any] = {"key_package_handle": key_package_handle, "welcome": welcome}
        if ratchet_tree is not None:
            args["ratchet_tree"] = ratchet_tree
        return str(self.request("join", **args)["handle"])

    def process(self, handle: str, message: bytes) -> dict[str, Any]:
        """Process a PublicMessage/PrivateMessage: ``{kind, epoch, active, plaintext?}``
        with kind one of application/proposal/commit."""
        return self.request("process", handle=handle, message=message)

    def encrypt(self, handle: str, plaintext: bytes, authenticated_data: bytes = b"") -> bytes:
        return bytes(self.request("encrypt", handle=handle, plaintext=plaintext,
                                  authenticated_data=authenticated_data)["message"])

    def decrypt(self, handle: str, message: bytes) -> bytes:
        return bytes(self.request("decrypt", handle=handle, message=message)["plaintext"])

    def epoch_authenticator(self, handle: str) -> bytes:
        return bytes(self.request("epoch_authenticator", handle=handle)["epoch_authenticator"])

    def export(self, handle: str, label: bytes, context: bytes, length: int) -> bytes:
        return bytes(self.request("export", handle=handle, label=label, context=context,
                                  length=length)["secret"])

    def group_info(self, handle: str, *, ratchet_tree_extension: bool = False,
                   external_pub: str = "rfc") -> tuple[bytes, bytes]:
        """(MLSMessage GroupInfo with external_pub, ratchet tree) of the current epoch.

        ``external_pub="native"`` keeps ts-mls's own encoding of the extension (the bare
        key, not RFC 9420 §12.4.3.2's ExternalPub struct); ts-mls's external join only
        reads that form, so pass a native GroupInfo to :meth:`external_join`.
        """
        r = self.request("group_info", handle=handle,
                         ratchet_tree_extension=ratchet_tree_extension,
                         external_pub=external_pub)
        return r["group_info"], r["ratchet_tree"]

    def external_join(self, suite: int, identity: bytes, group_info: bytes,
                      ratchet_tree: bytes | None = None, *,
                      signature_keys: str = "uncompressed") -> tuple[str, bytes]:
        """Join by external commit (RFC 9420 §12.4.3.2): (handle, commit MLSMessage)."""
        args: dict[str, Any] = {"suite": suite, "identity": identity, "group_info": group_info,
                                "signature_keys": signature_keys}
        if ratchet_tree is not None:
            args["ratchet_tree"] = ratchet_tree
        r = self.request("external_join", **args)
        return r["handle"], r["commit"]

    def reinit(self, handle: str, group_id: bytes, suite: int) -> bytes:
        """Commit a ReInit proposal (sent as a PrivateMessage by ts-mls)."""
        return bytes(self.request("reinit", handle=handle, group_id=group_id,
                                  suite=suite)["commit"])

    def reinit_new_group(self, handle: str, key_packages: list[bytes],
                         identity: bytes) -> tuple[str, bytes, bytes]:
        """Start the successor of a group suspended by a ReInit (RFC 9420 §11.2) with
        a fresh KeyPackage of ``identity``: (handle, Welcome, ratchet tree)."""
        r = self.request("reinit_new_group", handle=handle, key_packages=key_packages,
                         identity=identity)
        return str(r["handle"]), bytes(r["welcome"]), bytes(r["ratchet_tree"])

    def join_reinit(self, handle: str, key_package_handle: str, welcome: bytes,
                    ratchet_tree: bytes | None = None) -> str:
        """Join the successor of the suspended group ``handle`` from its Welcome."""
        args: dict[str, Any] = {"handle": handle, "key_package_handle": key_package_handle,
                                "welcome": welcome}
        if ratchet_tree is not None:
            args["ratchet_tree"] = ratchet_tree
        return str(self.request("join_reinit", **args)["handle"])

    def state(self, handle: str) -> dict[str, Any]:
        return self.request("state", handle=handle)

    def free(self, handle: str) -> None:
        self.request("free", handle=handle)
