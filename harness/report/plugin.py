"""The pytest side of reporting: hooks that turn test reports into `CheckResult`s.

`pytest_runtest_makereport` runs where the test ran (an xdist worker, or the only process) and
attaches what only it can see: the requirement IDs from the `requirement` marker, the exception's
text without pytest's traceback, and when the wider-scoped fixtures the item uses were set up
(they may have sent its traffic). `pytest_runtest_logreport` runs where results are gathered and
folds the setup/call/teardown reports of each item into one check, with its wall-clock start and
end. At session end the controller cuts each failing check's packets out of the run's capture
(`pcaps/<check>.pcap`, see pcaps.py), builds the `RunResult` (model.py), hands it to the
renderers and packs the certification bundle (harness/bundle.py). The run folder then holds
results.json, junit.xml, index.html, environment.json and bundle.tar.gz.

Properties a check may record with `record_property(name, value)` (or `item.user_properties`).
Structured values may be passed as Python objects or as JSON text; see properties.py for the
exact shapes and results.schema.json (`$defs/data`) for how they appear in results.json:

- `expected`, `observed` (text): what the requirement expected and what the appliance did, shown
  side by side in the report.
- `expected_header`, `observed_header` (bytes or hex text): the GENEVE header (base + options)
  the GWLB sent for a flow and the one the appliance returned; the report shows both, word by
  word with the field names, the differing bytes highlighted.
- `drops` (JSON object reason → count): returns the emulator dropped, by drop reason (e.g.
  `{"dst_port": 5}`), for the check's traffic (or the run's totals so far).
- `rejects` (JSON list of {reason, source, detail, header}): the emulator's last rejected
  returns, `header` in hex.
- `flows_per_target` (JSON object target → count): flows assigned to each target; plotted.
- `failover_timeline` (JSON {"t": [s, ...], "packets": {target: [count per t]}, "events":
  [{"t": s, "target": name, "state": health state}]}): packets per target over time with the
  health-state changes; plotted.
- `perf` (JSON list of {"size": bytes, "pps", "gbps", "latency_p50_us", "latency_p99_us"}, only
  size required): PERF results by inner packet size; plotted.
- `pcap` (path relative to the report folder): a capture the check wrote itself; failing checks
  without one get their cut of `pcaps/gwlb.pcap`.
- `details` (text): more diagnostic text, appended to the failure's details.

Any other name is kept as text in results.json (`properties`) and junit.xml. A documented
property with a value of the wrong shape is a harness error (the check's bug, not the appliance's).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.bundle import BUNDLE_NAME, ENVIRONMENT_NAME, write_bundle, write_environment
from harness.catalog import Catalog
from harness.emulator import flowlog
from harness.errors import HarnessError
from harness.report import pcaps, properties
from harness.report.model import Artifacts, CheckResult, RunInfo, RunResult, Status, build_result
from harness.report.render_html import write_html
from harness.report.render_json import write_json
from harness.report.render_junit import write_junit

log = logging.getLogger(__name__)

NOT_CLAIMED_PREFIX = "not claimed"
"""Skip reasons starting with this (e.g. `pytest.skip("not claimed: ipv6")`) mean not_claimed."""

_REQUIREMENTS_ATTR = "gwlb_requirements"
_MESSAGE_ATTR = "gwlb_message"
_DETAILS_ATTR = "gwlb_details"
_HARNESS_ATTR = "gwlb_harness_error"
_WINDOWS_ATTR = "gwlb_fixture_windows"
CAPTURE_PADDING_S = 0.1
"""Seconds added before and after each time window when cutting a check's packets."""


@dataclasses.dataclass
class _Pending:
    """One test item while its setup, call and teardown reports arrive."""

    requirement_ids: tuple[str, ...] = ()
    status: Status = Status.PASS
    duration_s: float = 0.0
    message: str = ""
    details: list[str] = dataclasses.field(default_factory=list)
    properties: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    windows: list[pcaps.Window] = dataclasses.field(default_factory=list)


