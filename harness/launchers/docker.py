"""`launch.kind: docker`: each target is a container of the descriptor's image.

The container starts with no network of Docker's (`--network none`: only `lo`), `NET_ADMIN` and
`/dev/net/tun`, named `gwlb-<run id>-a<N>` and labelled with the run's ID and its target name.
The launcher then moves the target's veth ends (`a<N>-eth0`, and `a<N>-eth1` in two-arm
topologies) from the target's mininet node into the container's network namespace and configures
them from the host with `nsenter` (the container's /proc/sys is read-only, and its image needs no
`ip`), turning IPv6 back on as in a process target's namespace. The appliance may therefore start
a moment before its interface exists; it should listen on the wildcard address, as the reference
appliance and gwlbtun do.

Docker's own networking is never used, so no bridge exists in the root namespace and Docker's
iptables rules (its FORWARD policy, NAT) never see the testbed's packets: those only cross veths
between namespaces the testbed created. At stop the container's output (`docker logs`) is appended
to the target's log and the container is removed, by ID.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.descriptor import Descriptor, LaunchKind
from harness.errors import HarnessError
from harness.launchers import TargetContext, register, run_in_namespace
from harness.runs import CONTAINER_PREFIX, LABEL_RUN, LABEL_TARGET, process_start

STOP_GRACE_S = 3
IPV6_ON = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"]
"""Docker turns IPv6 off in a container without networks; inner IPv6 needs it on the tun devices."""


def docker(*args: str, timeout_s: float = 60) -> str:
    """Run a docker command; its standard output, or a HarnessError with what it said."""
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise HarnessError("launch.kind docker needs the docker command (make setup installs docker.io)") from None
    except subprocess.TimeoutExpired:
        raise HarnessError(f"`docker {' '.join(args[:2])}` did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        said = [line for line in done.stderr.strip().splitlines() if "--help" not in line]
        raise HarnessError(f"`docker {' '.join(args[:2])} ...` failed: {' '.join(said) or f'exit {done.returncode}'}")
    return done.stdout.strip()


def container_name(run_id: str, target: str) -> str:
    return f"{CONTAINER_PREFIX}{run_id}-{target}"


@dataclass
class RunningContainer:
    container_id: str
    name: str
    image: str
    log_path: Path
    namespace_pid: int = 0
    _start: int | None = None
    _stopped: bool = field(default=False, repr=False)

    def attach(self) -> None:
        """Learn the container's init PID, whose network namespace is the container's."""
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", self.container_id))
        self._start = process_start(pid) if pid else None
        if self._start is None:
            raise HarnessError(
                f"container {self.name} ({self.image}) {self.describe_exit()} before its interfaces "
                f"could be attached; its output: {self.output_tail()}"
            )
        self.namespace_pid = pid

    def alive(self) -> bool:
        return self._start is not None and process_start(self.namespace_pid) == self._start

    def describe_exit(self) -> str:
        state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}",
                       self.container_id)
        status, code, oom = state.split()
        if status == "running":
            return "still running"
        if oom == "true":
            return "was killed for lack of memory"
        return f"exited with status {code}"

    def output_tail(self, limit: int = 500) -> str:
        done = subprocess.run(["docker", "logs", "--tail", "20", self.container_id],
                              capture_output=True, text=True, timeout=30)
        text = (done.stdout + done.stderr).strip()
        return text[-limit:] or "(none)"

    def crash(self) -> None:
        """Freeze every process of the container: its interfaces stay, nothing answers."""
        docker("pause", self.container_id)

    def revive(self) -> bool:
        docker("unpause", self.container_id)
        return True

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        subprocess.run(["docker", "unpause", self.container_id], capture_output=True, timeout=60)
        subprocess.run(["docker", "stop", "--time", str(STOP_GRACE_S), self.container_id],
                       capture_output=True, timeout=STOP_GRACE_S + 60)
        with self.log_path.open("ab") as log:
            subprocess.run(["docker", "logs", self.container_id], stdout=log, stderr=log, timeout=60)
        docker("rm", "--force", self.container_id)


@register(LaunchKind.DOCKER)
def launch_container(descriptor: Descriptor, node: Any, context: TargetContext) -> RunningContainer:
    image = descriptor.launch.image
    assert image is not None
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode != 0:
        raise HarnessError(
            f"image {image} is not in the local Docker engine: build it (`gwlb-conformance images build` "
            "for this project's images) or load it"
        )
    name = container_name(context.run_id, context.name)
    command = shlex.split(context.substitute(descriptor.launch.command)) if descriptor.launch.command else []
    env = [arg for key, value in descriptor.launch.env for arg in ("--env", f"{key}={context.substitute(value)}")]
    context.creating_container(name)
    try:
        container_id = docker(
            "run", "--detach", "--name", name, "--hostname", context.name,
            "--label", f"{LABEL_RUN}={context.run_id}", "--label", f"{LABEL_TARGET}={context.name}",
            "--network", "none", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--device", "/dev/net/tun",
            "--log-driver", "json-file", *env, image, *command,
        )
    except HarnessError:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)
        raise
    running = RunningContainer(container_id, name, image, context.log_path)
    try:
        running.attach()
        for intf in context.interfaces:
            moved = node.cmd(f"ip link set dev {intf.name} netns {running.namespace_pid}").strip()
            if moved:
                raise HarnessError(f"moving {intf.name} into container {name}: {moved}")
        run_in_namespace(running.namespace_pid, [IPV6_ON, *context.network_commands()], f"container {name}")
    except BaseException:
        running.stop()
        raise
    return running
