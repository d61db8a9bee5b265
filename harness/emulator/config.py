"""What the testbed tells the emulator process: one JSON file written before it starts, and the
endpoints it adds while it runs (the control API's `POST /endpoints` body)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> EndpointTun:
        """The body of the control API's `POST /endpoints`; a ValueError names what is wrong."""
        if not isinstance(raw, dict) or set(raw) != {"spec", "netns", "tun"}:
            raise ValueError(f"expected an object with keys netns, spec, tun; got {_shape(raw)}")
        spec = raw["spec"]
        fields = {"name": str, "eni_id": int, "attachment_id": int, "zone": str}
        if not isinstance(spec, dict) or set(spec) != set(fields):
            raise ValueError(f"spec: expected an object with keys {', '.join(sorted(fields))}; got {_shape(spec)}")
        for key, kind in fields.items():
            value = spec[key]
            if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
                raise ValueError(f"spec.{key}: expected a non-empty {kind.__name__}, got {value!r}")
        for key in ("eni_id", "attachment_id"):
            if not 0 <= spec[key] < 1 << 64:
                raise ValueError(f"spec.{key}: {spec[key]} does not fit in 64 bits")
        for key in ("netns", "tun"):
            if not isinstance(raw[key], str) or not raw[key]:
                raise ValueError(f"{key}: expected a non-empty string, got {raw[key]!r}")
        return cls(EndpointSpec(**spec), raw["netns"], raw["tun"])


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
                profile=settings["profile"],
            ),
            registered=tuple(raw["registered"]),
            probe=ProbeSettings(**{**probe, "protocol": HealthProtocol(probe["protocol"]), "matcher": tuple(probe["matcher"])}),
            control_socket=raw["control_socket"],
            flow_log=raw.get("flow_log", ""),
        )


def _shape(value: Any) -> str:
    return f"keys {', '.join(sorted(map(str, value)))}" if isinstance(value, dict) else type(value).__name__


def _enum_value(value: object) -> object:
    return getattr(value, "value", str(value))
