"""Requirement-level comparison of two runs: the CI gate for tunnel-handler changes.

Reads two results.json files (or run folders holding one), pairs requirements by ID and sorts each
change into a kind. A regression is a requirement that now fails or errs and did not before, a
worse verdict, or a harness error the old run did not have; an improvement is a requirement that
failed or erred and now passes. Coverage changes (pass ↔ skip / not claimed / absent) and other
moves (fail ↔ error, a new requirement not run, ...) are reported; only lost coverage gates,
and only in strict mode. Formatting (text for a
terminal, Markdown for a CI summary) is separate from the comparison.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

RESULTS_NAME = "results.json"
STATUSES = ("pass", "fail", "skip", "not_claimed", "error")
_BAD = frozenset({"fail", "error"})
_UNVERIFIED = frozenset({"skip", "not_claimed", "absent"})
_VERDICT_RANK = {"CONFORMANT": 0, "NOT_CONFORMANT": 1, "ERROR": 2}


class Kind(enum.Enum):
    """How a requirement's status moved between the two runs, in report order."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    COVERAGE_LOST = "coverage lost"
    COVERAGE_GAINED = "coverage gained"
    CHANGED = "changed"


@dataclass(frozen=True)
class RequirementState:
    id: str
    level: str
    status: str
    message: str


@dataclass(frozen=True)
class RunSummary:
    """What `diff` needs of one results.json."""

    path: Path
    verdict: str
    appliance: str
    started_at: str
    requirements: dict[str, RequirementState]
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    id: str
    level: str
    kind: Kind
    old: str
    new: str
    message: str


@dataclass(frozen=True)
class RunDiff:
    old: RunSummary
    new: RunSummary
    changes: tuple[Change, ...]
    new_errors: tuple[str, ...]

    @property
    def verdict_regressed(self) -> bool:
        return _VERDICT_RANK[self.new.verdict] > _VERDICT_RANK[self.old.verdict]

    def of_kind(self, kind: Kind) -> list[Change]:
        return [c for c in self.changes if c.kind is kind]

    def regressed(self, strict: bool = False) -> bool:
        """True when the new run is worse; strict also counts requirements no longer verified."""
        kinds = {Kind.REGRESSION} | ({Kind.COVERAGE_LOST} if strict else set())
        return self.verdict_regressed or bool(self.new_errors) or any(c.kind in kinds for c in self.changes)


def results_path(path: Path) -> Path:
    """The results.json of `path`, which may be the file itself or a run folder."""
    path = Path(path)
    return path / RESULTS_NAME if path.is_dir() else path


def load(path: Path) -> RunSummary:
    """Read and check the parts of a results.json that `diff` uses; ConfigError otherwise."""
    file = results_path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(file, "", "no such file (expected a results.json or a run folder holding one)") from None
    except OSError as error:
        raise ConfigError(file, "", f"cannot read: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(file, "", f"expected JSON as written by gwlb-conformance run ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"expected a JSON object, found {type(data).__name__}")
    verdict = _field(file, data, "verdict", str)
    if verdict not in _VERDICT_RANK:
        raise ConfigError(file, "verdict", f"one of {', '.join(_VERDICT_RANK)}, found {verdict!r}")
    requirements: dict[str, RequirementState] = {}
    for index, item in enumerate(_field(file, data, "requirements", list)):
        key = f"requirements[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(file, key, f"expected an object, found {type(item).__name__}")
        status = _field(file, item, "status", str, key)
        if status not in STATUSES:
            raise ConfigError(file, f"{key}.status", f"one of {', '.join(STATUSES)}, found {status!r}")
        state = RequirementState(
            id=_field(file, item, "id", str, key),
            level=str(item.get("level", "")),
            status=status,
            message=str(item.get("message", "")),
        )
        requirements[state.id] = state
    appliance = data.get("appliance") if isinstance(data.get("appliance"), dict) else {}
    run = data.get("run") if isinstance(data.get("run"), dict) else {}
    return RunSummary(
        path=file,
        verdict=verdict,
        appliance=f"{appliance.get('name', '?')} {appliance.get('version', '?')}",
        started_at=str(run.get("started_at", "")),
        requirements=requirements,
        errors=tuple(str(e) for e in data.get("errors", [])),
    )


