"""results.json: the machine-readable report, documented by `schemas/results.schema.json`.

The `diff` command and CI read this file, so its shape only grows: keys are never renamed or
removed without bumping `schema_version`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.report.model import CheckResult, RequirementResult, RunResult

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "results.schema.json"


def to_json_dict(result: RunResult) -> dict[str, Any]:
    info = result.info
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": result.verdict.value,
        "exit_code": result.verdict.exit_code,
        "profile": info.profile,
        "timers": info.timers,
        "appliance": {
            "name": info.appliance_name,
            "version": info.appliance_version,
            "launch": info.appliance_launch,
        },
        "run": {
            "id": info.run_id,
            "started_at": _timestamp(info.started_at),
            "finished_at": _timestamp(info.finished_at),
            "harness_version": info.harness_version,
            "kernel": info.kernel,
            "topology": info.topology,
            "notes": list(info.notes),
        },
        "summary": {status.value: count for status, count in result.status_counts().items()},
        "requirements": [_requirement(r) for r in result.requirements],
        "checks": [_check(c) for c in result.checks],
        "warnings": [f"{w.requirement.id} ({w.requirement.level.value}): {w.message}"
                     for w in result.warnings],
        "errors": list(result.errors),
        "artifacts": {
            "capture": result.artifacts.capture,
            "logs": list(result.artifacts.logs),
            "bundle": result.artifacts.bundle,
            "environment": result.artifacts.environment,
        },
    }


def write_json(result: RunResult, path: Path) -> None:
    text = json.dumps(to_json_dict(result), indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def _requirement(result: RequirementResult) -> dict[str, Any]:
    requirement = result.requirement
    return {
        "id": requirement.id,
        "family": requirement.family.value,
        "level": requirement.level.value,
        "title": requirement.title,
        "statement": requirement.statement,
        "needs": requirement.needs,
        "status": result.status.value,
        "message": result.message,
        "checks": [check.nodeid for check in result.checks],
    }


def _check(check: CheckResult) -> dict[str, Any]:
    return {
        "nodeid": check.nodeid,
        "requirements": list(check.requirement_ids),
        "status": check.status.value,
        "duration_s": check.duration_s,
        "message": check.message,
        "details": check.details,
        "pcap": check.pcap,
        "properties": dict(check.properties),
        "data": dict(check.data),
        "started_at": _timestamp(check.started_at),
        "finished_at": _timestamp(check.finished_at),
    }


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
