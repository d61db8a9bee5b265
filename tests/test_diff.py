"""`gwlb-conformance diff`: requirement-level regressions and improvements between two runs.

Unit tests compare small results.json files written here; the end-to-end tests (root) run the
real CLI on the reference appliance and on its flip-cookie fault, restricted to one check to
stay fast, and also check what such a failing run leaves for a reader: its cut capture opens in
tshark as GENEVE and its bundle verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from harness import diff
from harness.cli import main
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def results(statuses: dict[str, str], verdict: str = "CONFORMANT", errors: tuple[str, ...] = (),
            levels: dict[str, str] | None = None) -> dict[str, Any]:
    levels = levels or {}
    return {
        "schema_version": 1,
        "verdict": verdict,
        "appliance": {"name": "handler", "version": "1.0", "launch": "/opt/handler"},
        "run": {"started_at": "2024-05-06T07:08:09+00:00"},
        "requirements": [
            {"id": rid, "level": levels.get(rid, "MUST"), "status": status, "message": f"{rid} {status}"}
            for rid, status in statuses.items()
        ],
        "errors": list(errors),
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run_diff(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["diff", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


PASSING = {"ENC-HDR-ECHO": "pass", "ENC-DST-PORT": "pass", "ENC-SRC-PORT": "pass", "FLOW-V6": "not_claimed"}


def test_two_passing_runs_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(PASSING))
    new = write(tmp_path / "new.json", results(PASSING))

    code, out, _ = run_diff(capsys, old, new)

    assert code == 0
    assert out.rstrip().endswith("OK: no requirement changed")


def test_pass_to_fail_is_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(PASSING))
    new = write(tmp_path / "new.json", results(PASSING | {"ENC-HDR-ECHO": "fail", "ENC-DST-PORT": "error"},
                                              "NOT_CONFORMANT"))

    code, out, _ = run_diff(capsys, old, new)

    assert code == 1
    assert "verdict: CONFORMANT -> NOT_CONFORMANT (regression)" in out
    assert "2 regressions:" in out
    assert "ENC-HDR-ECHO  MUST    pass -> fail  ENC-HDR-ECHO fail" in out
    assert "ENC-DST-PORT  MUST    pass -> error" in out
    assert out.rstrip().endswith("REGRESSED: 2 regressions, 0 improvements")


def test_should_regression_also_gates(tmp_path: Path) -> None:
    old = diff.load(write(tmp_path / "old.json", results(PASSING)))
    new = diff.load(write(tmp_path / "new.json", results(PASSING | {"ENC-SRC-PORT": "fail"},
                                                         levels={"ENC-SRC-PORT": "SHOULD"})))

    result = diff.compare(old, new)

    assert [(c.id, c.level, c.kind) for c in result.changes] == [("ENC-SRC-PORT", "SHOULD", diff.Kind.REGRESSION)]
    assert result.regressed() and not result.verdict_regressed


def test_fail_to_pass_is_an_improvement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old" / "results.json", results(PASSING | {"ENC-HDR-ECHO": "fail"}, "NOT_CONFORMANT"))
    new = write(tmp_path / "new" / "results.json", results(PASSING))

    code, out, _ = run_diff(capsys, old.parent, new.parent)

    assert code == 0
    assert "1 improvement:" in out and "ENC-HDR-ECHO  MUST    fail -> pass" in out
    assert out.rstrip().endswith("OK: 0 regressions, 1 improvement")


def test_coverage_changes_gate_only_in_strict_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_statuses = PASSING | {"FLOW-NEW": "skip"}
    new_statuses = {k: v for k, v in PASSING.items() if k != "ENC-DST-PORT"} | {
        "ENC-SRC-PORT": "skip", "FLOW-NEW": "pass", "FLOW-V6": "skip"}
    old = write(tmp_path / "old.json", results(old_statuses))
    new = write(tmp_path / "new.json", results(new_statuses))

    code, out, _ = run_diff(capsys, old, new)
    strict_code, _, _ = run_diff(capsys, old, new, "--strict")

    kinds = {c.id: c.kind for c in diff.compare(diff.load(old), diff.load(new)).changes}
    assert kinds == {
        "ENC-SRC-PORT": diff.Kind.COVERAGE_LOST,
        "ENC-DST-PORT": diff.Kind.COVERAGE_LOST,
        "FLOW-NEW": diff.Kind.COVERAGE_GAINED,
        "FLOW-V6": diff.Kind.CHANGED,
    }
    assert "ENC-DST-PORT  MUST    pass -> absent  no longer in the catalog" in out
    assert (code, strict_code) == (0, 1)


def test_new_harness_error_is_a_regression(tmp_path: Path) -> None:
    old = diff.load(write(tmp_path / "old.json", results(PASSING)))
    new = diff.load(write(tmp_path / "new.json", results(PASSING, "ERROR", ("appliance a1 never became healthy",))))

    result = diff.compare(old, new)

    assert result.changes == () and result.new_errors == ("appliance a1 never became healthy",)
    assert result.regressed()
    assert "1 new harness error:\n  appliance a1 never became healthy" in diff.format_text(result)


def test_markdown_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(PASSING))
    new = write(tmp_path / "new.json", results(PASSING | {"ENC-HDR-ECHO": "fail"}, "NOT_CONFORMANT"))

    code, out, _ = run_diff(capsys, old, new, "--markdown")

    assert code == 1
    assert "| regression | `ENC-HDR-ECHO` | MUST | pass | fail | ENC-HDR-ECHO fail |" in out
    assert out.rstrip().endswith("**REGRESSED: 1 regression, 0 improvements**")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file (expected a results.json or a run folder holding one)"),
        ("{not json", "expected JSON as written by gwlb-conformance run"),
        ("[]", "expected a JSON object, found list"),
        ('{"verdict": "CONFORMANT"}', "requirements: missing"),
        ('{"verdict": "MAYBE", "requirements": []}', "verdict: one of CONFORMANT, NOT_CONFORMANT, ERROR, found 'MAYBE'"),
        ('{"verdict": "ERROR", "requirements": [{"id": "A-B", "status": "great"}]}',
         "requirements[0].status: one of pass, fail, skip, not_claimed, error, found 'great'"),
        ('{"verdict": "ERROR", "requirements": [{"status": "pass"}]}', "requirements[0].id: missing"),
    ],
)
def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
                                  message: str) -> None:
    good = write(tmp_path / "good.json", results(PASSING))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")

    code, out, err = run_diff(capsys, good, bad)

    assert code == 2 and out == ""
    assert err.startswith(f"gwlb-conformance: error: {bad}: ")
    assert message in err


def test_run_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="results.json: no such file"):
        diff.load(tmp_path)


# End to end: real runs through the CLI.

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root")
ONE_CHECK = "test_header_echoed_byte_for_byte"


def _real_run(out: Path, appliance: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "harness.cli", "run", "--quiet", "--out", str(out), "-k", ONE_CHECK]
    if appliance:
        args += ["--appliance", str(REPO / appliance)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    runs = {
        "passing": base / "passing",
        "passing-again": base / "passing-again",
        "failing": base / "failing",
    }
    for name, appliance in (("passing", None), ("passing-again", None),
                            ("failing", "appliance-images/faulty/flip-cookie/appliance.yaml")):
        done = _real_run(runs[name], appliance)
        assert (runs[name] / "results.json").exists(), done.stdout + done.stderr
    return runs


@pytest.mark.requires_root
@pytest.mark.slow
@ROOT
def test_real_runs_diff(real_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    passing = json.loads((real_runs["passing"] / "results.json").read_text())
    assert passing["verdict"] == "CONFORMANT", passing["errors"] or passing["requirements"]

    assert run_diff(capsys, real_runs["passing"], real_runs["passing-again"])[0] == 0
    code, out, _ = run_diff(capsys, real_runs["passing"], real_runs["failing"] / "results.json")
    assert code == 1, out
    assert "ENC-HDR-ECHO" in out and "pass -> fail" in out


@pytest.mark.requires_root
@pytest.mark.slow
@ROOT
@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs Debian's tshark package")
def test_failing_run_has_a_geneve_capture_per_failing_check(real_runs: dict[str, Path]) -> None:
    run = real_runs["failing"]
    results = json.loads((run / "results.json").read_text())
    check = next(c for c in results["checks"] if c["nodeid"].endswith(ONE_CHECK))
    assert check["status"] == "fail" and check["pcap"] == f"pcaps/test_encapsulation.{ONE_CHECK}.pcap"
    assert f'href="pcaps/test_encapsulation.{ONE_CHECK}.pcap"' in (run / "index.html").read_text()

    done = subprocess.run(
        ["tshark", "-r", str(run / check["pcap"]), "-Y", "geneve.option.class == 0x0108",
         "-T", "fields", "-e", "geneve.option.type"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    types = [line.split(",") for line in done.stdout.split()]
    assert len(types) >= 5 and all(t == ["0x01", "0x02", "0x03"] for t in types), done.stdout[:500]


@pytest.mark.requires_root
@pytest.mark.slow
@ROOT
def test_failing_run_bundle_verifies(real_runs: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(real_runs["failing"] / "bundle.tar.gz") as tar:
        tar.extractall(tmp_path)
    (folder,) = tmp_path.iterdir()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["SHA256SUMS", "appliance.yaml", "environment.json", "index.html", "junit.xml", "results.json"]
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    descriptor = REPO / "appliance-images/faulty/flip-cookie/appliance.yaml"
    assert (folder / "appliance.yaml").read_bytes() == descriptor.read_bytes()
