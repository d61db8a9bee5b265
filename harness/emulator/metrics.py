"""CloudWatch-style metrics of the emulated GWLB, with AWS's names, per load balancer and per
availability zone, and their Prometheus text rendering.

Peaks are per-second buckets (AWS's PeakPacketsPerSecond is the highest one-second rate in the
period); the period here is the whole run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Traffic:
    """Counters of one scope (the whole load balancer, or one zone)."""

    new_flows: int = 0
    processed_packets: int = 0
    processed_bytes: int = 0
    rejected_flows_tcp: int = 0
    peak_packets_per_second: int = 0
    peak_bytes_per_second: int = 0
    _second: int = -1
    _packets_this_second: int = 0
    _bytes_this_second: int = 0

    def packet(self, size: int, now: float) -> None:
        self.add(1, size, int(now))

    def add(self, packets: int, size: int, second: int) -> None:
        """`packets` packets of `size` bytes in all, seen in second `second` (the fast path's
        per-second counts arrive this way)."""
        self.processed_packets += packets
        self.processed_bytes += size
        if second != self._second:
            self._second, self._packets_this_second, self._bytes_this_second = second, 0, 0
        self._packets_this_second += packets
        self._bytes_this_second += size
        self.peak_packets_per_second = max(self.peak_packets_per_second, self._packets_this_second)
        self.peak_bytes_per_second = max(self.peak_bytes_per_second, self._bytes_this_second)

    def aws(self) -> dict[str, int]:
        return {
            "NewFlowCount": self.new_flows,
            "ProcessedPackets": self.processed_packets,
            "ProcessedBytes": self.processed_bytes,
            "RejectedFlowCount_TCP": self.rejected_flows_tcp,
            "PeakPacketsPerSecond": self.peak_packets_per_second,
            "PeakBytesPerSecond": self.peak_bytes_per_second,
        }


@dataclass
class Metrics:
    total: Traffic = field(default_factory=Traffic)
    zones: dict[str, Traffic] = field(default_factory=dict)
    source_port_changed: int = 0
    mixups: int = 0
    rebalanced_flows: int = 0
    drops: Counter = field(default_factory=Counter)

    def zone(self, name: str) -> Traffic:
        return self.zones.setdefault(name, Traffic())

    def packet(self, zone: str, size: int, now: float) -> None:
        self.total.packet(size, now)
        self.zone(zone).packet(size, now)

    def new_flow(self, zone: str) -> None:
        self.total.new_flows += 1
        self.zone(zone).new_flows += 1

    def rejected_tcp(self, zone: str) -> None:
        self.total.rejected_flows_tcp += 1
        self.zone(zone).rejected_flows_tcp += 1


def prometheus(load_balancer: dict[str, int], zones: dict[str, dict[str, int]], drops: dict[str, int]) -> str:
    """Prometheus text exposition: `gwlb_<AwsName>` gauges, zone-labelled, plus drops by reason."""
    lines = []
    for name, value in load_balancer.items():
        metric = f"gwlb_{name}"
        lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
        lines += [f'{metric}{{availability_zone="{zone}"}} {values[name]}' for zone, values in zones.items() if name in values]
    lines.append("# TYPE gwlb_dropped_packets counter")
    lines += [f'gwlb_dropped_packets{{reason="{reason}"}} {count}' for reason, count in sorted(drops.items())]
    return "\n".join(lines) + "\n"
