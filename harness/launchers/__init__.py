"""Appliance launchers, one module per `launch.kind`, each registering itself here.

A launcher starts one appliance target inside its testbed node and can stop it; the testbed
never needs to know how (process, container, ...).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.descriptor import Descriptor, LaunchKind
from harness.errors import HarnessError


@dataclass(frozen=True)
class TargetContext:
    """What is substituted into the descriptor's placeholders for one target."""

    name: str
    index: int
    appliance_ip: str
    gwlb_ip: str
    appliance_dir: str
    log_path: Path

    def substitute(self, text: str) -> str:
        return text.format(
            name=self.name, index=self.index, appliance_ip=self.appliance_ip,
            gwlb_ip=self.gwlb_ip, appliance_dir=self.appliance_dir,
        )


class Running(Protocol):
    def alive(self) -> bool: ...
    def stop(self) -> None: ...
    def describe_exit(self) -> str: ...


Launcher = Callable[[Descriptor, Any, TargetContext], Running]
_LAUNCHERS: dict[LaunchKind, Launcher] = {}


def register(kind: LaunchKind) -> Callable[[Launcher], Launcher]:
    def decorate(launcher: Launcher) -> Launcher:
        _LAUNCHERS[kind] = launcher
        return launcher

    return decorate


def launcher_for(kind: LaunchKind) -> Launcher:
    from harness.launchers import process  # noqa: F401  (registers itself)

    try:
        return _LAUNCHERS[kind]
    except KeyError:
        raise HarnessError(f"launch.kind {kind.value!r} is not supported yet") from None


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: only this PID, which the harness started."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
