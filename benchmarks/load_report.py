"""What one load run measured (``benchmarks/load.py``): one :class:`Phase` per measured
phase (bridged, native Matrix, native XMPP, and the doubled bridged phase of
``--flat-check``), printed side by side, and the machine-readable ``LOAD`` line."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CPU_NAMES = ("bridge", "synapse", "prosody", "harness")


@dataclass
class Phase:
    """One measured phase: every member of every room sent its share."""

    label: str
    messages: int
    deliveries: int
    commits: int
    seconds: float  # phase start -> the last arrival
    latencies: list[float]
    lost: int
    duplicated: int
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds over the phase
    #: per delivery, by route ("xmpp -> matrix": sender's network -> recipient's)
    routes: dict[str, list[float]] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0

    def cpu_ms(self, name: str) -> float | None:
        """CPU milliseconds per message of process ``name`` (None: not running)."""
        if name not in self.cpu or not self.messages:
            return None
        return self.cpu[name] / self.messages * 1000


@dataclass
class LoadReport:
    spec: Any  # benchmarks.load.LoadSpec
    bridged: Phase
    natives: dict[str, Phase]  # "matrix", "xmpp"
    flat: Phase | None  # --flat-check: the bridged phase again with twice the messages
    setup_seconds: float

    @property
    def messages(self) -> int:
        return self.bridged.messages

    @property
    def deliveries(self) -> int:
        return self.bridged.deliveries

    @property
    def commits(self) -> int:
        return self.bridged.commits

    @property
    def lost(self) -> int:
        return self.bridged.lost + sum(p.lost for p in self._others())

    @property
    def duplicated(self) -> int:
        return self.bridged.duplicated + sum(p.duplicated for p in self._others())

    def _others(self) -> list[Phase]:
        return [*self.natives.values(), *([self.flat] if self.flat else [])]


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


ROWS: list[tuple[str, Callable[[Phase], str]]] = [
    ("messages", lambda p: f"{p.messages}"),
    ("deliveries (message x recipient)", lambda p: f"{p.deliveries}"),
    ("commits during the phase", lambda p: f"{p.commits}"),
    ("phase wall time (s)", lambda p: f"{p.seconds:.1f}"),
    ("messages/s", lambda p: f"{p.per_second:.1f}"),
    ("deliveries/s", lambda p: f"{p.deliveries / p.seconds:.1f}" if p.seconds else "-"),
    ("latency p50 (ms, send -> every recipient)", lambda p: f"{p.percentile(50) * 1000:.0f}"),
    ("latency p99 (ms)", lambda p: f"{p.percentile(99) * 1000:.0f}"),
    ("latency mean (ms)",
     lambda p: f"{statistics.fmean(p.latencies) * 1000:.0f}" if p.latencies else "-"),
    *[(f"{name} CPU per message (ms)", (lambda p, n=name: _ms(p.cpu_ms(n))))
      for name in CPU_NAMES],
    ("lost / duplicated", lambda p: f"{p.lost} / {p.duplicated}"),
]


def print_table(phases: list[Phase]) -> None:
    width = max(len(name) for name, _ in ROWS)
    cols = [max(12, len(p.label)) for p in phases]
    print(f"{'':<{width}}  " + "  ".join(f"{p.label:>{c}}" for p, c in zip(phases, cols,
                                                                           strict=True)))
    for name, cell in ROWS:
        print(f"{name:<{width}}  " + "  ".join(f"{cell(p):>{c}}" for p, c in zip(phases, cols,
                                                                               strict=True)))


def print_report(report: LoadReport) -> None:
    spec = report.spec
    print(f"rooms {spec.rooms}, members per room {spec.members} (bridged: "
          f"{(spec.members + 1) // 2} XMPP + {spec.members // 2} Matrix; native: all "
          f"{spec.members} on one network), {spec.messages} messages per room, "
          f"{spec.workers} harness worker processes"
          + (f", fixed rate {spec.rate:g} msg/s per sender" if spec.rate else ", awaited sends")
          + f"; bridged setup {report.setup_seconds:.1f} s")
    print_table([report.bridged, *report.natives.values()])
    if report.flat is not None:
        print(f"\nflat check at {spec.rate:g} msg/s per sender: --messages "
              f"{report.bridged.messages // spec.rooms} and {report.flat.messages // spec.rooms}")
        print_table([report.bridged, report.flat])
    routes = report.bridged.routes
    if routes:
        print("\nbridged deliveries by route (sender -> recipient network): "
              + "; ".join(f"{route} p50 {_pct(times, 50):.0f} ms, p99 {_pct(times, 99):.0f} ms"
                          f" ({len(times)})" for route, times in sorted(routes.items())))
    print(load_line(report))


def _pct(times: list[float], p: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def _fields(prefix: str, phase: Phase) -> str:
    return (f"{prefix}msgs_per_s={phase.per_second:.2f} "
            f"{prefix}p50_ms={phase.percentile(50) * 1000:.1f} "
            f"{prefix}p99_ms={phase.percentile(99) * 1000:.1f}")


def load_line(report: LoadReport) -> str:
    spec, bridged = report.spec, report.bridged
    parts = [f"LOAD rooms={spec.rooms} members={spec.members} messages={bridged.messages} "
             f"commits={bridged.commits} seconds={bridged.seconds:.2f}",
             _fields("", bridged),
             f"cpu_ms_per_msg={_ms(bridged.cpu_ms('bridge'), 2)} "
             f"lost={report.lost} duplicated={report.duplicated}",
             f"harness_cpu_ms_per_msg={_ms(bridged.cpu_ms('harness'), 2)} "
             f"synapse_cpu_ms_per_msg={_ms(bridged.cpu_ms('synapse'), 2)} "
             f"prosody_cpu_ms_per_msg={_ms(bridged.cpu_ms('prosody'), 2)}"]
    matrix, xmpp = report.natives.get("matrix"), report.natives.get("xmpp")
    if matrix is not None:
        parts += [_fields("native_", matrix),
                  f"native_synapse_cpu_ms_per_msg={_ms(matrix.cpu_ms('synapse'), 2)}"]
    if xmpp is not None:
        parts += [_fields("native_xmpp_", xmpp),
                  f"native_xmpp_prosody_cpu_ms_per_msg={_ms(xmpp.cpu_ms('prosody'), 2)}"]
    if report.flat is not None:
        parts.append(_fields("flat2x_", report.flat) + f" rate={spec.rate:g}")
    return " ".join(parts)
