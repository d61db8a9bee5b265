"""The appliance descriptor (`appliance.yaml`): what a vendor writes to put an appliance under test.

Loaded into frozen data validated against `schemas/appliance.schema.json`. Placeholders such as
`{appliance_ip}`, `{gwlb_ip}`, `{index}` and `{appliance_dir}` are substituted per target by the
launcher, not here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.yamlconfig import load_validated


class LaunchKind(enum.Enum):
    PROCESS = "process"
    DOCKER = "docker"


class HealthProtocol(enum.Enum):
    TCP = "TCP"
    HTTP = "HTTP"
    HTTPS = "HTTPS"


@dataclass(frozen=True)
class Launch:
    kind: LaunchKind
    command: str | None
    image: str | None
    env: tuple[tuple[str, str], ...]
    ready_tcp_port: int | None
    ready_timeout_s: float


@dataclass(frozen=True)
class HealthCheck:
    """AWS target-group health check; timing fields None mean "the timers mode decides"."""

    protocol: HealthProtocol = HealthProtocol.TCP
    port: int = 80
    path: str = "/"
    matcher: tuple[int, int] = (200, 399)
    interval_s: float | None = None
    timeout_s: float | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None


@dataclass(frozen=True)
class Descriptor:
    name: str
    version: str
    launch: Launch
    health_check: HealthCheck
    mtu: int
    sysctls: tuple[tuple[str, str], ...]
    claims: frozenset[str] = field(default_factory=frozenset)
    path: Path = Path(".")

    @property
    def directory(self) -> Path:
        return self.path.parent


KNOWN_CLAIMS = frozenset({"ipv6", "jumbo", "two-arm", "multi-endpoint", "mid-stream-tcp"})

_SAMPLE = dict(appliance_ip="10.0.0.11", gwlb_ip="10.0.0.1", index=0, appliance_dir="/", name="a1", egress_gw="10.250.0.1")
PLACEHOLDERS = tuple(_SAMPLE)
"""What the launcher substitutes (with `str.format`) in `launch.command` and `launch.env` values."""


def load_descriptor(path: Path) -> Descriptor:
    """Read, validate and check an `appliance.yaml`; every problem is a `ConfigError`."""
    path = Path(path)
    data = load_validated(path, "appliance.schema.json")
    return Descriptor(
        name=data["name"],
        version=data["version"],
        launch=_launch(path, data["launch"]),
        health_check=_health_check(path, data.get("health_check", {})),
        mtu=data.get("interface", {}).get("mtu", 9001),
        sysctls=tuple((key, str(value)) for key, value in data.get("sysctls", {}).items()),
        claims=frozenset(data.get("claims", ())),
        path=path.resolve(),
    )


def _launch(path: Path, raw: dict[str, Any]) -> Launch:
    kind = LaunchKind(raw["kind"])
    needed = "command" if kind is LaunchKind.PROCESS else "image"
    if needed not in raw:
        expected = f"expected it with kind {kind.value}"
        raise ConfigError(path, f"launch.{needed}", f"required key is missing; {expected}")
    if kind is LaunchKind.PROCESS and "image" in raw:
        expected = "expected no image with kind process"
        raise ConfigError(path, "launch.image", f"only used with kind docker; {expected}")
    env = tuple((key, str(value)) for key, value in raw.get("env", {}).items())
    if "command" in raw:
        _check_template(path, "launch.command", raw["command"])
    for key, value in env:
        _check_template(path, f"launch.env.{key}", value)
    ready = raw.get("ready", {})
    return Launch(
        kind=kind,
        command=raw.get("command"),
        image=raw.get("image"),
        env=env,
        ready_tcp_port=ready.get("tcp_port"),
        ready_timeout_s=ready.get("timeout_s", 30),
    )


def _check_template(path: Path, key: str, text: str) -> None:
    """Fail now on what the launcher's `str.format` would fail on at start-up."""
    allowed = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    expected = f"expected one of: {allowed} (write other braces doubled: {{{{ and }}}})"
    try:
        text.format(**_SAMPLE)
    except KeyError as exc:
        raise ConfigError(path, key, f"unknown placeholder {{{exc.args[0]}}}; {expected}") from None
    except (ValueError, IndexError, AttributeError) as exc:
        problem = f"{text!r} is not a valid template ({exc})"
        raise ConfigError(path, key, f"{problem}; {expected}") from None


def _health_check(path: Path, raw: dict[str, Any]) -> HealthCheck:
    protocol = HealthProtocol(raw.get("protocol", HealthProtocol.TCP.value))
    if protocol is HealthProtocol.TCP:
        for key in ("path", "matcher"):
            if key in raw:
                expected = "only used with protocol HTTP or HTTPS, not TCP"
                raise ConfigError(path, f"health_check.{key}", expected)
    interval, timeout = raw.get("interval_s"), raw.get("timeout_s")
    if interval is not None and timeout is not None and timeout >= interval:
        raise ConfigError(
            path, "health_check.timeout_s",
            f"{timeout} is not a valid value; expected less than interval_s ({interval})",
        )
    given = ("port", "path", "interval_s", "timeout_s", "healthy_threshold", "unhealthy_threshold")
    fields = {key: raw[key] for key in given if key in raw}
    if "matcher" in raw:
        fields["matcher"] = _matcher(path, str(raw["matcher"]))
    return HealthCheck(protocol=protocol, **fields)


def _matcher(path: Path, text: str) -> tuple[int, int]:
    """AWS's success codes as an inclusive range; the schema has already checked the shape."""
    if "," in text:
        raise ConfigError(
            path, "health_check.matcher",
            f"{text!r}: lists of codes are not supported yet; "
            'expected one code like "200" or a range like "200-399"',
        )
    low, _, high = text.partition("-")
    codes = int(low), int(high or low)
    if not 200 <= codes[0] <= codes[1] <= 399:
        raise ConfigError(
            path, "health_check.matcher",
            f"{text!r} is not a valid value; expected codes from 200 to 399, the lower first",
        )
    return codes
