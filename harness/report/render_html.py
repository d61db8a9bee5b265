"""index.html: the human report, one self-contained file (inline CSS, JS and SVG; no network).

The page skeleton, CSS and the small filter script live in `template.html` (string.Template
placeholders); this module builds the escaped fragments from a finished `RunResult`. Plots come
from `plots.py`, drawn from the properties checks recorded. Links (captures, logs, the bundle)
are relative to the report folder, so the page works opened from a CI artifact. Every value from
the run passes through `html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import quote

from harness import geneve
from harness.catalog import Family, Level
from harness.profiles import PROFILES
from harness.report import plots
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
_FILTER_ORDER = (Status.FAIL, Status.ERROR, Status.PASS, Status.NOT_CLAIMED, Status.SKIP)
_DROP_MEANINGS = {
    "dst_port": "returned to a UDP port other than 6081",
    "unknown_source": "sent from an address that is not a target",
    "malformed": "GENEVE header could not be decoded",
    "missing_options": "the profile's GWLB options (ENI, attachment, cookie) missing",
    "critical_option": "unknown critical option",
    "unknown_cookie": "flow cookie the GWLB never issued",
    "stale_cookie": "flow cookie of an expired or replaced flow",
    "eni_mismatch": "endpoint ENI ID altered",
    "attachment_mismatch": "attachment ID altered",
    "wrong_target": "reply from another target than the flow's",
    "direction": "cookie word carries the other direction's bits (echo each packet's own header)",
    "source_port": "UDP source port changed (strict mode)",
    "empty": "no inner packet",
    "oversize": "inner packet over 8500 bytes",
    "fragment": "IP fragment (GWLB does not support fragments)",
    "not_ip": "inner packet is not IPv4 or IPv6",
    "rejected_tcp": "non-SYN TCP packet of an unknown flow",
    "icmp_no_flow": "ICMP error about no known flow",
}
_GWLB_OPTION_CLASSES = frozenset(profile.layout.opt_class for profile in PROFILES.values())
_AWS_OPTION_NAMES = {
    geneve.AWS_ENI_TYPE: "ENI ID",
    geneve.AWS_ATTACHMENT_TYPE: "attachment ID",
    geneve.AWS_COOKIE_TYPE: "flow cookie",
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
        lead=_e(_lead(result)),
        chips=_chips(result),
        subtitle=_e(
            f"profile {info.profile} · timers {info.timers} · topology {info.topology} · "
            f"{_date(info.started_at)} · exit code {result.verdict.exit_code}"
        ),
        cards=_cards(result),
        errors=_errors(result),
        warnings=_warnings(result, anchors),
        overview=_overview(result),
        summary=_summary(result),
        filters=_filters(result),
        requirements=_requirement_tables(result, anchors),
        checks=_check_sections(result, anchors),
        measurements=_measurements(result),
        harness_version=_e(info.harness_version),
        run_id=_e(info.run_id),
    )


def write_html(result: RunResult, path: Path) -> None:
    Path(path).write_text(render_html(result), encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(path: str, text: str | None = None) -> str:
    return f'<a href="{_e(quote(path))}">{_e(text or path)}</a>'


def _date(moment: datetime | None) -> str:
    return "—" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def _status(status: Status) -> str:
    return f'<span class="status status-{status.value}">{_e(_STATUS_LABELS[status])}</span>'


def _level(level: Level) -> str:
    return f'<span class="level level-{level.value}">{level.value}</span>'


def _reported_checks(result: RunResult) -> list[CheckResult]:
    return [c for c in result.checks if c.status in (Status.FAIL, Status.ERROR)]


def _lead(result: RunResult) -> str:
    info = result.info
    must = [r for r in result.requirements if r.requirement.level is Level.MUST]
    failed = sum(r.status in (Status.FAIL, Status.ERROR) for r in must)
    passed = sum(r.status is Status.PASS for r in must)
    appliance = f"{info.appliance_name} {info.appliance_version}"
    if result.verdict is Verdict.ERROR and result.errors:
        return f"{appliance}: the harness could not judge every requirement ({len(result.errors)} harness errors)"
    if failed:
        return f"{appliance}: {failed} of {len(must)} MUST requirements not met"
    return f"{appliance}: {passed} of {len(must)} MUST requirements met"


def _chips(result: RunResult) -> str:
    counts = result.status_counts()
    chips = "".join(
        f'<span class="chip">{counts[s]} {_e(_STATUS_LABELS[s])}</span>' for s in Status if counts[s]
    )
    return f'<div class="chips">{chips}</div>'


def _card(title: str, body: str) -> str:
    return f'<section class="card"><h2>{_e(title)}</h2>{body}</section>'


def _dl(rows: Iterable[tuple[str, str]]) -> str:
    """Definition list; values are already-escaped HTML."""
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _cards(result: RunResult) -> str:
    info, artifacts = result.info, result.artifacts
    duration = "—"
    if info.finished_at is not None:
        duration = f"{(info.finished_at - info.started_at).total_seconds():.1f} s"
    appliance = _dl([
        ("Name", _e(info.appliance_name)),
        ("Version", _e(info.appliance_version)),
        ("Launch", f"<code>{_e(info.appliance_launch)}</code>"),
    ])
    run = _dl([
        ("Profile", _e(info.profile)),
        ("Timers", _e(info.timers)),
        ("Topology", _e(info.topology)),
        ("Run ID", _e(info.run_id)),
        ("Started", _e(_date(info.started_at))),
        ("Duration", _e(duration)),
    ])
    environment = _dl([
        ("Harness", _e(info.harness_version)),
        ("Kernel", _e(info.kernel)),
        *(("Note", _e(note)) for note in info.notes),
    ])
    files = [_link("results.json"), _link("junit.xml")]
    files += [_link(p) for p in (artifacts.bundle, artifacts.environment, artifacts.capture, artifacts.flow_log) if p]
    if artifacts.logs:
        files.append("logs: " + " ".join(_link(log, Path(log).name) for log in artifacts.logs))
    files_list = "<ul>" + "".join(f"<li>{item}</li>" for item in files) + "</ul>"
    return '<div class="cards">' + "".join([
        _card("Appliance", appliance), _card("Run", run),
        _card("Environment", environment), _card("Files", files_list),
    ]) + "</div>"


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


def _overview(result: RunResult) -> str:
    plot = plots.overview(result)
    return "" if plot is None else _figure(plot, "overview")


def _figure(plot: plots.Plot, kind: str) -> str:
    return (
        f'<figure class="plot" data-plot="{_e(kind)}"><figcaption>{_e(plot.title)}</figcaption>'
        f"{plot.svg}</figure>"
    )


def _summary(result: RunResult) -> str:
    counts = result.status_counts()
    parts = [f"{counts[status]} {_STATUS_LABELS[status]}" for status in Status if counts[status]]
    return _e(f"{len(result.requirements)} requirements: " + ", ".join(parts) + ".")


def _filters(result: RunResult) -> str:
    counts = result.status_counts()
    status_buttons = "".join(
        f'<button type="button" data-value="{s.value}" aria-pressed="true">'
        f"{_e(_STATUS_LABELS[s])} {counts[s]}</button>"
        for s in _FILTER_ORDER
    )
    levels = [level for level in Level if any(r.requirement.level is level for r in result.requirements)]
    level_buttons = "".join(
        f'<button type="button" data-value="{level.value}" aria-pressed="true">{level.value}</button>'
        for level in levels
    )
    return (
        '<div class="filters" role="search">'
        f'<div class="group" data-filter="status"><span class="label">Status</span>{status_buttons}</div>'
        f'<div class="group" data-filter="level"><span class="label">Level</span>{level_buttons}</div>'
        '<input type="search" id="filter-text" placeholder="Filter by ID, title or message" '
        'aria-label="Filter requirements">'
        '<button type="button" class="action" id="filter-problems">only problems</button>'
        '<button type="button" class="action" id="filter-all">show all</button>'
        '<span id="filter-count"></span></div>'
    )


def _requirement_tables(result: RunResult, anchors: dict[str, str]) -> str:
    sections = []
    for family in Family:
        rows = [r for r in result.requirements if r.requirement.family is family]
        if not rows:
            continue
        body = "".join(_requirement_row(r, anchors) for r in rows)
        sections.append(
            f'<section class="family" data-family="{family.value}">'
            f"<h3>{_e(family.value)} — {_e(family.description)}</h3>\n<table class=\"matrix\">"
            '<colgroup><col class="c-id"><col class="c-level"><col class="c-title">'
            '<col class="c-status"><col class="c-msg"></colgroup>'
            "<tr><th>ID</th><th>Level</th><th>Title</th><th>Status</th><th>Message</th></tr>"
            f"{body}</table></section>"
        )
    return "\n".join(sections)


def _requirement_row(r: RequirementResult, anchors: dict[str, str]) -> str:
    requirement = r.requirement
    search = " ".join((requirement.id, requirement.title, r.message)).lower()
    return (
        f'<tr class="req req-{r.status.value}" id="req-{_e(requirement.id)}" '
        f'data-status="{r.status.value}" data-level="{requirement.level.value}" '
        f'data-search="{_e(search)}">'
        f'<td class="id"><code>{_e(requirement.id)}</code></td>'
        f'<td class="level">{_level(requirement.level)}</td>'
        f'<td title="{_e(requirement.statement)}">{_e(requirement.title)}</td>'
        f'<td class="st">{_status(r.status)}</td>'
        f'<td class="msg">{_message(r, anchors)}</td>'
        "</tr>"
    )


def _message(requirement: RequirementResult, anchors: dict[str, str]) -> str:
    text = _e(requirement.message)
    target = next((anchors[c.nodeid] for c in requirement.checks if c.nodeid in anchors), None)
    return f'<a href="#{target}">{text}</a>' if target else f"<span>{text}</span>"


def _check_sections(result: RunResult, anchors: dict[str, str]) -> str:
    checks = _reported_checks(result)
    if not checks:
        return ""
    sections = [_check_section(check, anchors[check.nodeid], result) for check in checks]
    return "<h2>Failed and erroring checks</h2>\n" + "\n".join(sections)


def _check_section(check: CheckResult, anchor: str, result: RunResult) -> str:
    requirement_ids = " ".join(
        f'<a href="#req-{_e(r)}"><code>{_e(r)}</code></a>' for r in check.requirement_ids
    ) or "no requirement"
    path = check.nodeid.partition("::")[0]
    meta = [path, f"{check.duration_s:.2f} s"]
    if check.started_at and check.finished_at:
        meta.append(f"{check.started_at:%H:%M:%S.%f}"[:-3] + " – " + f"{check.finished_at:%H:%M:%S.%f}"[:-3] + " UTC")
    parts = [
        f'<section class="check check-{check.status.value}" id="{anchor}">',
        f"<h3>{_status(check.status)} {requirement_ids} <code>{_e(check.name)}</code></h3>",
        f'<p class="meta">{_e(" · ".join(meta))}</p>',
        f'<p class="message">{_e(check.message)}</p>',
        _expected_observed(check),
        _header_diff(check),
        _drops(check),
        _rejects(check),
        *(_figure(plot, plot.property) for plot in plots.check_plots(check)),
    ]
    if check.details:
        parts.append(f"<pre>{_e(check.details)}</pre>")
    parts.append(_check_links(check, result))
    parts.extend(
        f'<p class="property"><strong>{_e(name)}</strong>: {_e(value)}</p>'
        for name, value in check.properties
    )
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _check_links(check: CheckResult, result: RunResult) -> str:
    links = []
    if check.pcap:
        links.append("Capture: " + _link(check.pcap))
    elif result.artifacts.capture:
        links.append("Capture: " + _link(result.artifacts.capture) + ' <span class="muted">(whole run)</span>')
    if result.artifacts.logs:
        links.append("Logs: " + " ".join(_link(log, Path(log).name) for log in result.artifacts.logs))
    return f'<p class="links">{" · ".join(links)}</p>' if links else ""


def _expected_observed(check: CheckResult) -> str:
    expected, observed = check.get("expected"), check.get("observed")
    if expected is None and observed is None:
        return ""
    return (
        '<div class="eo block">'
        f'<div class="expected"><h4>Expected</h4><pre>{_e(expected or "—")}</pre></div>'
        f'<div class="observed"><h4>Observed</h4><pre>{_e(observed or "—")}</pre></div>'
        "</div>"
    )


def _header_diff(check: CheckResult) -> str:
    expected_hex, observed_hex = check.get("expected_header"), check.get("observed_header")
    if expected_hex is None or observed_hex is None:
        return ""
    expected, observed = bytes.fromhex(expected_hex), bytes.fromhex(observed_hex)
    labels = _geneve_fields(expected)
    differing = [
        i for i in range(max(len(expected), len(observed)))
        if i >= len(expected) or i >= len(observed) or expected[i] != observed[i]
    ]
    if not differing:
        summary = f"identical ({len(expected)} bytes)"
    else:
        first = differing[0]
        summary = (
            f"{len(differing)} of {max(len(expected), len(observed))} bytes differ; first at offset "
            f"{first} ({labels[first // 4] if first // 4 < len(labels) else 'beyond the header sent'})"
        )
        if len(expected) != len(observed):
            summary += f"; sent {len(expected)} bytes, returned {len(observed)}"
    rows = []
    for word in range(0, max(len(expected), len(observed)), 4):
        indexes = range(word, word + 4)
        label = labels[word // 4] if word // 4 < len(labels) else "beyond the header sent"
        differs = any(i in differing for i in indexes)
        rows.append(
            f'<tr class="{"differs" if differs else "same"}"><td class="off hex">{word:03d}</td>'
            f'<td class="hex">{_bytes(expected, observed, indexes)}</td>'
            f'<td class="hex">{_bytes(observed, expected, indexes)}</td>'
            f'<td class="field">{_e(label)}</td></tr>'
        )
    return (
        '<div class="block header-diff"><h4>GENEVE header: sent by the GWLB vs returned by the appliance</h4>'
        f'<p class="meta">{_e(summary)}</p><table class="hexdiff">'
        "<tr><th>offset</th><th>sent</th><th>returned</th><th>field (as sent)</th></tr>"
        + "".join(rows) + "</table></div>"
    )


def _bytes(mine: bytes, other: bytes, indexes: range) -> str:
    cells = []
    for i in indexes:
        if i >= len(mine):
            cells.append('<span class="byte missing">··</span>' if i < len(other) else "")
        elif i >= len(other) or mine[i] != other[i]:
            cells.append(f'<span class="byte diff">{mine[i]:02x}</span>')
        else:
            cells.append(f'<span class="byte">{mine[i]:02x}</span>')
    return "".join(cells)


def _geneve_fields(header: bytes) -> list[str]:
    """A label for each 4-byte word of a GENEVE header (base header, then option TLVs)."""
    labels = []
    if len(header) >= 4:
        labels.append(f"version {header[0] >> 6}, option length {header[0] & 0x3F} words, "
                      f"flags 0x{header[1]:02x}, protocol 0x{header[2]:02x}{header[3]:02x}")
    if len(header) >= 8:
        labels.append(f"VNI {int.from_bytes(header[4:7], 'big')}, reserved")
    end = min(len(header), 8 + (header[0] & 0x3F) * 4) if header else 0
    offset = 8
    while offset + 4 <= end:
        option_class = int.from_bytes(header[offset:offset + 2], "big")
        option_type, words = header[offset + 2], header[offset + 3] & 0x1F
        name = f"type {option_type}"
        if option_class in _GWLB_OPTION_CLASSES:
            name = _AWS_OPTION_NAMES.get(option_type, name)
        labels.append(f"option class 0x{option_class:04x} {name}: header, {words} words of data")
        labels += [f"{name} ({n + 1}/{words})" if words > 1 else name for n in range(words)]
        offset += 4 + 4 * words
    return labels


def _drops(check: CheckResult) -> str:
    drops = check.get("drops")
    if not drops:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(reason)}</code></td><td class=\"num\">{count}</td>"
        f"<td>{_e(_DROP_MEANINGS.get(reason, ''))}</td></tr>"
        for reason, count in sorted(drops.items(), key=lambda item: (-item[1], item[0]))
    )
    return (
        '<div class="block drops"><h4>Returns the emulated GWLB dropped</h4><table>'
        f"<tr><th>reason</th><th>packets</th><th>meaning</th></tr>{rows}</table></div>"
    )


def _rejects(check: CheckResult) -> str:
    rejects = check.get("rejects")
    if not rejects:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(r['reason'])}</code></td><td>{_e(r.get('source', ''))}</td>"
        f"<td>{_e(r.get('detail', ''))}</td><td class=\"hex\">{_e(_spaced(r.get('header', '')))}</td></tr>"
        for r in rejects
    )
    return (
        '<div class="block rejects"><h4>Last rejected returns</h4><table>'
        f"<tr><th>reason</th><th>from</th><th>detail</th><th>header bytes</th></tr>{rows}</table></div>"
    )


def _spaced(hex_text: str) -> str:
    return " ".join(hex_text[i:i + 8] for i in range(0, len(hex_text), 8))


def _measurements(result: RunResult) -> str:
    shown = []
    for check in result.checks:
        if check.status in (Status.FAIL, Status.ERROR):
            continue
        for plot in plots.check_plots(check):
            ids = ", ".join(check.requirement_ids)
            shown.append(_figure(
                plots.Plot(f"{plot.title} — {ids} {check.name}", plot.svg, plot.property), plot.property
            ))
    table = _perf_table(result)
    if not shown and not table:
        return ""
    return '<h2 id="measurements">Measurements</h2>\n' + table + '<div class="plots">' + "\n".join(shown) + "</div>"


_PERF_FIGURES = (
    ("pps", "throughput {criterion} (packets/s)"),
    ("gbps", "throughput {criterion} (Gbit/s)"),
    ("latency_p50_us", "round trip p50 (µs)"),
    ("latency_p99_us", "round trip p99 (µs)"),
    ("new_flows_per_s", "new flows/s"),
    ("concurrent_flows", "concurrent flows"),
)


def _number(value: float) -> str:
    """12,345 for large figures, four significant digits below 1000 (0.0311, 491.6)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _perf_table(result: RunResult) -> str:
    """Every PERF figure next to the harness's own ceiling of the same run, and the limiting side."""
    rows = []
    for check in result.checks:
        for record in check.get("perf") or ():
            for key, label in _PERF_FIGURES:
                if key not in record or f"ceiling_{key}" not in record:
                    continue
                what = label.format(criterion=record.get("criterion", "")).replace("  ", " ")
                rows.append(
                    f"<tr><td><code>{_e(', '.join(check.requirement_ids))}</code></td><td>{_e(what)}</td>"
                    f'<td class="num">{record["size"]:g}</td><td class="num">{_number(record[key])}</td>'
                    f'<td class="num">{_number(record[f"ceiling_{key}"])}</td><td>{_e(record.get("limit", "—"))}</td></tr>'
                )
    if not rows:
        return ""
    return (
        '<p class="muted">PERF figures through the appliance next to the harness alone (GENEVE reflected at '
        "each target, measured in the same run); the limit is the appliance when its figure is clearly worse "
        "than the ceiling. Trial parameters are in each check's properties in results.json.</p>"
        '<table class="perf"><tr><th>requirement</th><th>figure</th><th>size (B)</th><th>appliance</th>'
        "<th>ceiling</th><th>limit</th></tr>" + "".join(rows) + "</table>"
    )
