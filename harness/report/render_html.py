"""index.html: the human report, one self-contained file (inline CSS, no external resources).

The page skeleton and CSS live in `template.html` (string.Template placeholders); this module
builds the escaped fragments. Every value from the run passes through `html.escape`.
"""

from __future__ import annotations

import html
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import quote

from harness.catalog import Family
from harness.report.model import CheckResult, RequirementResult, RunResult, Status, Verdict

_VERDICT_CLASSES = {
    Verdict.CONFORMANT: "verdict-conformant",
    Verdict.NOT_CONFORMANT: "verdict-not-conformant",
    Verdict.ERROR: "verdict-error",
}
_STATUS_LABELS = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.SKIP: "skip",
    Status.NOT_CLAIMED: "not claimed",
    Status.ERROR: "error",
}


def render_html(result: RunResult) -> str:
    info = result.info
    anchors = {
        check.nodeid: f"check-{index}"
        for index, check in enumerate(_reported_checks(result), start=1)
    }
    template = Template(resources.files(__package__).joinpath("template.html").read_text("utf-8"))
    return template.substitute(
        title=_e(f"{result.verdict.value} — {info.appliance_name} {info.appliance_version}"),
        verdict_class=_VERDICT_CLASSES[result.verdict],
        verdict=_e(result.verdict.value.replace("_", " ")),
        subtitle=_e(
            f"{info.appliance_name} {info.appliance_version} · profile {info.profile} · "
            f"timers {info.timers} · {_date(info.started_at)} · exit code "
            f"{result.verdict.exit_code}"
        ),
        errors=_errors(result),
        warnings=_warnings(result, anchors),
        run=_run_table(result),
        summary=_summary(result),
        requirements=_requirement_tables(result, anchors),
        checks=_check_sections(result, anchors),
        harness_version=_e(info.harness_version),
    )


def write_html(result: RunResult, path: Path) -> None:
    Path(path).write_text(render_html(result), encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _date(moment: datetime | None) -> str:
    return "—" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def _status(status: Status) -> str:
    return f'<span class="status status-{status.value}">{_e(_STATUS_LABELS[status])}</span>'


def _reported_checks(result: RunResult) -> list[CheckResult]:
    return [c for c in result.checks if c.status in (Status.FAIL, Status.ERROR)]


def _errors(result: RunResult) -> str:
    if not result.errors:
        return ""
    items = "".join(f"<li>{_e(error)}</li>" for error in result.errors)
    return f'<h2>Harness errors</h2>\n<ul class="errors">{items}</ul>'


def _warnings(result: RunResult, anchors: dict[str, str]) -> str:
    if not result.warnings:
        return ""
    items = "".join(
        f"<li><code>{_e(w.requirement.id)}</code> ({_e(w.requirement.level.value)}) "
        f"{_e(w.status.value)}: {_message(w, anchors)}</li>"
        for w in result.warnings
    )
    return (
        "<h2>Warnings</h2>\n<p class=\"muted\">SHOULD and INFO requirements that did not pass; "
        f'they do not change the verdict.</p>\n<ul class="warnings">{items}</ul>'
    )


def _run_table(result: RunResult) -> str:
    info = result.info
    rows = [
        ("Appliance", f"{info.appliance_name} {info.appliance_version}"),
        ("Launch", info.appliance_launch),
        ("Profile", info.profile),
        ("Timers", info.timers),
        ("Topology", info.topology),
        ("Run ID", info.run_id),
        ("Started", _date(info.started_at)),
        ("Finished", _date(info.finished_at)),
        ("Harness", info.harness_version),
        ("Kernel", info.kernel),
    ]
    rows += [("Note", note) for note in info.notes]
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>" for name, value in rows)
    return f'<table class="info">{body}</table>'


def _summary(result: RunResult) -> str:
    counts = result.status_counts()
    parts = [f"{counts[status]} {_STATUS_LABELS[status]}" for status in Status if counts[status]]
    return _e(f"{len(result.requirements)} requirements: " + ", ".join(parts) + ".")


def _requirement_tables(result: RunResult, anchors: dict[str, str]) -> str:
    sections = []
    for family in Family:
        rows = [r for r in result.requirements if r.requirement.family is family]
        if not rows:
            continue
        body = "".join(
            "<tr>"
            f'<td class="id"><code>{_e(r.requirement.id)}</code></td>'
            f'<td class="level">{_e(r.requirement.level.value)}</td>'
            f'<td title="{_e(r.requirement.statement)}">{_e(r.requirement.title)}</td>'
            f'<td class="status">{_status(r.status)}</td>'
            f"<td>{_message(r, anchors)}</td>"
            "</tr>"
            for r in rows
        )
        sections.append(
            f"<h3>{_e(family.value)} — {_e(family.description)}</h3>\n<table>"
            "<tr><th>ID</th><th>Level</th><th>Title</th><th>Status</th><th>Message</th></tr>"
            f"{body}</table>"
        )
    return "\n".join(sections)


def _message(requirement: RequirementResult, anchors: dict[str, str]) -> str:
    text = _e(requirement.message)
    target = next((anchors[c.nodeid] for c in requirement.checks if c.nodeid in anchors), None)
    return f'<a href="#{target}">{text}</a>' if target else text


def _check_sections(result: RunResult, anchors: dict[str, str]) -> str:
    checks = _reported_checks(result)
    if not checks:
        return ""
    sections = []
    for check in checks:
        requirement_ids = ", ".join(check.requirement_ids) or "no requirement"
        parts = [
            f'<section class="check check-{check.status.value}" id="{anchors[check.nodeid]}">',
            f"<h3><code>{_e(check.nodeid)}</code></h3>",
            f"<p>{_status(check.status)} {_e(requirement_ids)} · {check.duration_s:.2f} s</p>",
            f"<p>{_e(check.message)}</p>",
        ]
        if check.details:
            parts.append(f"<pre>{_e(check.details)}</pre>")
        if check.pcap:
            parts.append(f'<p>Capture: <a href="{_e(quote(check.pcap))}">{_e(check.pcap)}</a></p>')
        parts.extend(
            f"<p><strong>{_e(name)}</strong>: {_e(value)}</p>" for name, value in check.properties
        )
        parts.append("</section>")
        sections.append("\n".join(parts))
    return "<h2>Failed and erroring checks</h2>\n" + "\n".join(sections)
