"""Runs are isolated and clean up after themselves, even after the harness is killed.

    run A ─┐                         run B (started after A was SIGKILLed)
           ├─ nodes, appliances,        └─ reaps what A's registry entry names, and only that:
           │  emulator, tcpdump            its PIDs (start times checked), its containers
           └─ /run/gwlb-conformance/<A>.json

The registry itself (harness/runs.py) is tested without root on processes this test starts; the
end-to-end cases run the real CLI as root: two runs at once, a SIGKILLed run, an appliance that
floods the GWLB, and `up` / `shell` / `down`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import runs

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
QUICK = ["-k", "test_encapsulation or test_flows or test_mtu"]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root")


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def _dead_pid() -> runs.ProcessRef:
    process = subprocess.Popen(["true"])
    ref = runs.ProcessRef(process.pid, runs.process_start(process.pid) or 0, "gone")
    process.wait()
    return ref


def test_process_start_identifies_a_live_process_only() -> None:
    sleeper = _sleeper()
    try:
        start = runs.process_start(sleeper.pid)
        assert start is not None and runs.ProcessRef(sleeper.pid, start, "sleep").alive()
        assert not runs.ProcessRef(sleeper.pid, start + 1, "a reused PID").alive()
    finally:
        sleeper.kill()
    time.sleep(0.1)
    assert runs.process_start(sleeper.pid) is None, "a zombie counts as gone"
    sleeper.wait()


def test_record_is_written_at_every_change_and_removed_at_close(tmp_path: Path) -> None:
    record = runs.RunRecord.open("abc123", "run", tmp_path / "out", "default", directory=tmp_path)
    path = tmp_path / "abc123.json"
    leftover = _sleeper()
    record.add_process(leftover.pid, "outlived the teardown")
    record.add_container("gwlb-abc123-a1")
    record.set_nodes({"c1": 10, "a1": 11})
    entry = runs.RunEntry.from_json(path.read_text())
    assert entry == record.entry
    assert (entry.kind, entry.out, entry.topology) == ("run", str(tmp_path / "out"), "default")
    assert entry.containers == ("gwlb-abc123-a1",)
    assert entry.harness.pid == os.getpid() and entry.processes[0].what == "outlived the teardown"
    assert entry.node_pid("a1") == 11
    with pytest.raises(Exception, match="run abc123 has no node 'zz'; its nodes: a1, c1"):
        entry.node_pid("zz")
    assert [e.run_id for e in runs.live_runs("run", tmp_path)] == ["abc123"]
    record.close()
    assert not path.exists()
    assert leftover.wait(5) == -signal.SIGTERM, "closing a record stops what outlived the teardown"


def test_reaping_stops_only_what_a_dead_run_recorded(tmp_path: Path) -> None:
    ours, bystander = _sleeper(), _sleeper()
    try:
        dead = runs.RunEntry(
            "dead01", "run", _dead_pid(), "/nowhere", "default",
            processes=(
                runs.ProcessRef(ours.pid, runs.process_start(ours.pid) or 0, "appliance"),
                runs.ProcessRef(bystander.pid, (runs.process_start(bystander.pid) or 0) + 7, "PID reused since"),
            ),
        )
        (tmp_path / "dead01.json").write_text(dead.to_json())
        live = runs.RunRecord.open("live01", "run", tmp_path, "default", directory=tmp_path)
        live.add_process(bystander.pid, "a live run's process")
        assert [e.run_id for e in runs.reap_dead_runs(tmp_path)] == ["dead01"]
        assert ours.wait(5) == -signal.SIGTERM
        assert bystander.poll() is None, "a live run's process, and a reused PID, are never signalled"
        assert sorted(p.name for p in tmp_path.glob("*.json")) == ["live01.json"]
        live.close()
    finally:
        for process in (ours, bystander):
            process.kill()
            process.wait()


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _named_netns() -> str:
    return subprocess.run(["ip", "-all", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _processes_marked(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"GWLB_TEST_RUN={marker}".encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _start_run(out: Path, marker: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "run", "--quiet", "--out", str(out), *args],
                            env={**os.environ, "GWLB_TEST_RUN": marker},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _verdict(out: Path) -> str:
    return json.loads((out / "results.json").read_text())["verdict"]


def _end_to_end(test):  # type: ignore[no-untyped-def]
    return pytest.mark.requires_root(pytest.mark.slow(root_only(test)))


@_end_to_end
def test_two_concurrent_runs_both_conformant(tmp_path: Path) -> None:
    before = _links()
    marker = uuid.uuid4().hex
    outs = [tmp_path / "first", tmp_path / "second"]
    started = [_start_run(out, marker, *QUICK) for out in outs]
    for process, out in zip(started, outs):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stdout[-2000:] + stderr[-2000:]
        assert _verdict(out) == "CONFORMANT"
    ids = {json.loads((out / "results.json").read_text())["run"]["id"] for out in outs}
    assert len(ids) == 2
    assert _links() == before and _processes_marked(marker) == []


def _registry_entry(out: Path, timeout_s: float = 60) -> runs.RunEntry:
    """The registry entry of the run writing to `out`, once its appliances run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in runs.entries():
            if entry.out == str(out) and any(p.what.startswith("appliance") for p in entry.processes):
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no run writing to {out} registered its appliances within {timeout_s:g} s")


