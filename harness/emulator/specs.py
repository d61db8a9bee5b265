"""What the emulator is configured with: endpoints, targets and the load balancer's attributes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from harness.flows import Timeouts
from harness.profiles import Profile, get_profile
from harness.topology import Stickiness


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    eni_id: int
    attachment_id: int
    zone: str


@dataclass(frozen=True)
class TargetSpec:
    name: str
    address: str
    zone: str

    @property
    def packed(self) -> bytes:
        return ipaddress.IPv4Address(self.address).packed


@dataclass(frozen=True)
class Settings:
    stickiness: Stickiness
    timeouts: Timeouts
    cross_zone: bool = False
    strict: bool = False
    rebalance: bool = False
    deregistration_delay_s: float = 300.0
    profile: str = "aws"

    def __post_init__(self) -> None:
        """A profile that forces a stickiness (tencent: 3-tuple) rejects any other."""
        self.gwlb_profile.stickiness(self.stickiness)

    @property
    def gwlb_profile(self) -> Profile:
        return get_profile(self.profile)


