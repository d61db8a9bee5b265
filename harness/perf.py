"""PERF measurements without the network: trial parameters per timers mode, the throughput search,
percentiles, which side limits a figure, and per-profile thresholds. Pure, so testable without root.

Vocabulary from RFC 2544: a trial offers a fixed rate for a fixed time and counts what arrived;
throughput is the fastest offered rate whose trial lost nothing (here also the fastest that lost at
most 0.5%). Every figure is measured twice in the same run: through the appliance, and through the
harness alone with the appliance's work taken out (GENEVE reflected at each target's interface,
harness/reflector.py), which is the emulator's ceiling on this machine. The limiting side is the
appliance when its figure is clearly worse than the ceiling (`LIMIT_RATIO`), else the harness.

Thresholds (`conformance/perf-thresholds.yaml`, per profile, all optional) turn a figure worse than
its threshold into a failed PERF requirement; PERF is INFO, so that is a warning line in the
report and never changes the verdict.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.timers import TimersMode
from harness.yamlconfig import load_validated

SIZES = (64, 512, 1500, 8500)
LOSS_TOLERANCE = 0.005
LIMIT_RATIO = 0.8
"""An appliance figure within this ratio of the ceiling is bounded by the harness, not by the appliance."""
SEED_START = 0.85
SEED_HIGH = 2.0
EXTRA_STEPS = 3


class Side(enum.Enum):
    """What bounds a figure: the appliance, or the harness (emulator, the testbed's kernel path,
    the load generator or the largest load the check offers)."""

    APPLIANCE = "appliance"
    HARNESS = "harness"


@dataclass(frozen=True)
class Params:
    """How long and how finely each PERF check measures, for one timers mode."""

    trial_s: float
    """Seconds a throughput trial offers its rate."""
    search_steps: int
    """Trials after the first (at `top_pps`) in each throughput search, per size and side."""
    top_pps: Mapping[int, float]
    """The first trial's offered rate per size: above what one sending core produces."""
    grace_s: float
    """Arrivals count until this long after the last send; what is still queued then counts as lost
    (in a short trial a queue that builds up would overflow in a long one)."""
    drain_quiet_s: float
    """The next trial starts when nothing arrived for this long after the previous one..."""
    drain_max_s: float
    """...or at the latest this long after its last send."""
    latency_samples: int
    new_flow_trial_s: float
    new_flow_top: float
    """The first new-flow trial's offered rate (flows/s)."""
    new_flow_steps: int
    concurrent_flows: tuple[int, ...]
    """Flow counts tried in turn for the concurrent-flow capacity, until one fails."""
    concurrent_round_s: float
    """Seconds every flow of a step has to echo, per round."""
    sizes: tuple[int, ...] = SIZES
    loss_tolerance: float = LOSS_TOLERANCE

    def describe(self) -> str:
        return (f"{self.trial_s:g} s trials (arrivals counted until {self.grace_s * 1000:g} ms after the last send), "
                f"{1 + self.search_steps} or more per size and side; "
                f"{self.latency_samples} round trips; new flows: {self.new_flow_trial_s:g} s trials, "
                f"{1 + self.new_flow_steps} per side; concurrent flows tried: "
                f"{', '.join(map(str, self.concurrent_flows))}")


PARAMS = {
    TimersMode.ACCELERATED: Params(
        trial_s=0.05, search_steps=1, top_pps={64: 100_000, 512: 100_000, 1500: 100_000, 8500: 60_000},
        grace_s=0.005, drain_quiet_s=0.02, drain_max_s=0.3, latency_samples=100,
        new_flow_trial_s=0.05, new_flow_top=20_000, new_flow_steps=1,
        concurrent_flows=(1000,), concurrent_round_s=1.5,
    ),
    TimersMode.FAITHFUL: Params(
        trial_s=2.0, search_steps=6, top_pps={64: 1_000_000, 512: 1_000_000, 1500: 800_000, 8500: 400_000},
        grace_s=0.01, drain_quiet_s=0.2, drain_max_s=3.0, latency_samples=5000,
        new_flow_trial_s=1.0, new_flow_top=100_000, new_flow_steps=5,
        concurrent_flows=(1000, 2000, 4000, 8000), concurrent_round_s=10.0,
    ),
}
"""The one place trial parameters live; the report states the ones used."""


def params_for(mode: TimersMode) -> Params:
    return PARAMS[mode]


@dataclass(frozen=True)
class Trial:
    """One trial: packets (or flows) offered over `duration_s` and how many arrived."""

    offered: int
    received: int
    duration_s: float

    @property
    def rate(self) -> float:
        """The offered rate the sender achieved (per second)."""
        return self.offered / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def delivered_rate(self) -> float:
        return min(self.received, self.offered) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def lost(self) -> int:
        return max(0, self.offered - self.received)

    @property
    def loss(self) -> float:
        return self.lost / self.offered if self.offered else 0.0


