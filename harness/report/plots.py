"""Plots for the HTML report: matplotlib figures turned into inline SVG.

The extension point is a registry from a documented property name (properties.py) to a function
that draws its decoded value: `@plot_for("flows_per_target", "Flows per target")`. A check that
records the property gets the plot in the report; a new kind of measurement needs a decoder there
and a renderer here, nothing else. A renderer returns None when the value holds nothing to draw,
and the plot is left out. Figures use matplotlib's object API (no pyplot), so no GUI backend or
global state is involved; SVG text stays text so the page stays searchable and small.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from harness.catalog import Family
from harness.report.model import CheckResult, RunResult, Status

Renderer = Callable[[Any], Figure | None]

STATUS_COLORS = {
    Status.PASS: "#1a7f37",
    Status.FAIL: "#cf222e",
    Status.ERROR: "#bf8700",
    Status.SKIP: "#8c959f",
    Status.NOT_CLAIMED: "#d0d7de",
}
_SERIES_COLORS = ("#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#1b7c83", "#953800")
_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#57606a",
    "axes.grid": True,
    "grid.color": "#d0d7de",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
}


@dataclass(frozen=True)
class Plot:
    title: str
    svg: str
    property: str


@dataclass(frozen=True)
class _Entry:
    title: str
    render: Renderer


_REGISTRY: dict[str, _Entry] = {}
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)
_NAMESPACE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
"""HTML parsers put an inline <svg> into the SVG namespace themselves (xlink:href included)."""


def plot_for(property_name: str, title: str) -> Callable[[Renderer], Renderer]:
    """Register `render(decoded value) -> Figure | None` for a documented property."""

    def register(render: Renderer) -> Renderer:
        _REGISTRY[property_name] = _Entry(title, render)
        return render

    return register


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def check_plots(check: CheckResult) -> list[Plot]:
    """The plots of every registered property the check recorded, in registry order."""
    plots = []
    for name, entry in _REGISTRY.items():
        value = check.get(name)
        if value is None:
            continue
        with _style():
            figure = entry.render(value)
        if figure is not None:
            plots.append(Plot(entry.title, to_svg(figure, f"{check.nodeid}/{name}"), name))
    return plots


def overview(result: RunResult) -> Plot | None:
    """Requirements per family, stacked by status; None for an empty catalog."""
    families = [f for f in Family if any(r.requirement.family is f for r in result.requirements)]
    if not families:
        return None
    with _style():
        figure = _figure(6.4, 0.32 * len(families) + 0.9)
        axes = figure.add_subplot()
        left = [0] * len(families)
        labels = [f.value if f.description == f.value else f"{f.value} {f.description}" for f in families]
        for status in Status:
            counts = [
                sum(r.status is status and r.requirement.family is f for r in result.requirements)
                for f in families
            ]
            if not any(counts):
                continue
            bars = axes.barh(labels, counts, left=left, color=STATUS_COLORS[status],
                             label=status.value.replace("_", " "), height=0.62)
            axes.bar_label(bars, labels=[str(c) if c else "" for c in counts],
                           label_type="center", color="white", fontsize=8)
            left = [a + b for a, b in zip(left, counts)]
        axes.invert_yaxis()
        axes.set_xlabel("requirements")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(axis="y", visible=False)
        axes.legend(ncols=5, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=8)
    return Plot("Requirements by family and status", to_svg(figure, "overview"), "overview")


def to_svg(figure: Figure, salt: str) -> str:
    """The figure as an `<svg>` element for inlining; ids are salted so plots never collide."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    svg = _METADATA.sub("", text[text.index("<svg"):]).strip()
    root_end = svg.index(">")
    return _NAMESPACE.sub("", svg[:root_end]) + svg[root_end:]


def _style() -> Any:
    return matplotlib.rc_context(_STYLE)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


@plot_for("flows_per_target", "Flows per target")
def _flows_per_target(counts: dict[str, int]) -> Figure | None:
    if not counts or not sum(counts.values()):
        return None
    targets = sorted(counts, key=_natural)
    values = [counts[t] for t in targets]
    figure = _figure(6.4, 2.6)
    axes = figure.add_subplot()
    bars = axes.bar(targets, values, color=_SERIES_COLORS[0], width=0.6)
    axes.bar_label(bars, padding=2, fontsize=8)
    even = sum(values) / len(values)
    axes.axhline(even, color="#57606a", linestyle="--", linewidth=1)
    axes.set_ylim(0, max(values) * 1.18)
    axes.set_ylabel("flows")
    axes.grid(axis="x", visible=False)
    axes.set_title(f"{sum(values)} flows over {len(values)} targets · max/min {max(values)}/"
                   f"{min(values)} · dashed: even split {even:.4g}", fontsize=9, loc="left")
    return figure


@plot_for("failover_timeline", "Failover timeline")
def _failover_timeline(timeline: dict[str, Any]) -> Figure | None:
    if not timeline["t"] or not timeline["packets"]:
        return None
    figure = _figure(6.4, 2.8)
    axes = figure.add_subplot()
    colors = {}
    for index, (target, counts) in enumerate(sorted(timeline["packets"].items(), key=lambda i: _natural(i[0]))):
        colors[target] = _SERIES_COLORS[index % len(_SERIES_COLORS)]
        axes.step(timeline["t"], counts, where="post", label=target, color=colors[target], linewidth=1.4)
    for event in timeline["events"]:
        color = colors.get(event["target"], "#57606a")
        axes.axvline(event["t"], color=color, linestyle=":", linewidth=1.2)
        axes.annotate(f"{event['target']} {event['state']}", (event["t"], 1),
                      xycoords=("data", "axes fraction"), xytext=(3, -10), textcoords="offset points",
                      rotation=90, va="top", fontsize=7, color=color)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("packets")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return figure


