"""Appliance launchers, one module per `launch.kind`, each registering itself here.

A launcher starts one appliance target and can stop it; the testbed never needs to know how
(process in the target's node, container, ...). The testbed hands each launcher a `TargetContext`:
the placeholders of the descriptor, the target's interfaces as they must be configured (address,
prefix, MTU, default route) and the descriptor's sysctls. The launcher configures them in whatever
network namespace the appliance ends up in, with the host's own tools (`nsenter`), so an image
needs no `ip` or `sysctl` of its own. It records what it starts in the run registry
(`harness/runs.py`) so that a killed run's leftovers can be found.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.descriptor import Descriptor, LaunchKind
from harness.errors import HarnessError
from harness.runs import RunRecord


@dataclass(frozen=True)
class Interface:
    """One interface of a target: `a<N>-eth0` faces the GWLB, `a<N>-eth1` the two-arm egress."""

    name: str
    address: str
    prefix_len: int
    mtu: int
    gateway: str | None = None


@dataclass(frozen=True)
class TargetContext:
    """Everything a launcher needs for one target: placeholders, interfaces, sysctls, the run."""

    name: str
    index: int
    appliance_ip: str
    gwlb_ip: str
    appliance_dir: str
    log_path: Path
    run_id: str = "local"
    interfaces: tuple[Interface, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    record: RunRecord | None = None
    egress_gw: str = ""

    def substitute(self, text: str) -> str:
        return text.format(
            name=self.name, index=self.index, appliance_ip=self.appliance_ip,
            gwlb_ip=self.gwlb_ip, appliance_dir=self.appliance_dir, egress_gw=self.egress_gw,
        )

    def network_commands(self) -> list[list[str]]:
        """The commands that give the target's namespace its addresses, routes and sysctls."""
        commands = [["ip", "link", "set", "dev", "lo", "up"]]
        for intf in self.interfaces:
            commands += [
                ["ip", "link", "set", "dev", intf.name, "mtu", str(intf.mtu), "up"],
                ["ip", "addr", "add", f"{intf.address}/{intf.prefix_len}", "dev", intf.name],
            ]
            if intf.gateway:
                commands.append(["ip", "route", "add", "default", "via", intf.gateway, "dev", intf.name])
        commands += [["sysctl", "-qw", f"{key}={value}"] for key, value in self.sysctls]
        return commands

    def started_process(self, pid: int, what: str) -> None:
        if self.record is not None:
            self.record.add_process(pid, what)

    def creating_container(self, name: str) -> None:
        if self.record is not None:
            self.record.add_container(name)


def run_in_namespace(pid: int, commands: list[list[str]], who: str) -> None:
    """Run each command with the host's tools in the network namespace of process `pid`."""
    for command in commands:
        done = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *command],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0 or done.stderr.strip():
            said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise HarnessError(f"configuring {who}: `{' '.join(command)}` said: {said}")


class Running(Protocol):
    """A started target. `namespace_pid` is a process in the namespace holding its interfaces."""

    namespace_pid: int

    def alive(self) -> bool: ...
    def stop(self) -> None: ...
    def describe_exit(self) -> str: ...
    def crash(self) -> None:
        """Die abruptly, as a crashed data plane would (checks of failover use it)."""
    def revive(self) -> bool:
        """Resume after `crash` in place; False when the target must be launched anew."""


Launcher = Callable[[Descriptor, Any, TargetContext], Running]
_LAUNCHERS: dict[LaunchKind, Launcher] = {}


def register(kind: LaunchKind) -> Callable[[Launcher], Launcher]:
    def decorate(launcher: Launcher) -> Launcher:
        _LAUNCHERS[kind] = launcher
        return launcher

    return decorate


def launcher_for(kind: LaunchKind) -> Launcher:
    from harness.launchers import docker, process  # noqa: F401  (each registers itself)

    try:
        return _LAUNCHERS[kind]
    except KeyError:
        raise HarnessError(f"launch.kind {kind.value!r} is not supported yet") from None


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: only this PID, which the harness started, and the
    process group it leads (processes started with `mnexec -d` lead their own, so the group holds
    only what they forked). The process is reaped last, so its PID and group ID cannot have been
    reused while they are signalled."""
    if process.returncode is not None:
        return
    _signal(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while not has_exited(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _signal(process.pid, signal.SIGKILL)
    process.wait()


def has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal(pid: int, signum: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass
