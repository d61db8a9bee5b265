"""End to end: the real CLI against the reference appliance and every faulty appliance.

This is the proof that each verdict can fail: each faulty appliance must fail exactly the
requirements `appliance-images/faulty/expectations.yaml` names, for the right reason, while the
reference appliance passes them all. A faulty appliance's run selects only the checks of the
requirements its entry names (`--requirement`), which keeps the self-test quick. Every run must
leave no link, namespace or process behind.
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
import yaml

from harness.emulator.flowlog import FlowLogRecord

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
FAULTY = REPO / "appliance-images" / "faulty"
EXPECTATIONS = yaml.safe_load((FAULTY / "expectations.yaml").read_text())
TOPOLOGY_DEPENDENT = {"FLOW-MULTI-ENDPOINT", "FLOW-LATE-ENDPOINT", "FLOW-IPV6"}
UNCLAIMED_BY_REFERENCE = {"FLOW-TWO-ARM"}

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root"),
]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _processes_marked(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict | None, str]:
    """Run the CLI with a marker in its environment; check it left nothing behind."""
    marker = f"GWLB_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, "GWLB_TEST_RUN": marker.split("=")[1]}
    before = _links()
    out = tmp_path / "report"
    done = subprocess.run([*CLI, "run", "--quiet", "--out", str(out), *args], capture_output=True, text=True, env=env, timeout=300)
    assert _links() == before, "the run left links behind"
    assert _processes_marked(marker) == [], "the run left processes behind"
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return done, results, marker


def _statuses(results: dict) -> dict[str, str]:
    return {r["id"]: r["status"] for r in results["requirements"]}


def test_reference_appliance_is_conformant(tmp_path: Path) -> None:
    done, results, _ = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert results["verdict"] == "CONFORMANT"
    statuses = _statuses(results)
    assert {r for r, s in statuses.items() if s == "skip"} <= TOPOLOGY_DEPENDENT, statuses
    assert {r for r, s in statuses.items() if s == "not_claimed"} == UNCLAIMED_BY_REFERENCE, statuses
    assert {s for s in statuses.values()} <= {"pass", "skip", "not_claimed"}
    assert "index.html" in done.stdout
    assert (tmp_path / "report" / "junit.xml").exists()
    assert (tmp_path / "report" / "pcaps" / "gwlb.pcap").stat().st_size > 0
    assert 'href="flow-log.txt"' in (tmp_path / "report" / "index.html").read_text()
    _, *lines = (tmp_path / "report" / "flow-log.txt").read_text().splitlines()
    records = [FlowLogRecord.parse(line) for line in lines]
    assert len({(r.srcaddr, r.srcport, r.dstaddr, r.dstport, r.protocol) for r in records}) > 1000, "FLOW-CONCURRENT's flows are logged"


def test_reference_appliance_is_certified(tmp_path: Path) -> None:
    """--certify refuses skips: on the certification topology every check applies and passes."""
    done, results, _ = _run(tmp_path, "--certify", "--topology", str(REPO / "topologies" / "certification.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (results["verdict"], results["errors"]) == ("CONFORMANT", [])
    statuses = _statuses(results)
    assert {r for r, s in statuses.items() if s != "pass"} == UNCLAIMED_BY_REFERENCE, statuses


def test_reference_in_two_arm_mode(tmp_path: Path) -> None:
    done, results, _ = _run(tmp_path, "--topology", str(REPO / "topologies" / "two-arm-nat.yaml"),
                            "--appliance", str(REPO / "appliance-images" / "reference" / "appliance-two-arm.yaml"),
                            "--requirement", "FLOW-TWO-ARM", "--requirement", "FLOW-TCP-SYMMETRIC", "--requirement", "ENC-HDR-ECHO")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r: _statuses(results)[r] for r in ("FLOW-TWO-ARM", "FLOW-TCP-SYMMETRIC", "ENC-HDR-ECHO")} == dict.fromkeys(
        ("FLOW-TWO-ARM", "FLOW-TCP-SYMMETRIC", "ENC-HDR-ECHO"), "pass")


def test_independent_appliance_is_conformant(tmp_path: Path) -> None:
    """Issue #6: an appliance written from SPEC alone (appliance-images/independent), run only
    through its descriptor, gets no MUST failure. It replies from its socket bound to 6081, so
    its one failure is the SHOULD ENC-SRC-PORT."""
    done, results, _ = _run(tmp_path, "--appliance", str(REPO / "appliance-images" / "independent" / "appliance.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (results["verdict"], results["errors"]) == ("CONFORMANT", [])
    statuses = _statuses(results)
    assert {r for r, s in statuses.items() if s == "fail"} == {"ENC-SRC-PORT"}, statuses
    assert {r for r, s in statuses.items() if s == "skip"} <= TOPOLOGY_DEPENDENT, statuses
    assert {r for r, s in statuses.items() if s == "not_claimed"} == {"FLOW-TWO-ARM"}, statuses


def test_certify_cannot_be_narrowed(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "run", "--certify", "-k", "icmp", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--certify runs every check" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["run", "up"])
def test_a_run_folder_too_long_for_its_sockets_is_refused(tmp_path: Path, command: str) -> None:
    out = tmp_path / ("x" * 120)
    done = subprocess.run([*CLI, command, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"run folder {out}: too long for the control socket inside it" in done.stderr
    assert "choose a shorter --out" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "up"])
def test_a_run_folder_that_cannot_be_created_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "file").touch()
    out = tmp_path / "file" / "run"
    done = subprocess.run([*CLI, command, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"run folder {out}: cannot be created (Not a directory); choose another --out" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fault", sorted(EXPECTATIONS))
def test_faulty_appliance_fails_for_the_right_reason(tmp_path: Path, fault: str) -> None:
    expected = EXPECTATIONS[fault]
    topology = ["--topology", str(REPO / expected["topology"])] if "topology" in expected else []
    selected = [arg for r in expected.get("fails", []) + expected.get("passes", []) for arg in ("--requirement", r)]
    done, results, _ = _run(tmp_path, "--appliance", str(FAULTY / fault / "appliance.yaml"), *topology, *selected)
    assert results is not None, done.stderr
    assert results["verdict"] == expected["verdict"], done.stdout
    assert done.returncode == {"CONFORMANT": 0, "NOT_CONFORMANT": 1, "ERROR": 2}[expected["verdict"]]
    statuses = _statuses(results)
    for requirement in expected.get("fails", []):
        assert statuses[requirement] == "fail", f"{fault} should fail {requirement}: {statuses}"
    for requirement in expected.get("passes", []):
        assert statuses[requirement] == "pass", f"{fault} should not touch {requirement}: {statuses}"
    if "error" in expected:
        assert any(expected["error"] in error for error in results["errors"]), results["errors"]
    for requirement in expected.get("limited_by_appliance", []):
        _expect_limited_by_appliance(results, requirement)


def _expect_limited_by_appliance(results: dict, requirement: str) -> None:
    """Every figure of the requirement's PERF checks names the appliance as the limit and is worse
    than the harness's own ceiling of the same run."""
    records = [r for c in results["checks"] if requirement in c["requirements"] for r in c["data"].get("perf", [])]
    assert records, f"{requirement} recorded no PERF figures"
    for record in records:
        assert record["limit"] == "appliance", record
        for figure in ("pps", "new_flows_per_s", "concurrent_flows"):
            if figure in record:
                assert record[figure] < record[f"ceiling_{figure}"], record
        if "latency_p50_us" in record:
            assert record["latency_p50_us"] > record["ceiling_latency_p50_us"], record


def test_malformed_descriptor_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    descriptor = tmp_path / "appliance.yaml"
    descriptor.write_text("name: broken\nversion: '1'\nlaunch: {kind: process}\n")
    done = subprocess.run([*CLI, "run", "--appliance", str(descriptor)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(descriptor) in done.stderr and "launch" in done.stderr
    assert "Traceback" not in done.stderr


def test_interrupted_run_removes_everything(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    before = _links()
    out = tmp_path / "report"
    process = subprocess.Popen([*CLI, "run", "--quiet", "--out", str(out)], env={**os.environ, "GWLB_TEST_RUN": marker},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "logs" / "a1.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert _processes_marked(marker), "the run did not start its appliances"
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # an impatient second signal must not cut the teardown short
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert "Traceback" not in err
    assert _links() == before
    assert _processes_marked(marker) == []
