"""The result model: what a run found, independent of pytest and of any output format.

The plugin turns pytest reports into `CheckResult`s; `build_result` aggregates them per catalog
requirement and decides the verdict; the renderers only read a finished `RunResult`.
Aggregation per requirement: error > fail > pass > not_claimed > skip. Verdict: ERROR on any
harness error, an erroring MUST requirement or when no check ran; NOT_CONFORMANT when a MUST
requirement failed; CONFORMANT otherwise (failed SHOULD requirements are warnings).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.catalog import Catalog, Level, Requirement


class Status(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    NOT_CLAIMED = "not_claimed"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Precedence when several checks verify one requirement; the highest wins."""
        return _RANK[self]


_RANK = {Status.SKIP: 0, Status.NOT_CLAIMED: 1, Status.PASS: 2, Status.FAIL: 3, Status.ERROR: 4}
_RAN = frozenset({Status.PASS, Status.FAIL, Status.ERROR})


class Verdict(enum.Enum):
    CONFORMANT = "CONFORMANT"
    NOT_CONFORMANT = "NOT_CONFORMANT"
    ERROR = "ERROR"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {Verdict.CONFORMANT: 0, Verdict.NOT_CONFORMANT: 1, Verdict.ERROR: 2}


@dataclass(frozen=True)
class RunInfo:
    """What was tested, how and where; supplied by the CLI before the session starts."""

    run_id: str
    appliance_name: str
    appliance_version: str
    appliance_launch: str
    profile: str
    timers: str
    topology: str
    harness_version: str
    kernel: str
    started_at: datetime
    finished_at: datetime | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """One pytest test item: `message` is one line, `details` the long diagnostic.

    `data` holds the documented properties the check recorded, decoded (properties.py);
    `properties` any other recorded values as text. `pcap` is relative to the report folder.
    """

    nodeid: str
    requirement_ids: tuple[str, ...]
    status: Status
    duration_s: float
    message: str = ""
    details: str = ""
    pcap: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    data: tuple[tuple[str, Any], ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def name(self) -> str:
        """The test's name without its file, e.g. `test_boundary_sizes[1500]`."""
        return self.nodeid.rpartition("::")[2] or self.nodeid

    def get(self, name: str) -> Any:
        """A decoded documented property, or None when the check did not record it."""
        return dict(self.data).get(name)


@dataclass(frozen=True)
class Artifacts:
    """Files of the run folder the report links to, relative to it."""

    capture: str | None = None
    logs: tuple[str, ...] = ()
    bundle: str | None = None
    environment: str | None = None
    flow_log: str | None = None


@dataclass(frozen=True)
class RequirementResult:
    requirement: Requirement
    status: Status
    message: str
    checks: tuple[CheckResult, ...]

    @property
    def is_warning(self) -> bool:
        """A non-MUST requirement that failed or erred: reported, but not in the verdict."""
        return self.requirement.level is not Level.MUST and self.status in (
            Status.FAIL,
            Status.ERROR,
        )


@dataclass(frozen=True)
class RunResult:
    info: RunInfo
    requirements: tuple[RequirementResult, ...]
    checks: tuple[CheckResult, ...]
    verdict: Verdict
    errors: tuple[str, ...]
    artifacts: Artifacts = Artifacts()

    @property
    def warnings(self) -> tuple[RequirementResult, ...]:
        return tuple(r for r in self.requirements if r.is_warning)

    def status_counts(self) -> dict[Status, int]:
        """Requirements per status, every status present (zero if none)."""
        counts = dict.fromkeys(Status, 0)
        for requirement in self.requirements:
            counts[requirement.status] += 1
        return counts


def build_result(
    catalog: Catalog,
    info: RunInfo,
    checks: Iterable[CheckResult],
    errors: Iterable[str] = (),
    artifacts: Artifacts = Artifacts(),
    certify: bool = False,
) -> RunResult:
    """Aggregate checks per requirement and decide the verdict.

    Checks without a requirement, or naming one the catalog lacks, become harness errors: a
    check that cannot be attributed must not silently vanish from the verdict. In certification
    mode a skipped requirement is one too (an unclaimed optional feature is not a skip).
    """
    checks = tuple(checks)
    all_errors = list(errors)
    per_requirement: dict[str, list[CheckResult]] = {r.id: [] for r in catalog}
    for check in checks:
        if not check.requirement_ids:
            all_errors.append(f"check {check.nodeid} has no requirement marker")
        for requirement_id in check.requirement_ids:
            if requirement_id in per_requirement:
                per_requirement[requirement_id].append(check)
            else:
                all_errors.append(
                    f"check {check.nodeid} names requirement {requirement_id}, "
                    "which is not in the catalog"
                )
    if not any(check.status in _RAN for check in checks):
        all_errors.append("no check ran")

    requirements = tuple(
        _aggregate(requirement, tuple(per_requirement[requirement.id])) for requirement in catalog
    )
    if certify:
        all_errors += [
            f"certification refuses skips: {r.requirement.id} was skipped ({r.message})"
            for r in requirements if r.status is Status.SKIP
        ]
    return RunResult(
        info=info,
        requirements=requirements,
        checks=checks,
        verdict=_verdict(requirements, all_errors),
        errors=tuple(all_errors),
        artifacts=artifacts,
    )


def _aggregate(requirement: Requirement, checks: tuple[CheckResult, ...]) -> RequirementResult:
    if not checks:
        return RequirementResult(requirement, Status.SKIP, "not run", ())
    status = max((check.status for check in checks), key=lambda s: s.rank)
    deciding = [check for check in checks if check.status is status]
    if status is Status.PASS:
        message = f"{len(deciding)} of {len(checks)} checks passed" if len(checks) > 1 else "passed"
    else:
        message = deciding[0].message or status.value
        if len(deciding) > 1:
            message = f"{message} (and {len(deciding) - 1} more)"
    return RequirementResult(requirement, status, message, checks)


def _verdict(requirements: tuple[RequirementResult, ...], errors: list[str]) -> Verdict:
    must = [r for r in requirements if r.requirement.level is Level.MUST]
    if errors or any(r.status is Status.ERROR for r in must):
        return Verdict.ERROR
    if any(r.status is Status.FAIL for r in must):
        return Verdict.NOT_CONFORMANT
    return Verdict.CONFORMANT
