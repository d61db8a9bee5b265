"""The HTML report as a reader sees it: a failing run rendered and loaded in real headless Chromium.

Assertions are on the DOM Chromium dumps after the page's script ran (verdict, the failing
requirement, the plots, the byte diff, the status filter driven by the URL fragment), not on the
HTML source. The run is built directly from the result model: no testbed, no root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.catalog import Catalog, Family, Level, Requirement
from harness.report.model import Artifacts, CheckResult, RunInfo, RunResult, Status, build_result
from harness.report.render_html import write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (scripts/setup.sh installs it)")

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
SENT = bytes.fromhex(
    "08000800 00000000 01080102 12345678 90abcdef 01080202 01234567 89abcdef 01080301 195373ee"
)
RETURNED = SENT[:36] + bytes.fromhex("19537311")


def _requirement(rid: str, family: Family, level: Level, title: str) -> Requirement:
    return Requirement(rid, family, level, title, f"{title}.", "test")


CATALOG = Catalog([
    _requirement("ENC-HDR-ECHO", Family.ENC, Level.MUST, "GENEVE header echoed byte-for-byte"),
    _requirement("ENC-DST-PORT", Family.ENC, Level.MUST, "Replies sent to UDP port 6081"),
    _requirement("ENC-SRC-PORT", Family.ENC, Level.SHOULD, "Replies keep the GWLB's UDP source port"),
    _requirement("FLOW-SPREAD", Family.FLOW, Level.MUST, "New flows spread over healthy targets"),
    Requirement("FLOW-IPV6", Family.FLOW, Level.MUST, "IPv6 flows", "IPv6 flows.", "test", "ipv6"),
    _requirement("HC-FAILOVER", Family.HC, Level.MUST, "Failover within interval × threshold"),
    _requirement("PERF-THROUGHPUT", Family.PERF, Level.INFO, "Throughput by packet size"),
])


def _check(name: str, rid: str, status: Status, offset_s: float, **kw: object) -> CheckResult:
    return CheckResult(
        nodeid=f"conformance/test_demo.py::{name}",
        requirement_ids=(rid,),
        status=status,
        duration_s=0.4,
        started_at=START + timedelta(seconds=offset_s),
        finished_at=START + timedelta(seconds=offset_s + 0.4),
        **kw,  # type: ignore[arg-type]
    )


def failing_run() -> RunResult:
    """A NOT_CONFORMANT run with every kind of evidence the report can show."""
    checks = [
        _check(
            "test_header_echoed_byte_for_byte", "ENC-HDR-ECHO", Status.FAIL, 1,
            message="returned GENEVE header differs from the one sent (5 packets)",
            details="expected the flow cookie 0x195373ee back, got 0x19537311",
            pcap="pcaps/test_demo.test_header_echoed_byte_for_byte.pcap",
            data=(
                ("expected", "cookie 0x195373ee"),
                ("observed", "cookie 0x19537311"),
                ("expected_header", SENT.hex()),
                ("observed_header", RETURNED.hex()),
                ("drops", {"unknown_cookie": 5, "dst_port": 1}),
                ("rejects", [{"reason": "unknown_cookie", "source": "a1", "detail": "cookie 0x19537311",
                              "header": RETURNED.hex()}]),
            ),
        ),
        _check("test_replies_go_to_port_6081", "ENC-DST-PORT", Status.PASS, 2),
        _check("test_source_port_kept", "ENC-SRC-PORT", Status.FAIL, 3,
               message="5 returned packets came from UDP source port 6081, not 40001"),
        _check("test_new_flows_spread", "FLOW-SPREAD", Status.PASS, 4,
               data=(("flows_per_target", {"a1": 251, "a2": 240, "a3": 262, "a10": 247}),)),
        _check("test_ipv6", "FLOW-IPV6", Status.NOT_CLAIMED, 5, message="not claimed: ipv6"),
        _check("test_failover", "HC-FAILOVER", Status.PASS, 6, data=(("failover_timeline", {
            "t": [0, 1, 2, 3, 4, 5],
            "packets": {"a1": [50, 50, 20, 0, 0, 0], "a2": [50, 50, 80, 100, 100, 100]},
            "events": [{"t": 2.2, "target": "a1", "state": "unhealthy"}],
        }),)),
        _check("test_throughput", "PERF-THROUGHPUT", Status.PASS, 7, data=(("perf", [
            {"size": 64, "gbps": 0.4, "latency_p50_us": 40, "latency_p99_us": 90},
            {"size": 1500, "gbps": 3.1, "latency_p50_us": 45, "latency_p99_us": 110},
            {"size": 8500, "gbps": 7.9, "latency_p50_us": 60, "latency_p99_us": 150},
        ]),)),
    ]
    info = RunInfo(
        run_id="a1b2c3", appliance_name="demo-tunnel-handler", appliance_version="2.4.1",
        appliance_launch="/opt/demo/handler -p 8080", profile="aws", timers="accelerated",
        topology="default", harness_version="0.1.0", kernel="6.1.0-test", started_at=START,
        finished_at=START + timedelta(seconds=9),
    )
    artifacts = Artifacts(capture="pcaps/gwlb.pcap", logs=("logs/a1.log", "logs/emulator.log"),
                          bundle="bundle.tar.gz", environment="environment.json")
    return build_result(CATALOG, info, checks, artifacts=artifacts)


class _Dom(HTMLParser):
    """Elements of the dumped DOM: (tag, attributes, text directly inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), []))
        if tag not in {"br", "col", "input", "meta", "link", "img", "path", "use", "rect", "line"}:
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self.elements[self._open[-1]][2].append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str | None], str]]:
        found = []
        for name, element_attrs, text in self.elements:
            if name == tag and all(element_attrs.get(k.rstrip("_")) == v for k, v in attrs.items()):
                found.append((element_attrs, "".join(text).strip()))
        return found