def _field(file: Path, data: dict[str, Any], name: str, kind: type, within: str = "") -> Any:
    key = f"{within}.{name}" if within else name
    if name not in data:
        raise ConfigError(file, key, "missing")
    if not isinstance(data[name], kind):
        raise ConfigError(file, key, f"expected {kind.__name__}, found {type(data[name]).__name__}")
    return data[name]


def compare(old: RunSummary, new: RunSummary) -> RunDiff:
    changes = []
    ids = list(new.requirements) + [rid for rid in old.requirements if rid not in new.requirements]
    for rid in ids:
        before, after = old.requirements.get(rid), new.requirements.get(rid)
        old_status = before.status if before else "absent"
        new_status = after.status if after else "absent"
        if old_status == new_status:
            continue
        changes.append(Change(
            id=rid,
            level=after.level if after else before.level if before else "",
            kind=_kind(old_status, new_status),
            old=old_status,
            new=new_status,
            message=after.message if after else "no longer in the catalog",
        ))
    order = list(Kind)
    changes.sort(key=lambda c: order.index(c.kind))
    new_errors = tuple(e for e in new.errors if e not in old.errors)
    return RunDiff(old, new, tuple(changes), new_errors)


def _kind(old: str, new: str) -> Kind:
    if new in _BAD and old not in _BAD:
        return Kind.REGRESSION
    if old in _BAD and new == "pass":
        return Kind.IMPROVEMENT
    if old == "pass" and new in _UNVERIFIED:
        return Kind.COVERAGE_LOST
    if old in _UNVERIFIED and new == "pass":
        return Kind.COVERAGE_GAINED
    return Kind.CHANGED


def format_text(diff: RunDiff, strict: bool = False) -> str:
    lines = [
        f"old: {diff.old.path}  {diff.old.verdict}  {diff.old.appliance}  {diff.old.started_at}",
        f"new: {diff.new.path}  {diff.new.verdict}  {diff.new.appliance}  {diff.new.started_at}",
    ]
    if diff.old.appliance != diff.new.appliance:
        lines.append(f"note: the runs tested different appliances ({diff.old.appliance} vs {diff.new.appliance})")
    if diff.old.verdict != diff.new.verdict:
        worse = " (regression)" if diff.verdict_regressed else ""
        lines.append(f"verdict: {diff.old.verdict} -> {diff.new.verdict}{worse}")
    width = max((len(c.id) for c in diff.changes), default=0)
    for kind in Kind:
        changes = diff.of_kind(kind)
        if changes:
            lines += ["", f"{_count(len(changes), kind.value)}:"]
            lines += [
                f"  {c.id:<{width}}  {c.level:<6}  {c.old} -> {c.new}  {_short(c.message)}".rstrip()
                for c in changes
            ]
    if diff.new_errors:
        lines += ["", f"{_count(len(diff.new_errors), 'new harness error')}:"]
        lines += [f"  {error}" for error in diff.new_errors]
    lines += ["", _conclusion(diff, strict)]
    return "\n".join(lines) + "\n"


def format_markdown(diff: RunDiff, strict: bool = False) -> str:
    lines = [
        "### gwlb-conformance: requirement changes",
        "",
        "| run | verdict | appliance | started |",
        "| --- | --- | --- | --- |",
        f"| old | {diff.old.verdict} | {_md(diff.old.appliance)} | {diff.old.started_at} |",
        f"| new | {diff.new.verdict} | {_md(diff.new.appliance)} | {diff.new.started_at} |",
        "",
    ]
    if diff.changes:
        lines += ["| change | requirement | level | old | new | message |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [
            f"| {c.kind.value} | `{c.id}` | {c.level} | {c.old} | {c.new} | {_md(_short(c.message))} |"
            for c in diff.changes
        ]
        lines.append("")
    lines += [f"- new harness error: {_md(error)}" for error in diff.new_errors]
    lines.append(f"**{_conclusion(diff, strict)}**")
    return "\n".join(lines) + "\n"


def _conclusion(diff: RunDiff, strict: bool) -> str:
    regressions = len(diff.of_kind(Kind.REGRESSION))
    improvements = len(diff.of_kind(Kind.IMPROVEMENT))
    summary = f"{_count(regressions, 'regression')}, {_count(improvements, 'improvement')}"
    if diff.regressed(strict):
        return f"REGRESSED: {summary}"
    return f"OK: {summary}" if diff.changes else "OK: no requirement changed"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
