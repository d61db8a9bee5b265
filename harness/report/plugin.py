"""The pytest side of reporting: hooks that turn test reports into `CheckResult`s.

`pytest_runtest_makereport` runs where the test ran (an xdist worker, or the only process) and
attaches what only it can see: the requirement IDs from the `requirement` marker and the
exception's text without pytest's traceback. `pytest_runtest_logreport` runs where results are
gathered and folds the setup/call/teardown reports of each item into one check. At session end
the controller builds the `RunResult` (model.py) and hands it to the three renderers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.catalog import Catalog
from harness.errors import HarnessError
from harness.report.model import CheckResult, RunInfo, RunResult, Status, build_result
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


@dataclasses.dataclass
class _Pending:
    """One test item while its setup, call and teardown reports arrive."""

    requirement_ids: tuple[str, ...] = ()
    status: Status = Status.PASS
    duration_s: float = 0.0
    message: str = ""
    details: list[str] = dataclasses.field(default_factory=list)
    properties: list[tuple[str, Any]] = dataclasses.field(default_factory=list)


class ReportPlugin:
    """Collects check results during a pytest session and writes the report into `out_dir`."""

    def __init__(self, catalog: Catalog, info: RunInfo, out_dir: Path) -> None:
        self.catalog = catalog
        self.info = info
        self.out_dir = Path(out_dir)
        self._pending: dict[str, _Pending] = {}
        self._checks: list[CheckResult] = []
        self._errors: list[str] = []
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
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        setattr(report, _REQUIREMENTS_ATTR, _requirement_ids(item))
        if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            message, details = _describe_exception(call.excinfo.value)
            setattr(report, _MESSAGE_ATTR, message)
            setattr(report, _DETAILS_ATTR, details)
            setattr(report, _HARNESS_ATTR, call.excinfo.errisinstance(HarnessError))
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
        info = self.info
        if info.finished_at is None:
            info = dataclasses.replace(info, finished_at=datetime.now(timezone.utc))
        self._result = build_result(self.catalog, info, self._checks, self._errors)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self._result, self.out_dir / "results.json")
        write_junit(self._result, self.out_dir / "junit.xml")
        write_html(self._result, self.out_dir / "index.html")
        log.info("report written to %s (%s)", self.out_dir, self._result.verdict.value)

    def _on_teardown(self, pending: _Pending, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        message, details = _report_text(report)
        pending.details.append(f"teardown: {details}")
        if pending.status is not Status.FAIL:
            pending.status = Status.ERROR
            pending.message = f"teardown: {message}"

    @staticmethod
    def _finish(nodeid: str, pending: _Pending) -> CheckResult:
        recorded = {str(name): value for name, value in pending.properties}
        pcap = recorded.pop("pcap", None)
        details = [text for text in pending.details if text]
        extra = recorded.pop("details", None)
        if extra is not None and str(extra) not in details:
            details.append(str(extra))
        return CheckResult(
            nodeid=nodeid,
            requirement_ids=pending.requirement_ids,
            status=pending.status,
            duration_s=round(pending.duration_s, 6),
            message=pending.message,
            details="\n\n".join(details),
            pcap=None if pcap is None else str(pcap),
            properties=tuple((name, str(value)) for name, value in recorded.items()),
        )


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