@dataclass(frozen=True)
class Search:
    """A throughput search's trials and its two figures."""

    trials: tuple[Trial, ...]
    tolerance: float
    resolution: float
    """Width of the last bracket between a passing and a failing rate (per second)."""

    @property
    def no_drop(self) -> float:
        """The fastest offered rate of a trial that lost nothing; 0 when none did."""
        return max((t.rate for t in self.trials if t.lost == 0), default=0.0)

    @property
    def within_tolerance(self) -> float:
        """The fastest offered rate of a trial that lost at most `tolerance`; 0 when none did."""
        return max((t.rate for t in self.trials if t.loss <= self.tolerance), default=0.0)

    @property
    def capped(self) -> bool:
        """The first trial, at the top rate, already passed: the figure is the offered maximum."""
        return bool(self.trials) and self.trials[0].loss <= self.tolerance


def search(run: Callable[[float], Trial], top: float, steps: int, tolerance: float = LOSS_TOLERANCE,
           extra_steps: int = EXTRA_STEPS) -> Search:
    """RFC 2544's binary search for the fastest rate losing at most `tolerance`, seeded by an
    overload trial so that few steps suffice.

    The first trial offers `top`. A path that loses more than `tolerance` of it delivered about
    what it can carry (a little less on a small machine, where the flooding sender takes CPU from
    the path); the search then brackets between nothing and `SEED_HIGH` times that, starts at
    `SEED_START` times it and halves the bracket `steps` times, and up to `extra_steps` more while
    no trial has passed yet (so that a figure exists). Both figures (loss-free, within tolerance)
    are read from the same trials.
    """
    first = run(top)
    trials = [first]
    if first.loss <= tolerance:
        return Search(tuple(trials), tolerance, 0.0)
    delivered = first.delivered_rate
    low, high = 0.0, min(top, SEED_HIGH * delivered) if delivered > 0 else top
    rate = SEED_START * delivered if delivered > 0 else top / 16
    for step in range(steps + extra_steps):
        if step >= steps and low > 0:
            break
        trial = run(rate)
        trials.append(trial)
        if trial.loss <= tolerance:
            low = rate
        else:
            high = rate
        rate = (low + high) / 2
    return Search(tuple(trials), tolerance, high - low)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q% of the values at or below it)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} outside (0, 100]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def limiting_side(appliance: float, ceiling: float, higher_is_better: bool = True, ratio: float = LIMIT_RATIO) -> Side:
    """The appliance when its figure is worse than the ceiling by more than `ratio` allows (below
    ratio × ceiling, or for latencies above ceiling / ratio), else the harness."""
    if higher_is_better:
        return Side.HARNESS if appliance >= ratio * ceiling else Side.APPLIANCE
    return Side.HARNESS if appliance * ratio <= ceiling else Side.APPLIANCE


def gbps(pps: float, size: int) -> float:
    """Inner-packet bits per second, in Gbit/s."""
    return pps * size * 8 / 1e9


@dataclass(frozen=True)
class Thresholds:
    """One profile's optional PERF thresholds; a figure worse than its threshold is a warning."""

    no_drop_pps: Mapping[int, float] = field(default_factory=dict)
    no_drop_gbps: Mapping[int, float] = field(default_factory=dict)
    added_latency_p50_us: float | None = None
    added_latency_p99_us: float | None = None
    new_flows_per_s: float | None = None
    concurrent_flows: float | None = None


def default_thresholds_path() -> Path:
    return Path(__file__).resolve().parents[1] / "conformance" / "perf-thresholds.yaml"


def load_thresholds(path: Path, profile: str) -> Thresholds:
    """The thresholds of `profile` in `path` (none when the profile has no entry); the file's shape
    is `schemas/perf-thresholds.schema.json`."""
    raw = load_validated(Path(path), "perf-thresholds.schema.json")["profiles"].get(profile) or {}
    return Thresholds(**{key: ({int(size): float(v) for size, v in value.items()} if isinstance(value, dict) else float(value))
                         for key, value in raw.items()})


def throughput_warnings(thresholds: Thresholds, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Threshold misses of the loss-free throughput records (`criterion` no-drop)."""
    misses = []
    for record in records:
        if record.get("criterion") != "no-drop":
            continue
        size = int(record["size"])
        for key, unit, threshold in (("pps", "packets/s", thresholds.no_drop_pps.get(size)),
                                     ("gbps", "Gbit/s", thresholds.no_drop_gbps.get(size))):
            if threshold is not None and record[key] < threshold:
                misses.append(f"loss-free throughput at {size} B is {record[key]:.4g} {unit}, below the threshold {threshold:g}")
    return misses


def minimum_warning(name: str, value: float, threshold: float | None) -> list[str]:
    return [] if threshold is None or value >= threshold else [f"{name} is {value:.4g}, below the threshold {threshold:g}"]


def maximum_warning(name: str, value: float, threshold: float | None) -> list[str]:
    return [] if threshold is None or value <= threshold else [f"{name} is {value:.4g}, above the threshold {threshold:g}"]
