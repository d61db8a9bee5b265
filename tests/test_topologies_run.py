"""Every topology of the library passes the whole suite with the reference appliance.

    topologies/*.yaml ──► gwlb-conformance run --topology T ──► CONFORMANT, nothing left behind

The checks run against each topology's first endpoint, so this proves that the testbed builds
each shape (two zones, three endpoints, dual-stack hosts, eight targets, a second appliance arm)
correctly enough for real traffic, and that the extra parts do not disturb the rest; `tencent`
runs the whole suite under the second GWLB profile (its own option class, per-direction cookie
words, forced 3-tuple) and the report says so. Features a
topology adds beyond that (IPv6 traffic, NAT through the second arm) are exercised by their own
checks where the suite has them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.topology import load_topology

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
TOPOLOGIES = sorted(path for path in (REPO / "topologies").glob("*.yaml") if path.stem not in ("default", "certification"))
"""`default` and `certification` are the ones tests/test_conformance_run.py runs already."""

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root"),
]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=[path.stem for path in TOPOLOGIES])
def test_topology_passes_with_the_reference_appliance(tmp_path: Path, topology: Path) -> None:
    before = _links()
    out = tmp_path / "report"
    done = subprocess.run([*CLI, "run", "--quiet", "--topology", str(topology), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    results = json.loads((out / "results.json").read_text())
    failing = {r["id"]: r["message"][:300] for r in results["requirements"] if r["status"] in ("fail", "error")}
    assert (done.returncode, results["verdict"]) == (0, "CONFORMANT"), f"{failing}\n{results['errors']}"
    assert results["run"]["topology"] == topology.stem
    assert results["profile"] == load_topology(topology).gwlb.profile.name
    assert _links() == before