@plot_for("perf", "Performance: the appliance next to the harness's own ceiling")
def _perf(records: list[dict[str, Any]]) -> Figure | None:
    """One panel per kind of figure present: throughput by size (one line per criterion, the
    ceiling dashed), latency by size, and single figures (new flows/s, concurrent flows) as bars.
    Panel titles name the side that limits each figure."""
    records = sorted(records, key=lambda r: r["size"])
    throughput = "gbps" if any("gbps" in r for r in records) else "pps"
    panels: list[Callable[[Any], None]] = []
    if any(throughput in r for r in records):
        panels.append(lambda axes: _throughput_panel(axes, records, throughput))
    if any(k in r for r in records for k in ("latency_p50_us", "latency_p99_us")):
        panels.append(lambda axes: _latency_panel(axes, records))
    for key, label in (("new_flows_per_s", "new flows/s"), ("concurrent_flows", "concurrent flows")):
        rows = [r for r in records if key in r]
        if rows:
            panels.append(lambda axes, rows=rows, key=key, label=label: _single_panel(axes, rows, key, label))
    if not panels:
        return None
    figure = _figure(3.4 * len(panels) if len(panels) > 1 else 5.0, 2.8)
    for axes, draw in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        draw(axes)
    return figure


def _limits(rows: list[dict[str, Any]], what: str) -> str:
    limited = sorted({f"{r['size']:g} B" for r in rows if r.get("limit") == "appliance"}, key=lambda t: float(t[:-2]))
    if not any("limit" in r for r in rows):
        return what
    return f"{what} · limit: appliance at {', '.join(limited)}" if limited else f"{what} · limit: harness"


def _sizes_axis(axes: Any, rows: list[dict[str, Any]]) -> None:
    sizes = sorted({r["size"] for r in rows})
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{s:g}" for s in sizes])
    axes.minorticks_off()
    axes.set_xlabel("inner packet size (bytes)")


def _throughput_panel(axes: Any, records: list[dict[str, Any]], key: str) -> None:
    rows = [r for r in records if key in r]
    criteria = list(dict.fromkeys(r.get("criterion", "") for r in rows))
    for index, criterion in enumerate(criteria):
        mine = [r for r in rows if r.get("criterion", "") == criterion]
        color = _SERIES_COLORS[index % len(_SERIES_COLORS)]
        axes.plot([r["size"] for r in mine], [r[key] for r in mine], marker="o", color=color,
                  label=f"appliance {criterion}".strip())
        ceiling = [r for r in mine if f"ceiling_{key}" in r]
        if ceiling:
            axes.plot([r["size"] for r in ceiling], [r[f"ceiling_{key}"] for r in ceiling], marker="x", color=color,
                      linestyle="--", label=f"ceiling {criterion}".strip())
    axes.set_ylabel("Gbit/s" if key == "gbps" else "packets/s")
    axes.set_title(_limits(rows, "throughput"), fontsize=9, loc="left")
    if len(criteria) > 1 or any(f"ceiling_{key}" in r for r in rows):
        axes.legend(frameon=False, fontsize=7)
    _sizes_axis(axes, rows)


def _latency_panel(axes: Any, records: list[dict[str, Any]]) -> None:
    rows = [r for r in records if "latency_p50_us" in r or "latency_p99_us" in r]
    for index, q in enumerate(("p50", "p99")):
        key = f"latency_{q}_us"
        mine = [r for r in rows if key in r]
        color = _SERIES_COLORS[(index + 1) % len(_SERIES_COLORS)]
        axes.plot([r["size"] for r in mine], [r[key] for r in mine], marker="o", color=color, label=f"appliance {q}")
        ceiling = [r for r in mine if f"ceiling_{key}" in r]
        if ceiling:
            axes.plot([r["size"] for r in ceiling], [r[f"ceiling_{key}"] for r in ceiling], marker="x", color=color,
                      linestyle="--", label=f"ceiling {q}")
    axes.set_ylabel("round trip (µs)" if any("ceiling_latency_p50_us" in r for r in rows) else "added latency (µs)")
    axes.set_title(_limits(rows, "latency"), fontsize=9, loc="left")
    axes.legend(frameon=False, fontsize=7)
    _sizes_axis(axes, rows)


def _single_panel(axes: Any, rows: list[dict[str, Any]], key: str, label: str) -> None:
    names, values, colors = [], [], []
    for r in rows:
        names.append("appliance" if len(rows) == 1 else f"appliance {r['size']:g} B")
        values.append(r[key])
        colors.append(_SERIES_COLORS[0])
        if f"ceiling_{key}" in r:
            names.append("ceiling" if len(rows) == 1 else f"ceiling {r['size']:g} B")
            values.append(r[f"ceiling_{key}"])
            colors.append("#8c959f")
    bars = axes.bar(names, values, color=colors, width=0.6)
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=2, fontsize=8)
    axes.set_ylim(0, max(values + [1]) * 1.2)
    axes.set_ylabel(label)
    axes.grid(axis="x", visible=False)
    limits = {r["limit"] for r in rows if "limit" in r}
    axes.set_title(f"{label} · limit: {', '.join(sorted(limits))}" if limits else label, fontsize=9, loc="left")


def _natural(name: str) -> tuple[str, int]:
    """Sort key putting a2 before a10."""
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)
