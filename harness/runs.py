"""The run registry: what each live run started, so that a later run can remove a killed run's
leftovers, and so that `shell` and `down` can find a topology kept up by `up`.

A run killed with SIGKILL cannot tear down. The processes it started in its nodes (appliances,
emulator, tcpdump, echo servers: all started with `mnexec -da`, so each leads a session of its
own) outlive it and keep their network namespaces alive, and its containers keep running. So each
run writes `/run/gwlb-conformance/<run_id>.json` as it goes (atomically, at every change): its own
PID with the process's start time, every PID it starts with that start time (field 22 of
/proc/PID/stat), and every container name before the container is created. Before a run starts,
`reap_dead_runs` removes what the runs whose harness has died left behind, and only that: the
recorded PIDs whose start time still matches (a reused PID is never signalled; a process that
leads its own group is signalled with its group, which holds only what it forked), the recorded
containers by name, and the containers labelled with the dead run's ID. /run is a tmpfs, so
start times (clock ticks since boot) never meet a record from before a reboot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.errors import HarnessError

log = logging.getLogger("gwlb.runs")

REGISTRY = Path("/run/gwlb-conformance")
LABEL_RUN = "gwlb-conformance.run"
LABEL_TARGET = "gwlb-conformance.target"
CONTAINER_PREFIX = "gwlb-"
CONTROL_SOCKET = "emulator.sock"
UNIX_PATH_MAX = 107
_GRACE_S = 2.0


def check_folder(out: Path) -> None:
    """A run folder holds the emulator's control socket (and `up`'s join socket), and a Unix
    socket's path has room for 107 bytes; a longer folder is refused before anything is built."""
    path = bytes(out / CONTROL_SOCKET)
    if len(path) > UNIX_PATH_MAX:
        raise HarnessError(f"run folder {out}: too long for the control socket inside it ({out / CONTROL_SOCKET} has "
                           f"{len(path)} bytes, a Unix socket's path at most {UNIX_PATH_MAX}); choose a shorter --out")


def make_folder(out: Path) -> None:
    """Create a run folder (`check_folder` first); one that cannot be created is a HarnessError."""
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HarnessError(f"run folder {out}: cannot be created ({error.strerror}); choose another --out") from None


def new_run_id() -> str:
    """A short ID that names a run's global resources (containers) and its report folder."""
    return secrets.token_hex(3)


def process_start(pid: int) -> int | None:
    """The start time of a live (not zombie) process in clock ticks since boot, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """One process, identified by PID and start time so that a reused PID never matches."""

    pid: int
    start: int
    what: str

    def alive(self) -> bool:
        return process_start(self.pid) == self.start

    @classmethod
    def current(cls, what: str) -> ProcessRef:
        pid = os.getpid()
        start = process_start(pid)
        assert start is not None
        return cls(pid, start, what)


@dataclass(frozen=True)
class RunEntry:
    """What the registry holds about one run."""

    run_id: str
    kind: str
    harness: ProcessRef
    out: str
    topology: str
    processes: tuple[ProcessRef, ...] = ()
    containers: tuple[str, ...] = ()
    nodes: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunEntry:
        raw = json.loads(text)
        return cls(
            run_id=raw["run_id"],
            kind=raw["kind"],
            harness=ProcessRef(**raw["harness"]),
            out=raw["out"],
            topology=raw["topology"],
            processes=tuple(ProcessRef(**p) for p in raw["processes"]),
            containers=tuple(raw["containers"]),
            nodes=tuple((name, pid) for name, pid in raw["nodes"]),
        )

    def node_pid(self, name: str) -> int:
        for node, pid in self.nodes:
            if node == name:
                return pid
        known = ", ".join(node for node, _ in self.nodes)
        raise HarnessError(f"run {self.run_id} has no node {name!r}; its nodes: {known}")


@dataclass
class RunRecord:
    """This run's own entry; with `directory` None it is kept in memory only (library use)."""

    entry: RunEntry
    directory: Path | None = REGISTRY
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, run_id: str, kind: str, out: Path, topology: str, directory: Path | None = REGISTRY) -> RunRecord:
        entry = RunEntry(run_id, kind, ProcessRef.current(f"gwlb-conformance {kind}"), str(out), topology)
        record = cls(entry, directory)
        record._write()
        return record

    @classmethod
    def detached(cls, run_id: str) -> RunRecord:
        return cls.open(run_id, "library", Path("."), "", directory=None)

    @property
    def run_id(self) -> str:
        return self.entry.run_id

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / f"{self.entry.run_id}.json"

    def add_process(self, pid: int, what: str) -> None:
        start = process_start(pid)
        if start is not None:
            self._update(processes=(*self.entry.processes, ProcessRef(pid, start, what)))

    def add_container(self, name: str) -> None:
        self._update(containers=(*self.entry.containers, name))

    def set_nodes(self, nodes: dict[str, int]) -> None:
        self._update(nodes=tuple(sorted(nodes.items())))

    def close(self) -> None:
        """Forget the run, first stopping any recorded process that outlived the teardown (one cut
        short by an error), since once forgotten nothing would ever reap it."""
        self._closed = True
        if self.path is not None:
            stop_recorded(self.entry.processes)
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _update(self, **changes: object) -> None:
        self.entry = replace(self.entry, **changes)  # type: ignore[arg-type]
        self._write()

    def _write(self) -> None:
        if self.path is None or self._closed:
            return
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(self.entry.to_json())
        partial.replace(self.path)


