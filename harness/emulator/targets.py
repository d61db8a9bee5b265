"""The target group's membership: registration, draining and health, and the choice of a target
for a new flow (healthy, registered, not draining, in the endpoint's zone unless cross-zone).

AWS states surface here: `unused` (Target.NotRegistered), `draining`
(Target.DeregistrationInProgress); the health checker adds initial/healthy/unhealthy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from harness.emulator.specs import TargetSpec
from harness.profiles import AllUnhealthy


class NoTarget(Exception):
    """No registered target can take a new flow from this zone."""


@dataclass
class Slot:
    spec: TargetSpec
    registered: bool
    healthy: bool = False
    draining_until: float | None = None


class TargetPool:
    def __init__(
        self,
        targets: list[TargetSpec],
        registered: Iterable[int],
        cross_zone: bool,
        clock: Callable[[], float],
        rng: random.Random,
        all_unhealthy: AllUnhealthy = AllUnhealthy.PIN_RANDOM,
    ) -> None:
        chosen = set(registered)
        self.all_unhealthy = all_unhealthy
        self.slots = [Slot(spec, i in chosen) for i, spec in enumerate(targets)]
        self.cross_zone = cross_zone
        self._clock = clock
        self._rng = rng

    def eligible(self, zone: str) -> list[int]:
        return [
            i for i, s in enumerate(self.slots)
            if s.registered and s.draining_until is None and (self.cross_zone or s.spec.zone == zone)
        ]

    def choose(self, zone: str, digest: int) -> int:
        """Healthy eligible targets by hash; if none is healthy, what the profile does then: a
        random eligible one (AWS pins each new flow to a random target) or every eligible one by
        hash (Tencent treats all as healthy)."""
        eligible = self.eligible(zone)
        if not eligible:
            raise NoTarget(f"no registered target for zone {zone}")
        healthy = [i for i in eligible if self.slots[i].healthy]
        if healthy:
            return healthy[digest % len(healthy)]
        if self.all_unhealthy is AllUnhealthy.SPREAD_ALL:
            return eligible[digest % len(eligible)]
        return self._rng.choice(eligible)

    def register(self, index: int) -> None:
        slot = self.slots[index]
        slot.registered, slot.draining_until = True, None

    def deregister(self, index: int, delay_s: float) -> None:
        slot = self.slots[index]
        if slot.registered and slot.draining_until is None:
            slot.draining_until = self._clock() + delay_s

    def drained(self) -> list[int]:
        """Targets whose deregistration delay has ended; they leave the group now."""
        now = self._clock()
        done = [i for i, s in enumerate(self.slots) if s.draining_until is not None and now >= s.draining_until]
        for index in done:
            self.slots[index].registered, self.slots[index].draining_until = False, None
        return done

    def set_health(self, index: int, healthy: bool) -> None:
        self.slots[index].healthy = healthy

    def healthy(self) -> set[int]:
        return {i for i, s in enumerate(self.slots) if s.healthy and s.registered}

    def registration(self, index: int) -> str:
        slot = self.slots[index]
        if not slot.registered:
            return "unused"
        return "draining" if slot.draining_until is not None else "registered"
