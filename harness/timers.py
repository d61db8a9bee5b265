"""Timers modes: `faithful` uses AWS's values (certification), `accelerated` divides every timer
by ten and uses AWS's minimum thresholds so the suite is a quick CI gate. The report says which."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harness.descriptor import HealthCheck
from harness.flows import Timeouts
from harness.topology import Topology

AWS_OTHER_IDLE_S = 120
AWS_HEALTH_INTERVAL_S = 10
AWS_HEALTH_TIMEOUT_S = 5
AWS_HEALTHY_THRESHOLD = 5
AWS_UNHEALTHY_THRESHOLD = 2
ACCELERATION = 10
ACCELERATED_THRESHOLD = 2


class TimersMode(enum.Enum):
    FAITHFUL = "faithful"
    ACCELERATED = "accelerated"


@dataclass(frozen=True)
class HealthTiming:
    interval_s: float
    timeout_s: float
    healthy_threshold: int
    unhealthy_threshold: int


def flow_timeouts(mode: TimersMode, topology: Topology) -> Timeouts:
    scale = ACCELERATION if mode is TimersMode.ACCELERATED else 1
    return Timeouts(topology.gwlb.tcp_idle_timeout_s / scale, AWS_OTHER_IDLE_S / scale)


def health_timing(mode: TimersMode, check: HealthCheck) -> HealthTiming:
    interval = check.interval_s or AWS_HEALTH_INTERVAL_S
    timeout = check.timeout_s or AWS_HEALTH_TIMEOUT_S
    healthy = check.healthy_threshold or AWS_HEALTHY_THRESHOLD
    unhealthy = check.unhealthy_threshold or AWS_UNHEALTHY_THRESHOLD
    if mode is TimersMode.ACCELERATED:
        return HealthTiming(interval / ACCELERATION, timeout / ACCELERATION, ACCELERATED_THRESHOLD, ACCELERATED_THRESHOLD)
    return HealthTiming(interval, timeout, healthy, unhealthy)


def deregistration_delay(mode: TimersMode, topology: Topology) -> float:
    scale = ACCELERATION if mode is TimersMode.ACCELERATED else 1
    return topology.gwlb.deregistration_delay_s / scale