def entries(directory: Path = REGISTRY) -> list[RunEntry]:
    """Every run in the registry, live or dead; unreadable files are skipped with a warning."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(RunEntry.from_json(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable run record %s: %s", path, error)
    return found


def live_runs(kind: str | None = None, directory: Path = REGISTRY) -> list[RunEntry]:
    return [e for e in entries(directory) if e.harness.alive() and kind in (None, e.kind)]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ignore_interrupts() -> None:
    """Called as teardown starts: a second Ctrl-C or SIGTERM must not cut it short and leave things behind."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def reap_dead_runs(directory: Path = REGISTRY) -> list[RunEntry]:
    """Remove the leftovers of every recorded run whose harness process is gone; return those runs."""
    if not directory.exists():
        return []
    reaped = []
    with _locked(directory):
        for entry in entries(directory):
            if entry.harness.alive():
                continue
            log.warning("removing the leftovers of run %s (%s, harness PID %d is gone)",
                        entry.run_id, entry.kind, entry.harness.pid)
            reap(entry)
            (directory / f"{entry.run_id}.json").unlink(missing_ok=True)
            reaped.append(entry)
    return reaped


def reap(entry: RunEntry) -> None:
    """Stop the run's recorded processes (newest first) and remove its containers."""
    stop_recorded(entry.processes)
    if entry.containers:
        remove_containers(entry.run_id, entry.containers)


def stop_recorded(processes: Sequence[ProcessRef]) -> None:
    """SIGTERM, then SIGKILL after a grace period, to those of `processes` still alive, newest first."""
    living = [p for p in reversed(processes) if p.alive()]
    for process in living:
        signal_verified(process, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while any(p.alive() for p in living) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in living:
        signal_verified(process, signal.SIGKILL)


def signal_verified(process: ProcessRef, signum: int) -> None:
    """Signal a recorded process (and its group if it leads one) only if it is still that process."""
    if not process.alive():
        return
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


def remove_containers(run_id: str, names: tuple[str, ...]) -> None:
    """`docker rm -f` the named containers, then any left labelled with the run's ID; gone is fine."""
    if shutil.which("docker") is None:
        log.warning("cannot remove containers %s of run %s: no docker command", ", ".join(names), run_id)
        return
    problems = _docker_rm(names)
    labelled = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label={LABEL_RUN}={run_id}"],
        capture_output=True, text=True, timeout=60,
    )
    problems += _docker_rm(tuple(labelled.stdout.split()))
    if problems:
        log.warning("removing containers of run %s: %s", run_id, "; ".join(problems))


def _docker_rm(containers: tuple[str, ...]) -> list[str]:
    if not containers:
        return []
    done = subprocess.run(["docker", "rm", "--force", *containers], capture_output=True, text=True, timeout=120)
    return [line for line in done.stderr.splitlines() if "No such container" not in line]
