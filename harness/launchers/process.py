"""`launch.kind: process`: the command runs inside the target's node (its network namespace),
which the launcher first configures (addresses, routes, sysctls)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from harness.descriptor import Descriptor, LaunchKind
from harness.launchers import TargetContext, has_exited, register, run_in_namespace, stop_process


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    command: str
    namespace_pid: int

    def alive(self) -> bool:
        """Without reaping: a killed appliance stays a zombie until `stop`, so its PID and process
        group (what it forked) can still be signalled safely."""
        return self.process.returncode is None and not has_exited(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)

    def crash(self) -> None:
        """SIGKILL to the appliance's own process only: what it forked lives on, as after a crash."""
        os.kill(self.process.pid, signal.SIGKILL)

    def revive(self) -> bool:
        return False

    def describe_exit(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        return f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"


@register(LaunchKind.PROCESS)
def launch_process(descriptor: Descriptor, node: Any, context: TargetContext) -> RunningProcess:
    assert descriptor.launch.command is not None
    run_in_namespace(node.pid, context.network_commands(), context.name)
    command = context.substitute(descriptor.launch.command)
    env = dict(os.environ)
    env.update({key: context.substitute(value) for key, value in descriptor.launch.env})
    with context.log_path.open("ab") as log:
        process = node.popen(
            shlex.split(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    context.started_process(process.pid, f"appliance {context.name}")
    return RunningProcess(process, command, node.pid)