class ReportPlugin:
    """Collects check results during a pytest session and writes the report into `out_dir`.

    `descriptor` (the appliance.yaml) is copied into the bundle; `capture` is the run's
    GWLB-side capture to cut failing checks' packets from (default `out_dir/pcaps/gwlb.pcap`).
    Cutting waits until `capture_settle_s` after the end of the last failing check, since
    tcpdump gets packets from the kernel up to a second late unless it runs with
    --immediate-mode (then 0.1 s is plenty).
    """

    def __init__(
        self,
        catalog: Catalog,
        info: RunInfo,
        out_dir: Path,
        *,
        descriptor: Path | None = None,
        capture: Path | None = None,
        capture_settle_s: float = 1.2,
        certify: bool = False,
    ) -> None:
        self.catalog = catalog
        self.certify = certify
        self.info = info
        self.out_dir = Path(out_dir)
        self.descriptor = descriptor
        self.capture = Path(capture) if capture is not None else self.out_dir / "pcaps" / "gwlb.pcap"
        self.capture_settle_s = capture_settle_s
        self._pending: dict[str, _Pending] = {}
        self._checks: list[CheckResult] = []
        self._windows: dict[str, list[pcaps.Window]] = {}
        self._fixture_windows: dict[str, pcaps.Window] = {}
        self._errors: list[str] = []
        self._notes: list[str] = []
        self._result: RunResult | None = None

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise RuntimeError("the report is built at the end of the pytest session")
        return self._result

    def add_error(self, text: str) -> None:
        """Record a harness-level error (the testbed failed, not the appliance)."""
        self._errors.append(text)

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers", "requirement(id, ...): the requirement ID(s) a conformance check verifies"
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        started = time.time()
        try:
            return (yield)
        finally:
            if fixturedef.scope != "function":
                finished = time.time()
                self._fixture_windows[fixturedef.argname] = pcaps.Window(started, finished)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        setattr(report, _REQUIREMENTS_ATTR, _requirement_ids(item))
        if call.when == "setup":
            names = getattr(item, "fixturenames", ())
            windows = [self._fixture_windows[n] for n in names if n in self._fixture_windows]
            setattr(report, _WINDOWS_ATTR, tuple(windows))
        if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            message, details = _describe_exception(call.excinfo.value)
            setattr(report, _MESSAGE_ATTR, message)
            setattr(report, _DETAILS_ATTR, details)
            setattr(report, _HARNESS_ATTR, call.excinfo.errisinstance(HarnessError))
            report.user_properties.extend(getattr(call.excinfo.value, "report_properties", {}).items())
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.add_error(f"collecting {report.nodeid or 'tests'} failed: {_last_line(report)}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        pending = self._pending.setdefault(report.nodeid, _Pending())
        ids = getattr(report, _REQUIREMENTS_ATTR, pending.requirement_ids)
        pending.requirement_ids = tuple(ids)
        pending.duration_s += report.duration
        pending.properties = list(report.user_properties)
        pending.started = report.start if pending.started is None else min(pending.started, report.start)
        pending.finished = max(pending.finished or report.stop, report.stop)
        pending.windows.extend(getattr(report, _WINDOWS_ATTR, ()))
        if report.when == "teardown":
            self._on_teardown(pending, report)
            self._checks.append(self._finish(report.nodeid, self._pending.pop(report.nodeid)))
        elif report.skipped:
            reason = _skip_reason(report)
            pending.status = _skip_status(reason)
            pending.message = reason
        elif report.failed:
            harness_failed = report.when == "setup" or getattr(report, _HARNESS_ATTR, False)
            pending.status = Status.ERROR if harness_failed else Status.FAIL
            pending.message, details = _report_text(report)
            pending.details.append(details)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(session.config, "workerinput"):
            return
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.add_error("the run was interrupted")
        for nodeid, pending in self._pending.items():
            self._checks.append(self._finish(nodeid, pending))
        self._pending.clear()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        checks = self._cut_captures(self._checks)
        finished_at = self.info.finished_at or datetime.now(timezone.utc)
        info = dataclasses.replace(
            self.info, finished_at=finished_at, notes=self.info.notes + tuple(self._notes)
        )
        self._result = build_result(self.catalog, info, checks, self._errors, self._artifacts(), certify=self.certify)
        write_json(self._result, self.out_dir / "results.json")
        write_junit(self._result, self.out_dir / "junit.xml")
        write_html(self._result, self.out_dir / "index.html")
        write_environment(self.out_dir / ENVIRONMENT_NAME, info.harness_version)
        write_bundle(self.out_dir, run_id=info.run_id, descriptor=self.descriptor,
                     mtime=finished_at.timestamp())
        log.info("report written to %s (%s)", self.out_dir, self._result.verdict.value)

    def _artifacts(self) -> Artifacts:
        logs = self.out_dir / "logs"
        return Artifacts(
            capture=self._relative(self.capture) if self.capture.is_file() else None,
            logs=tuple(p.relative_to(self.out_dir).as_posix() for p in sorted(logs.glob("*")) if p.is_file()),
            bundle=BUNDLE_NAME,
            environment=ENVIRONMENT_NAME,
            flow_log=flowlog.FILE_NAME if (self.out_dir / flowlog.FILE_NAME).is_file() else None,
        )

    def _relative(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(self.out_dir.resolve()).as_posix()
        except ValueError:
            return None

    def _cut_captures(self, checks: list[CheckResult]) -> list[CheckResult]:
        """Give each failing check without a capture of its own the packets of its time windows."""
        failing = [c for c in checks if c.status in (Status.FAIL, Status.ERROR) and not c.pcap]
        if not failing or not self.capture.is_file():
            return checks
        paths = self._capture_paths([c.nodeid for c in failing])
        outputs = {
            paths[c.nodeid]: [w.widened(CAPTURE_PADDING_S) for w in self._windows.get(c.nodeid, ())]
            for c in failing
        }
        last_end = max((w.end for windows in outputs.values() for w in windows), default=0.0)
        time.sleep(max(0.0, last_end + self.capture_settle_s - time.time()))
        try:
            counts = pcaps.cut(self.capture, outputs)
        except pcaps.CaptureError as error:
            log.warning("%s", error)
            self._notes.append(f"per-check captures not written: {error}")
            return checks
        cut = {nodeid: path for nodeid, path in paths.items() if counts[path]}
        return [
            dataclasses.replace(c, pcap=cut[c.nodeid].relative_to(self.out_dir).as_posix())
            if c.nodeid in cut else c
            for c in checks
        ]

    def _capture_paths(self, nodeids: list[str]) -> dict[str, Path]:
        """pcaps/<check>.pcap per check; names that would collide get a -2, -3, ... suffix."""
        paths: dict[str, Path] = {}
        used: set[str] = set()
        for nodeid in nodeids:
            name = pcaps.pcap_name(nodeid)
            stem, number = name.removesuffix(".pcap"), 2
            while name in used:
                name, number = f"{stem}-{number}.pcap", number + 1
            used.add(name)
            paths[nodeid] = self.out_dir / "pcaps" / name
        return paths

    def _on_teardown(self, pending: _Pending, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        message, details = _report_text(report)
        pending.details.append(f"teardown: {details}")
        if pending.status is not Status.FAIL:
            pending.status = Status.ERROR
            pending.message = f"teardown: {message}"

    def _finish(self, nodeid: str, pending: _Pending) -> CheckResult:
        recorded = {str(name): value for name, value in pending.properties}
        pcap = recorded.pop("pcap", None)
        details = [text for text in pending.details if text]
        extra = recorded.pop("details", None)
        if extra is not None and str(extra) not in details:
            details.append(str(extra))
        data = []
        for name in [n for n in recorded if n in properties.DECODERS]:
            value = recorded.pop(name)
            try:
                data.append((name, properties.decode(name, value)))
            except properties.PropertyError as error:
                self._errors.append(f"check {nodeid} recorded property {error}")
        if pending.started is not None and pending.finished is not None:
            own = pcaps.Window(pending.started, pending.finished)
            self._windows[nodeid] = [own, *pending.windows]
        return CheckResult(
            nodeid=nodeid,
            requirement_ids=pending.requirement_ids,
            status=pending.status,
            duration_s=round(pending.duration_s, 6),
            message=pending.message,
            details="\n\n".join(details),
            pcap=None if pcap is None else str(pcap),
            properties=tuple((name, str(value)) for name, value in recorded.items()),
            data=tuple(data),
            started_at=_moment(pending.started),
            finished_at=_moment(pending.finished),
        )


def _moment(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def _requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for marker in reversed(list(item.iter_markers("requirement"))):
        for arg in marker.args:
            if str(arg) not in ids:
                ids.append(str(arg))
    return tuple(ids)


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    """One-line message and full text; the exception type is shown unless it is an assertion."""
    text = str(exc).strip()
    if isinstance(exc, AssertionError):
        text = _undo_assert_indent(text)
    if not isinstance(exc, (AssertionError, pytest.fail.Exception)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if not text:
        text = type(exc).__name__
    return text.splitlines()[0], text


def _undo_assert_indent(text: str) -> str:
    """Remove the two-space indent pytest's assertion rewriting adds to a multi-line message.

    A rewritten `assert cond, msg` reads "msg line 1", "  msg line 2", ..., "assert <expr>".
    """
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if i and line.startswith("assert ")), None)
    if end is None or not all(line.startswith("  ") for line in lines[1:end]):
        return text
    return "\n".join([lines[0], *(line[2:] for line in lines[1:end]), *lines[end:]])


def _report_text(report: pytest.TestReport) -> tuple[str, str]:
    message = getattr(report, _MESSAGE_ATTR, None)
    details = getattr(report, _DETAILS_ATTR, None)
    if message is None or details is None:
        return _last_line(report), report.longreprtext
    return message, details


def _last_line(report: pytest.TestReport | pytest.CollectReport) -> str:
    lines = [line for line in report.longreprtext.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"expected failure: {report.wasxfail}" if report.wasxfail else "expected failure"
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ").strip()


def _skip_status(reason: str) -> Status:
    return Status.NOT_CLAIMED if reason.startswith(NOT_CLAIMED_PREFIX) else Status.SKIP
