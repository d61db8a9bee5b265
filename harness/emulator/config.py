"""What the testbed tells the emulator process: one JSON file written before it starts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.descriptor import HealthProtocol
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Timeouts
from harness.topology import Stickiness


@dataclass(frozen=True)
class EndpointTun:
    """Where an endpoint's steered traffic enters the emulator: a tun in the endpoint's netns."""

    spec: EndpointSpec
    netns: str
    tun: str


@dataclass(frozen=True)
class ProbeSettings:
    protocol: HealthProtocol
    port: int
    path: str
    matcher: tuple[int, int]
    interval_s: float
    timeout_s: float
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class DaemonConfig:
    address: str
    endpoints: tuple[EndpointTun, ...]
    targets: tuple[TargetSpec, ...]
    settings: Settings
    probe: ProbeSettings
    control_socket: str
    registered: tuple[int, ...]
    flow_log: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), default=_enum_value, indent=2))

    @classmethod
    def read(cls, path: Path) -> DaemonConfig:
        raw = json.loads(path.read_text())
        settings = raw["settings"]
        probe = raw["probe"]
        return cls(
            address=raw["address"],
            endpoints=tuple(
                EndpointTun(EndpointSpec(**e["spec"]), e["netns"], e["tun"]) for e in raw["endpoints"]
            ),
            targets=tuple(TargetSpec(**t) for t in raw["targets"]),
            settings=Settings(
                stickiness=Stickiness(settings["stickiness"]),
                timeouts=Timeouts(**settings["timeouts"]),
                cross_zone=settings["cross_zone"],
                strict=settings["strict"],
                rebalance=settings["rebalance"],
                deregistration_delay_s=settings["deregistration_delay_s"],
            ),
            registered=tuple(raw["registered"]),
            probe=ProbeSettings(**{**probe, "protocol": HealthProtocol(probe["protocol"]), "matcher": tuple(probe["matcher"])}),
            control_socket=raw["control_socket"],
            flow_log=raw.get("flow_log", ""),
        )


def _enum_value(value: object) -> object:
    return getattr(value, "value", str(value))
