"""Adapter for ts-mls (TypeScript RFC 9420) running in node.

ts-mls is installed by ``tests/interop/setup.sh`` into tests/interop/node/node_modules;
``ts_mls_bench.mjs`` beside this file imports it from there and times every operation
*inside* node (so pipe and hex overhead are not counted).  Members and groups are
handles into the node process.  State size = ``encodeGroupState`` length; tracemalloc
cannot see the node heap, so the join-peak row is n/a.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.peers import Driver, PeerUnavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "ts_mls_bench.mjs"
TS_MLS = ROOT / "tests" / "interop" / "node" / "node_modules" / "ts-mls"


class TsMlsDriver(Driver):
    name = "ts-mls"

    def __init__(self) -> None:
        if shutil.which("node") is None:
            raise PeerUnavailable("node is not on PATH")
        if not (TS_MLS / "package.json").exists():
            raise PeerUnavailable("ts-mls not installed (run tests/interop/setup.sh)")
        self._proc = subprocess.Popen(["node", str(SCRIPT)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        self._next = 0
        self._groups = 0
        self.version = str(self._call("info")["version"])

    def _call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._next += 1
        self._proc.stdin.write(json.dumps({"id": self._next, "cmd": cmd, **args}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ts-mls bench driver exited during {cmd}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"ts-mls {cmd}: {answer.get('error')}")
        return answer

    def describe(self) -> str:
        return f"ts-mls {self.version} (TypeScript, node)"

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._call("shutdown")
                self._proc.wait(timeout=10)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(timeout=10)

    def make_members(self, count: int, first_index: int = 0) -> list[Any]:
        answer = self._call("make_members", count=count, first_index=first_index)
        return [(handle, bytes.fromhex(kp))
                for handle, kp in zip(answer["members"], answer["key_packages"], strict=True)]

    def key_package(self, member: Any) -> bytes:
        return bytes(member[1])

    def create_and_add(self, creator: Any, key_packages: list[bytes]
                       ) -> tuple[float, Any, bytes]:
        self._groups += 1
        answer = self._call("create_and_add", creator=creator[0],
                            group_id=(b"benchmark group %d" % self._groups).hex(),
                            key_packages=[kp.hex() for kp in key_packages])
        return float(answer["elapsed"]), answer["group"], bytes.fromhex(answer["welcome"])

    def join(self, member: Any, welcome: bytes) -> tuple[float, Any]:
        answer = self._call("join", member=member[0], welcome=welcome.hex())
        return float(answer["elapsed"]), answer["group"]

    def commit_empty(self, group: Any) -> tuple[float, Any, bytes]:
        answer = self._call("commit_empty", group=group)
        if not answer["has_path"]:
            raise RuntimeError("ts-mls made an empty commit without a path")
        return float(answer["elapsed"]), group, bytes.fromhex(answer["commit"])

    def process(self, group: Any, commit: bytes) -> tuple[float, Any]:
        answer = self._call("process", group=group, commit=commit.hex())
        return float(answer["elapsed"]), group

    def app_messages(self, sender: Any, receiver: Any, count: int, size: int
                     ) -> tuple[float, Any, Any]:
        answer = self._call("app", sender=sender, receiver=receiver, count=count, size=size)
        return float(answer["elapsed"]), sender, receiver

    def state_size(self, group: Any) -> int | None:
        return int(self._call("state_size", group=group)["bytes"])