def _dump(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, _Dom]:
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
         page.as_uri() + fragment],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    return done.stdout, dom


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "index.html"
    write_html(failing_run(), path)
    return path


def test_rendered_page_shows_verdict_failure_and_plots(page: Path, tmp_path: Path) -> None:
    text, dom = _dump(page, tmp_path)

    assert 'class="js"' in text.split(">", 2)[1], "the page's script did not run"
    assert dom.find("h1", id="verdict")[0][1] == "NOT CONFORMANT"
    assert dom.find("span", id="filter-count")[0][1] == "Showing 7 of 7 requirements"
    row = dom.find("tr", id="req-ENC-HDR-ECHO")[0][0]
    assert row["data-status"] == "fail" and "hidden" not in row
    failure = dom.find("section", id="check-1")[0][0]
    assert failure["class"] == "check check-fail"
    assert [t for _, t in dom.find("p", class_="message")][0].startswith("returned GENEVE header differs")
    assert [t for _, t in dom.find("span", class_="byte diff")] == ["ee", "11"]
    plots = {a["data-plot"] for a, _ in dom.find("figure", class_="plot")}
    assert plots == {"overview", "flows_per_target", "failover_timeline", "perf"}
    assert len(dom.find("svg")) == 4
    assert "unknown_cookie" in {t for _, t in dom.find("code")}
    links = {a["href"] for a, _ in dom.find("a") if a.get("href")}
    assert {"pcaps/test_demo.test_header_echoed_byte_for_byte.pcap", "logs/a1.log", "bundle.tar.gz"} <= links
    assert not any(re.match(r"https?:", href or "") for href in links)


def test_status_filter_from_the_url_fragment(page: Path, tmp_path: Path) -> None:
    _, dom = _dump(page, tmp_path, "#status=fail,error")

    rows = {a["id"]: a for a, _ in dom.find("tr") if a.get("class", "").startswith("req ")}
    visible = sorted(rid for rid, a in rows.items() if "hidden" not in a)
    assert visible == ["req-ENC-HDR-ECHO", "req-ENC-SRC-PORT"]
    assert dom.find("span", id="filter-count")[0][1] == "Showing 2 of 7 requirements"
    hidden_families = {a["data-family"] for a, _ in dom.find("section") if "hidden" in a and a.get("data-family")}
    assert hidden_families == {"FLOW", "HC", "PERF"}
    pressed = {a["data-value"]: a["aria-pressed"] for a, _ in dom.find("button") if a.get("data-value")}
    assert pressed["fail"] == pressed["error"] == "true" and pressed["pass"] == "false"


def test_level_and_text_filters_combine(page: Path, tmp_path: Path) -> None:
    _, dom = _dump(page, tmp_path, "#level=MUST&q=port")

    rows = [a["id"] for a, _ in dom.find("tr") if a.get("class", "").startswith("req ") and "hidden" not in a]
    assert rows == ["req-ENC-DST-PORT"]
