"""Docker appliance targets, end to end: the reference appliance as a container passes the suite.

    gwlb ── veth ──► a1-eth0 moved into container gwlb-<run>-a1 (--network none, NET_ADMIN, tun)

The images are built offline first (`gwlb-conformance images build`: debootstrap base, then the
reference Dockerfile; about a minute the first time, nothing when they exist). Every case checks
that no container of its run remains. Without a Docker engine these tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import images, runs
from harness.launchers.docker import container_name

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
DOCKER_DESCRIPTOR = REPO / "appliance-images" / "reference" / "appliance-docker.yaml"
ENGINE_PROBLEM = images.engine_problem() if os.geteuid() == 0 else "needs root"

end_to_end = [
    pytest.mark.requires_root,
    pytest.mark.requires_docker,
    pytest.mark.slow,
    pytest.mark.skipif(ENGINE_PROBLEM is not None, reason=f"no usable Docker engine: {ENGINE_PROBLEM}"),
]


def test_apt_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert images.apt_mirror("bookworm", tmp_path) == images.DEFAULT_MIRROR
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://one.example/debian bookworm main\n")
    assert images.apt_mirror("bookworm", tmp_path) == "http://one.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert images.apt_mirror("bookworm", tmp_path) == "http://two.example/debian"


def test_appliance_images_are_tagged_with_their_descriptor_version() -> None:
    (reference,) = [spec for spec in images.appliance_images() if spec.name == "reference"]
    assert reference.tag == "gwlb-conformance/reference:0.1.0"
    assert (reference.context / "Dockerfile").exists()
    assert images.base_tag() == "gwlb-conformance/base:bookworm"
    assert container_name("ab12cd", "a1") == "gwlb-ab12cd-a1"


@pytest.fixture(scope="module")
def built() -> None:
    done = subprocess.run([*CLI, "images", "build"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gwlb-conformance/reference:0.1.0" in done.stdout


def _containers_of(run_id: str) -> list[str]:
    listed = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"label={runs.LABEL_RUN}={run_id}"],
                            capture_output=True, text=True, check=True, timeout=60)
    return listed.stdout.split()


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _run(out: Path, descriptor: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = subprocess.run([*CLI, "run", "--quiet", "--appliance", str(descriptor), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    return done, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("_", [pytest.param(None, marks=end_to_end, id="reference")])
def test_reference_container_is_conformant(tmp_path: Path, built: None, _: None) -> None:
    before = _links()
    done, results = _run(tmp_path / "report", DOCKER_DESCRIPTOR)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert results["verdict"] == "CONFORMANT"
    assert results["appliance"]["launch"] == "gwlb-conformance/reference:0.1.0"
    log = (tmp_path / "report" / "logs" / "a1.log").read_text()
    assert "listening on UDP 6081" in log and "stopped" in log, "docker logs are collected into the target's log"
    assert _containers_of(results["run"]["id"]) == []
    assert _links() == before


@pytest.mark.parametrize("_", [pytest.param(None, marks=end_to_end, id="exits")])
def test_container_that_exits_at_once_gives_a_report(tmp_path: Path, built: None, _: None) -> None:
    descriptor = yaml.safe_load(DOCKER_DESCRIPTOR.read_text())
    descriptor["launch"].update(command="sh -c 'echo giving up; exit 7'", ready={"tcp_port": 8080, "timeout_s": 5})
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(descriptor))
    done, results = _run(tmp_path / "report", path)
    assert done.returncode == 2 and results["verdict"] == "ERROR"
    (error,) = results["errors"]
    assert "exited with status 7" in error, error
    assert "giving up" in error or "giving up" in (tmp_path / "report" / "logs" / "a1.log").read_text()
    assert _containers_of(results["run"]["id"]) == []


@pytest.mark.parametrize("_", [pytest.param(None, marks=end_to_end, id="sigkill")])
def test_containers_of_a_sigkilled_run_are_removed_by_the_next_run(tmp_path: Path, built: None, _: None) -> None:
    out = tmp_path / "killed"
    killed = subprocess.Popen([*CLI, "run", "--quiet", "--appliance", str(DOCKER_DESCRIPTOR), "--out", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    entry = None
    while entry is None or len(entry.containers) < 2:
        assert time.monotonic() < deadline and killed.poll() is None, "the run never started its containers"
        time.sleep(0.2)
        entry = next((e for e in runs.entries() if e.out == str(out)), None)
    time.sleep(2)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert _containers_of(entry.run_id), "a SIGKILLed run leaves its containers: this test needs that to mean anything"
    done = subprocess.run([*CLI, "run", "--quiet", "--out", str(tmp_path / "next"), "-k", "test_encapsulation"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert _containers_of(entry.run_id) == []
