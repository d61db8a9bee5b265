"""`launch.kind: process`: the command runs inside the target's network namespace."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from harness.descriptor import Descriptor, LaunchKind
from harness.launchers import TargetContext, register, stop_process


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    command: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_process(self.process)

    def describe_exit(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        return f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"


@register(LaunchKind.PROCESS)
def launch_process(descriptor: Descriptor, node: Any, context: TargetContext) -> RunningProcess:
    assert descriptor.launch.command is not None
    command = context.substitute(descriptor.launch.command)
    env = dict(os.environ)
    env.update({key: context.substitute(value) for key, value in descriptor.launch.env})
    log = context.log_path.open("ab")
    try:
        process = node.popen(shlex.split(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()
    return RunningProcess(process, command)