@_end_to_end
def test_sigkilled_run_is_cleaned_up_by_the_next_run(tmp_path: Path) -> None:
    before = (_links(), _named_netns())
    marker = uuid.uuid4().hex
    killed = _start_run(tmp_path / "killed", marker)
    entry = _registry_entry(tmp_path / "killed")
    time.sleep(1.0)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    outliving = {p.pid for p in entry.processes if p.what.startswith(("appliance", "GWLB")) and p.alive()}
    assert outliving, "a SIGKILLed run leaves its processes behind: this test needs that to mean anything"
    assert outliving <= set(_processes_marked(marker))

    done = subprocess.run([*CLI, "run", "--quiet", "--out", str(tmp_path / "next"), "-k", "test_encapsulation"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"removing the leftovers of run {entry.run_id}" in done.stderr
    assert _processes_marked(marker) == []
    assert (_links(), _named_netns()) == before
    assert entry.run_id not in {e.run_id for e in runs.entries()}


@_end_to_end
def test_appliance_flooding_the_gwlb_still_gives_a_report(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    out = tmp_path / "flood"
    flood = REPO / "appliance-images" / "faulty" / "floods-gwlb" / "appliance.yaml"
    process = _start_run(out, marker, "--appliance", str(flood), "-k", "test_encapsulation or test_flows")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode in (0, 1), stdout[-2000:] + stderr[-2000:]
    assert _verdict(out) in ("CONFORMANT", "NOT_CONFORMANT")
    assert (out / "pcaps" / "gwlb.pcap").stat().st_size > 100_000, "the GWLB capture should hold the flood"
    assert _processes_marked(marker) == [], "the flooding sender must stop with its appliance"


def _wait_for_text(path: Path, needle: str, process: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while needle not in (text := path.read_text() if path.exists() else ""):
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"`up` did not print {needle!r}: {text}")
        time.sleep(0.1)
    return text


@_end_to_end
def test_up_shell_down(tmp_path: Path) -> None:
    before = _links()
    printed_to = tmp_path / "up.out"
    with printed_to.open("wb") as stdout:
        up = subprocess.Popen([*CLI, "up", "--out", str(tmp_path / "up")], stdout=stdout, stderr=subprocess.DEVNULL)
    try:
        printed = _wait_for_text(printed_to, "up: nodes:", up, timeout_s=120)
        run_id = printed.split(" as run ")[1].split()[0]

        def shell(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CLI, "shell", "--run", run_id, *args], capture_output=True, text=True, timeout=60)

        addresses = shell("c1", "-c", "ip -o -4 addr show dev c1-eth0")
        assert addresses.returncode == 0 and "10.0.1.10/24" in addresses.stdout, addresses
        ping = shell("c1", "-c", "ping -n -c 1 -W 2 10.0.2.10")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert shell("a1", "-c", "exit 3").returncode == 3
        unknown = shell("zz", "-c", "true")
        assert unknown.returncode == 2 and f"run {run_id} has no node 'zz'" in unknown.stderr
        assert "Traceback" not in unknown.stderr

        down = subprocess.run([*CLI, "down", "--run", run_id], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0 and f"run {run_id} (default) stopped" in down.stdout, down
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    assert _links() == before
    assert run_id not in {e.run_id for e in runs.entries()}
    gone = subprocess.run([*CLI, "shell", "--run", run_id, "c1", "-c", "true"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and f"no topology with run ID {run_id} is up" in gone.stderr


@_end_to_end
def test_join_creates_a_late_endpoint_in_a_running_up(tmp_path: Path) -> None:
    printed_to = tmp_path / "up.out"
    topology = REPO / "topologies" / "multi-endpoint.yaml"
    with printed_to.open("wb") as stdout:
        up = subprocess.Popen([*CLI, "up", "--topology", str(topology), "--out", str(tmp_path / "up")],
                              stdout=stdout, stderr=subprocess.DEVNULL)
    try:
        printed = _wait_for_text(printed_to, "up: nodes:", up, timeout_s=120)
        run_id = printed.split(" as run ")[1].split()[0]
        assert "up: late endpoints: gwlbe4 (`gwlb-conformance join NAME` creates one)" in printed

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)

        before = cli("shell", "--run", run_id, "f1", "-c", "true")
        assert before.returncode == 2 and "has no node 'f1'" in before.stderr
        joined = cli("join", "--run", run_id, "gwlbe4")
        assert joined.returncode == 0, joined.stderr
        assert f"endpoint gwlbe4 joined run {run_id} (multi-endpoint); new nodes: f1, gwlbe4, v1" in joined.stdout
        ping = cli("shell", "--run", run_id, "f1", "-c", "ping -n -c 2 -W 2 10.2.2.10")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        again = cli("join", "--run", run_id, "gwlbe4")
        assert again.returncode == 2 and "endpoint gwlbe4 has joined already" in again.stderr
        unknown = cli("join", "--run", run_id, "gwlbe1")
        assert unknown.returncode == 2 and "has no late-joining endpoint 'gwlbe1' (late ones: gwlbe4)" in unknown.stderr
        assert "Traceback" not in again.stderr + unknown.stderr
        assert cli("down", "--run", run_id).returncode == 0
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    assert not (tmp_path / "up" / "up.sock").exists()
