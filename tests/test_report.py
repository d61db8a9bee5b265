"""The report plugin end to end: tiny synthetic test files run under pytester with a ReportPlugin,
then results.json (against its schema), junit.xml, index.html, the per-check captures and the
bundle are read back. The rendered page in a real browser is tests/test_report_browser.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapReader, rdpcap, wrpcap

from harness import geneve
from harness.bundle import write_bundle
from harness.catalog import Catalog, Family, Level, Requirement
from harness.errors import HarnessError
from harness.report import pcaps, plots, properties
from harness.report import plugin as plugin_module
from harness.report import (
    CheckResult,
    ReportPlugin,
    RunInfo,
    Status,
    Verdict,
    build_result,
)
from harness.report.render_html import render_html
from harness.report.render_json import SCHEMA_PATH

pytest_plugins = ["pytester"]

CATALOG = Catalog(
    [
        Requirement("ENC-ONE", Family.ENC, Level.MUST, "First", "One must hold.", "test"),
        Requirement("ENC-TWO", Family.ENC, Level.MUST, "Second", "Two must hold.", "test"),
        Requirement("ENC-SOFT", Family.ENC, Level.SHOULD, "Soft", "Soft should hold.", "test"),
        Requirement("FLOW-V6", Family.FLOW, Level.MUST, "IPv6", "IPv6 flows.", "test", "ipv6"),
    ]
)
INFO = RunInfo(
    run_id="run-test",
    appliance_name="demo-appliance",
    appliance_version="1.2",
    appliance_launch="/opt/demo --port 8080",
    profile="aws",
    timers="accelerated",
    topology="default",
    harness_version="0.1.0",
    kernel="6.1.0-test",
    started_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
    notes=("synthetic run",),
)

ALL_PASS = """
    import pytest

    @pytest.mark.requirement("ENC-ONE")
    def test_one():
        pass

    @pytest.mark.requirement("ENC-TWO", "ENC-SOFT")
    def test_two_and_soft():
        pass

    @pytest.mark.requirement("FLOW-V6")
    def test_v6():
        pytest.skip("not claimed: ipv6")
"""


@dataclass(frozen=True)
class Run:
    plugin: ReportPlugin
    results: dict[str, Any]
    junit: ET.Element
    html: str
    out_dir: Path

    def requirement(self, requirement_id: str) -> dict[str, Any]:
        return next(r for r in self.results["requirements"] if r["id"] == requirement_id)

    def check(self, name: str) -> dict[str, Any]:
        return next(c for c in self.results["checks"] if c["nodeid"].endswith(f"::{name}"))

    def testcase(self, name: str) -> ET.Element:
        return next(c for c in self.junit.iter("testcase") if c.get("name").endswith(f" {name}"))


@pytest.fixture
def run_checks(pytester: pytest.Pytester):
    def run(source: str, *args: str) -> Run:
        pytester.makepyfile(test_checks=textwrap.dedent(source))
        out_dir = pytester.path / "report"
        plugin = ReportPlugin(CATALOG, INFO, out_dir)
        pytester.runpytest("-p", "no:cacheprovider", *args, plugins=[plugin])
        results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(schema).validate(results)
        return Run(
            plugin=plugin,
            results=results,
            junit=ET.parse(out_dir / "junit.xml").getroot(),
            html=(out_dir / "index.html").read_text(encoding="utf-8"),
            out_dir=out_dir,
        )

    return run


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text("utf-8")))


def test_passing_run_is_conformant(run_checks) -> None:
    run = run_checks(ALL_PASS)

    assert run.plugin.result.verdict is Verdict.CONFORMANT
    assert run.results["verdict"] == "CONFORMANT"
    assert run.results["exit_code"] == 0
    assert run.results["errors"] == [] and run.results["warnings"] == []
    assert [r["status"] for r in run.results["requirements"]] == [
        "pass",
        "pass",
        "pass",
        "not_claimed",
    ]
    assert run.requirement("FLOW-V6")["message"] == "not claimed: ipv6"
    assert run.requirement("ENC-SOFT")["checks"] == ["test_checks.py::test_two_and_soft"]
    assert run.check("test_two_and_soft")["requirements"] == ["ENC-TWO", "ENC-SOFT"]
    assert run.results["appliance"] == {
        "name": "demo-appliance",
        "version": "1.2",
        "launch": "/opt/demo --port 8080",
    }
    assert run.results["run"]["started_at"] == "2024-05-06T07:08:09+00:00"
    assert run.results["run"]["finished_at"] is not None
    assert (run.results["profile"], run.results["timers"]) == ("aws", "accelerated")

    suite = run.junit.find("testsuite")
    totals = [suite.get(name) for name in ("tests", "failures", "errors", "skipped")]
    assert totals == ["3", "0", "0", "1"]
    assert run.testcase("test_two_and_soft").get("name") == "ENC-TWO ENC-SOFT test_two_and_soft"
    assert run.testcase("test_v6").find("skipped").get("message") == "not claimed: ipv6"
    assert 'class="banner verdict-conformant"' in run.html
    assert "demo-appliance 1.2" in run.html and "accelerated" in run.html
    assert "<h3>FLOW — Flows</h3>" in run.html
    assert "http://" not in run.html and "https://" not in run.html


def test_failing_must_is_not_conformant(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE")
        def test_one():
            observed = "00 00 65 58"
            diff = "expected 00 00 08 00\\nobserved 00 00 65 58"
            assert observed == "00 00 08 00", "header not echoed\\n" + diff

        @pytest.mark.requirement("ENC-TWO", "ENC-SOFT")
        def test_two():
            pass
        """
    )

    assert run.results["verdict"] == "NOT_CONFORMANT"
    assert run.results["exit_code"] == 1
    check = run.check("test_one")
    assert check["status"] == "fail"
    assert check["message"] == "header not echoed"
    assert "expected 00 00 08 00\nobserved 00 00 65 58" in check["details"]
    assert "Traceback" not in check["details"] and "test_checks.py:" not in check["details"]
    assert run.requirement("ENC-ONE") | {"checks": None} == {
        "id": "ENC-ONE",
        "family": "ENC",
        "level": "MUST",
        "title": "First",
        "statement": "One must hold.",
        "needs": None,
        "status": "fail",
        "message": "header not echoed",
        "checks": None,
    }
    assert run.requirement("FLOW-V6")["status"] == "skip"

    failure = run.testcase("test_one").find("failure")
    assert failure.get("message") == "header not echoed"
    assert "observed 00 00 65 58" in failure.text
    assert run.junit.find("testsuite").get("failures") == "1"
    assert 'class="banner verdict-not-conformant"' in run.html
    assert "<h2>Failed and erroring checks</h2>" in run.html
    assert "<pre>header not echoed\nexpected 00 00 08 00\nobserved 00 00 65 58" in run.html


def test_failing_should_only_is_conformant_with_warning(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO")
        def test_musts():
            pass

        @pytest.mark.requirement("ENC-SOFT")
        def test_soft():
            assert False, "source port changed from 40001 to 6081"
        """
    )

    assert run.results["verdict"] == "CONFORMANT"
    assert run.results["exit_code"] == 0
    assert run.requirement("ENC-SOFT")["status"] == "fail"
    assert run.results["warnings"] == ["ENC-SOFT (SHOULD): source port changed from 40001 to 6081"]
    assert [w.requirement.id for w in run.plugin.result.warnings] == ["ENC-SOFT"]
    assert "<h2>Warnings</h2>" in run.html
    assert run.testcase("test_soft").find("failure") is not None


def test_setup_error_is_error(run_checks) -> None:
    run = run_checks(
        """
        import pytest
        from harness.errors import HarnessError

        @pytest.fixture
        def appliance():
            raise HarnessError("appliance a1 never became healthy")

        @pytest.mark.requirement("ENC-ONE")
        def test_one(appliance):
            pass

        @pytest.mark.requirement("ENC-TWO", "ENC-SOFT")
        def test_two():
            pass
        """
    )

    assert run.results["verdict"] == "ERROR"
    assert run.results["exit_code"] == 2
    check = run.check("test_one")
    assert check["status"] == "error"
    assert check["message"] == "HarnessError: appliance a1 never became healthy"
    assert run.requirement("ENC-ONE")["status"] == "error"
    assert run.testcase("test_one").find("error").get("message") == check["message"]
    assert 'class="banner verdict-error"' in run.html


def test_harness_error_in_test_body_is_error_not_failure(run_checks) -> None:
    run = run_checks(
        """
        import pytest
        from harness.errors import HarnessError

        @pytest.mark.requirement("ENC-ONE")
        def test_one():
            raise HarnessError("emulator API did not answer")
        """
    )

    assert run.check("test_one")["status"] == "error"
    assert run.results["verdict"] == "ERROR"


def test_teardown_error_is_error(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.fixture
        def namespace():
            yield
            raise RuntimeError("namespace gc-x1 still exists")

        @pytest.mark.requirement("ENC-ONE")
        def test_one(namespace):
            pass
        """
    )

    check = run.check("test_one")
    assert check["status"] == "error"
    assert check["message"] == "teardown: RuntimeError: namespace gc-x1 still exists"
    assert run.results["verdict"] == "ERROR"


def test_skips_and_not_claimed(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.fixture
        def ipv6():
            pytest.skip("not claimed: ipv6")

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO")
        def test_musts():
            pass

        @pytest.mark.requirement("FLOW-V6")
        def test_v6(ipv6):
            pass

        @pytest.mark.requirement("ENC-SOFT")
        @pytest.mark.skip(reason="needs docker")
        def test_soft():
            pass
        """
    )

    assert run.check("test_v6")["status"] == "not_claimed"
    soft = run.check("test_soft")
    assert soft["started_at"] <= soft["finished_at"]
    assert soft | {"duration_s": 0, "started_at": None, "finished_at": None} == {
        "nodeid": "test_checks.py::test_soft",
        "requirements": ["ENC-SOFT"],
        "status": "skip",
        "duration_s": 0,
        "message": "needs docker",
        "details": "",
        "pcap": None,
        "properties": {},
        "data": {},
        "started_at": None,
        "finished_at": None,
    }
    assert run.requirement("FLOW-V6")["status"] == "not_claimed"
    assert run.requirement("ENC-SOFT")["status"] == "skip"
    assert run.results["verdict"] == "CONFORMANT"
    assert run.testcase("test_soft").find("skipped").get("message") == "needs docker"
    assert "not claimed" in run.html


def test_unmarked_test_is_harness_error(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
        def test_musts():
            pass

        def test_forgotten():
            pass
        """
    )

    assert run.results["errors"] == [
        "check test_checks.py::test_forgotten has no requirement marker"
    ]
    assert run.results["verdict"] == "ERROR"
    harness_cases = [c for c in run.junit.iter("testcase") if c.get("classname") == "harness"]
    assert [c.find("error").get("message") for c in harness_cases] == run.results["errors"]
    assert run.junit.find("testsuite").get("errors") == "1"
    assert "<h2>Harness errors</h2>" in run.html
    assert "has no requirement marker" in run.html


def test_unknown_requirement_id_is_harness_error(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-NOPE")
        def test_typo():
            pass
        """
    )

    assert run.results["errors"] == [
        "check test_checks.py::test_typo names requirement ENC-NOPE, which is not in the catalog"
    ]
    assert run.results["verdict"] == "ERROR"


def test_requirement_not_run_is_skip(run_checks) -> None:
    run = run_checks(ALL_PASS, "-k", "not test_two_and_soft")

    for requirement_id in ("ENC-TWO", "ENC-SOFT"):
        requirement = run.requirement(requirement_id)
        assert (requirement["status"], requirement["message"]) == ("skip", "not run")
        assert requirement["checks"] == []
    assert run.results["verdict"] == "CONFORMANT"
    assert run.results["summary"] == {"pass": 1, "fail": 0, "skip": 2, "not_claimed": 1, "error": 0}


def test_no_check_ran_is_error(run_checks) -> None:
    run = run_checks(ALL_PASS, "-k", "no_such_test")

    assert run.results["checks"] == []
    assert run.results["errors"] == ["no check ran"]
    assert run.results["verdict"] == "ERROR"


def test_recorded_pcap_and_details_are_reported(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
        def test_echo(record_property):
            record_property("pcap", "pcaps/test_echo a1.pcap")
            record_property("details", "offset 0x10: expected 01 observed 02")
            record_property("target", "a1")
            pytest.fail("cookie mismatch")
        """
    )

    check = run.check("test_echo")
    assert check["pcap"] == "pcaps/test_echo a1.pcap"
    assert check["details"] == "cookie mismatch\n\noffset 0x10: expected 01 observed 02"
    assert check["properties"] == {"target": "a1"}
    assert check["message"] == "cookie mismatch"
    assert '<a href="pcaps/test_echo%20a1.pcap">pcaps/test_echo a1.pcap</a>' in run.html
    properties = run.testcase("test_echo").find("properties")
    assert properties.find("property").attrib == {
        "name": "pcap",
        "value": "pcaps/test_echo a1.pcap",
    }


def test_add_error_makes_the_run_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_checks=textwrap.dedent(
            """
            import pytest

            @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
            def test_one():
                pass
            """
        )
    )
    plugin = ReportPlugin(CATALOG, INFO, pytester.path / "out")
    plugin.add_error("appliance a1 never became healthy")
    pytester.runpytest("-p", "no:cacheprovider", plugins=[plugin])

    assert plugin.result.verdict is Verdict.ERROR
    assert plugin.result.errors == ("appliance a1 never became healthy",)
    assert "appliance a1 never became healthy" in (pytester.path / "out" / "index.html").read_text()


def test_collection_error_is_harness_error(run_checks) -> None:
    run = run_checks("import no_such_module_for_report_tests\n")

    assert run.results["verdict"] == "ERROR"
    assert run.results["errors"][0].startswith("collecting test_checks.py failed:")
    assert "no_such_module_for_report_tests" in run.results["errors"][0]


def test_marker_is_registered_for_strict_markers(run_checks) -> None:
    run = run_checks(ALL_PASS, "--strict-markers")

    assert run.results["verdict"] == "CONFORMANT"


def test_everything_is_escaped(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
        def test_nasty():
            pytest.fail("<script>alert('x')</script> & \\x00 raw")
        """
    )

    assert "<script>alert" not in run.html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in run.html
    failure = run.testcase("test_nasty").find("failure")
    replaced_nul = "\N{REPLACEMENT CHARACTER}"
    assert failure.get("message").startswith(f"<script>alert('x')</script> & {replaced_nul}")


def test_result_is_unavailable_before_the_session_ends() -> None:
    plugin = ReportPlugin(CATALOG, INFO, Path("unused"))

    with pytest.raises(RuntimeError, match="end of the pytest session"):
        plugin.result


def _check(status: Status, requirement: str = "ENC-ONE") -> CheckResult:
    return CheckResult(f"t.py::{status.value}", (requirement,), status, 0.1, status.value)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((Status.PASS, Status.ERROR, Status.FAIL), Status.ERROR),
        ((Status.PASS, Status.FAIL, Status.SKIP), Status.FAIL),
        ((Status.NOT_CLAIMED, Status.PASS), Status.PASS),
        ((Status.SKIP, Status.NOT_CLAIMED), Status.NOT_CLAIMED),
        ((Status.SKIP,), Status.SKIP),
    ],
)
def test_requirement_status_precedence(statuses: tuple[Status, ...], expected: Status) -> None:
    checks = [_check(status) for status in statuses] + [_check(Status.PASS, "ENC-TWO")]

    result = build_result(CATALOG, INFO, checks)

    assert result.requirements[0].status is expected


@pytest.mark.parametrize(
    ("checks", "verdict"),
    [
        ([_check(Status.PASS)], Verdict.CONFORMANT),
        ([_check(Status.FAIL)], Verdict.NOT_CONFORMANT),
        ([_check(Status.ERROR)], Verdict.ERROR),
        ([_check(Status.PASS), _check(Status.ERROR, "ENC-SOFT")], Verdict.CONFORMANT),
        ([_check(Status.PASS), _check(Status.FAIL, "ENC-SOFT")], Verdict.CONFORMANT),
        ([_check(Status.FAIL), _check(Status.ERROR, "ENC-SOFT")], Verdict.NOT_CONFORMANT),
        ([_check(Status.SKIP), _check(Status.NOT_CLAIMED, "FLOW-V6")], Verdict.ERROR),
        ([], Verdict.ERROR),
    ],
)
def test_verdict(checks: list[CheckResult], verdict: Verdict) -> None:
    assert build_result(CATALOG, INFO, checks).verdict is verdict


def test_exit_codes() -> None:
    assert [v.exit_code for v in Verdict] == [0, 1, 2]


# Documented properties, per-check captures, plots and the bundle.

CAPTURE_CHECKS = """
    import time
    import pytest
    from scapy.all import IP, UDP, ICMP, Raw
    from scapy.layers.l2 import CookedLinuxV2
    from scapy.utils import PcapWriter
    from harness import geneve

    HEADER = geneve.aws_header(geneve.PROTO_IPV4, geneve.AwsMetadata(0x12345678, 0x9ABC, 0x195373EE)).encode()

    def send(marker):
        inner = IP(src="10.0.1.10", dst="10.0.2.10") / ICMP() / Raw(marker.encode())
        packet = (CookedLinuxV2(proto=0x0800, ifindex=2, lladdrtype=1, lladdrlen=6, src=b"\\x02" * 6)
                  / IP(src="10.200.0.1", dst="10.200.0.11") / UDP(sport=40001, dport=6081)
                  / Raw(HEADER + bytes(inner)))
        with PcapWriter(r"{capture}", linktype=276, append=True, sync=True) as writer:
            writer.write(packet)

    @pytest.fixture(scope="module")
    def traffic():
        send("module-fixture")

    @pytest.mark.requirement("ENC-ONE")
    def test_first(traffic):
        time.sleep(0.25)
        send("first")
        time.sleep(0.25)

    @pytest.mark.requirement("ENC-TWO")
    def test_fails(traffic):
        time.sleep(0.35)
        send("fails")
        pytest.fail("cookie not echoed")

    @pytest.mark.requirement("ENC-SOFT")
    def test_last():
        time.sleep(0.35)
        send("last")
"""


def _markers(pcap: Path) -> list[str]:
    """The text each inner ICMP packet of a capture carries (CAPTURE_CHECKS writes them)."""
    markers = []
    for packet in rdpcap(str(pcap)):
        payload = bytes(packet[UDP].payload)
        inner = IP(payload[geneve.GeneveHeader.decode(payload).length:])
        markers.append(bytes(inner[ICMP].payload).decode())
    return markers


def test_failing_check_gets_its_packets_cut_from_the_capture(pytester: pytest.Pytester) -> None:
    capture = pytester.path / "report" / "pcaps" / "gwlb.pcap"
    capture.parent.mkdir(parents=True)
    pytester.makepyfile(test_checks=textwrap.dedent(CAPTURE_CHECKS).replace("{capture}", str(capture)))
    plugin = ReportPlugin(CATALOG, INFO, pytester.path / "report", capture_settle_s=0)
    pytester.runpytest("-p", "no:cacheprovider", plugins=[plugin])

    result = plugin.result
    failing = next(c for c in result.checks if c.name == "test_fails")
    assert failing.pcap == "pcaps/test_checks.test_fails.pcap"
    assert [c.pcap for c in result.checks if c.name != "test_fails"] == [None, None]
    assert _markers(pytester.path / "report" / failing.pcap) == ["module-fixture", "fails"]
    assert result.artifacts.capture == "pcaps/gwlb.pcap"
    html = (pytester.path / "report" / "index.html").read_text()
    assert '<a href="pcaps/test_checks.test_fails.pcap">' in html
    assert failing.started_at is not None and failing.finished_at is not None
    assert (failing.finished_at - failing.started_at).total_seconds() >= 0.35

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    done = subprocess.run(
        ["tshark", "-r", str(pytester.path / "report" / failing.pcap), "-Y", "geneve",
         "-T", "fields", "-e", "geneve.option.class", "-e", "geneve.option.type"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.split("\n")[:2] == ["0x0108,0x0108,0x0108\t0x01,0x02,0x03"] * 2


def test_cut_keeps_link_type_and_skips_empty_outputs(tmp_path: Path) -> None:
    packets = [Ether() / IP() / UDP(dport=6081) for _ in range(3)]
    for second, packet in zip((10.0, 20.0, 30.0), packets):
        packet.time = second
    source = tmp_path / "all.pcap"
    wrpcap(str(source), packets)
    hit, miss = tmp_path / "hit.pcap", tmp_path / "miss.pcap"

    counts = pcaps.cut(source, {hit: [pcaps.Window(9, 11), pcaps.Window(29.5, 30.5)], miss: [pcaps.Window(40, 50)]})

    assert counts == {hit: 2, miss: 0}
    assert not miss.exists()
    with PcapReader(str(hit)) as reader:
        assert reader.linktype == 1
        assert [float(p.time) for p in reader] == [10.0, 30.0]


def test_cut_rejects_what_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "gwlb.pcap"
    bogus.write_bytes(b"not a capture at all")

    with pytest.raises(pcaps.CaptureError, match="cannot read the capture .*gwlb.pcap"):
        pcaps.cut(bogus, {tmp_path / "out.pcap": [pcaps.Window(0, 1)]})


@pytest.mark.parametrize(
    ("nodeid", "name"),
    [
        ("conformance/test_mtu.py::test_boundary_sizes_cross_intact[1500]", "test_mtu.test_boundary_sizes_cross_intact-1500.pcap"),
        ("conformance/test_enc.py::TestEcho::test_header", "test_enc.TestEcho.test_header.pcap"),
        ("conformance/test_x.py::test_y[a/b c]", "test_x.test_y-a-b-c.pcap"),
    ],
)
def test_pcap_names(nodeid: str, name: str) -> None:
    assert pcaps.pcap_name(nodeid) == name


def test_documented_properties_are_decoded(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
        def test_echo(record_property):
            record_property("expected_header", bytes.fromhex("0800080000000000"))
            record_property("observed_header", "08 00 08 00 00 00 00 01")
            record_property("drops", '{"unknown_cookie": 3}')
            record_property("flows_per_target", {"a1": 10, "a2": 12})
            record_property("expected", "cookie 0x1")
            record_property("observed", "cookie 0x2")
            record_property("target", "a1")
            pytest.fail("header differs")
        """
    )

    check = run.check("test_echo")
    assert check["data"] == {
        "expected_header": "0800080000000000",
        "observed_header": "0800080000000001",
        "drops": {"unknown_cookie": 3},
        "flows_per_target": {"a1": 10, "a2": 12},
        "expected": "cookie 0x1",
        "observed": "cookie 0x2",
    }
    assert check["properties"] == {"target": "a1"}
    assert '<span class="byte diff">00</span>' in run.html and '<span class="byte diff">01</span>' in run.html
    assert 'data-plot="flows_per_target"' in run.html and "flow cookie the GWLB never issued" in run.html
    properties = {p.get("name"): p.get("value") for p in run.testcase("test_echo").iter("property")}
    assert properties["drops"] == '{"unknown_cookie":3}' and properties["target"] == "a1"


def test_malformed_documented_property_is_a_harness_error(run_checks) -> None:
    run = run_checks(
        """
        import pytest

        @pytest.mark.requirement("ENC-ONE", "ENC-TWO", "ENC-SOFT")
        def test_echo(record_property):
            record_property("drops", '{"dst_port": -1}')
            record_property("expected_header", "08 0")
        """
    )

    assert run.results["errors"] == [
        "check test_checks.py::test_echo recorded property drops.dst_port: expected a count (integer ≥ 0), found -1",
        "check test_checks.py::test_echo recorded property expected_header: expected hex digits in pairs, found '08 0'",
    ]
    assert run.results["verdict"] == "ERROR"


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("flows_per_target", "[1, 2]", "flows_per_target: expected a JSON object of counts, found list"),
        ("flows_per_target", "{oops", "flows_per_target: expected JSON"),
        ("perf", [{"pps": 5}], r"perf\[0\]: missing \['size'\]"),
        ("perf", [{"size": 64, "speed": 1}], r"perf\[0\]: unknown keys \['speed'\]"),
        ("failover_timeline", {"t": [0, 1], "packets": {"a1": [1]}}, "failover_timeline.packets.a1: expected 2 counts"),
        ("rejects", [{"reason": 3}], r"rejects\[0\].reason: expected text"),
    ],
)
def test_property_shapes_are_checked(name: str, value: object, error: str) -> None:
    with pytest.raises(properties.PropertyError, match=error):
        properties.decode(name, value)


def test_every_documented_property_is_in_the_schema_and_the_plugin_docs() -> None:
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    assert set(schema["$defs"]["data"]["properties"]) == set(properties.DECODERS)
    for name in [*properties.DECODERS, "pcap", "details"]:
        assert f"`{name}`" in plugin_module.__doc__
    assert set(plots.registered()) <= set(properties.DECODERS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flows_per_target", {"a1": 3, "a2": 5}),
        ("failover_timeline", {"t": [0, 1], "packets": {"a1": [3, 0], "a2": [3, 6]},
                               "events": [{"t": 0.5, "target": "a1", "state": "unhealthy"}]}),
        ("perf", [{"size": 64, "pps": 1e6}, {"size": 1500, "pps": 5e5, "latency_p99_us": 80}]),
    ],
)
def test_plots_render_to_inline_svg(name: str, value: object) -> None:
    check = CheckResult("t.py::test_x", ("ENC-ONE",), Status.PASS, 0.1,
                        data=((name, properties.decode(name, value)),))

    (plot,) = plots.check_plots(check)

    assert plot.property == name and plot.svg.startswith("<svg") and plot.svg.endswith("</svg>")
    assert "xmlns" not in plot.svg.split(">", 1)[0] and "<metadata>" not in plot.svg


@pytest.mark.parametrize(
    ("name", "value"),
    [("flows_per_target", {}), ("flows_per_target", {"a1": 0}), ("failover_timeline", {"t": [], "packets": {}}),
     ("perf", [{"size": 64}])],
)
def test_plots_without_data_are_left_out(name: str, value: object) -> None:
    check = CheckResult("t.py::test_x", ("ENC-ONE",), Status.PASS, 0.1,
                        data=((name, properties.decode(name, value)),))

    assert plots.check_plots(check) == []


def test_bundle_holds_the_report_and_checksums(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=textwrap.dedent(ALL_PASS))
    descriptor = pytester.path / "vendor.yaml"
    descriptor.write_text("name: demo-appliance\nversion: '1.2'\n", encoding="utf-8")
    out = pytester.path / "report"
    plugin = ReportPlugin(CATALOG, INFO, out, descriptor=descriptor)
    pytester.runpytest("-p", "no:cacheprovider", plugins=[plugin])

    with tarfile.open(out / "bundle.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        files = {name.split("/", 1)[1]: tar.extractfile(m).read() for name, m in members.items() if m.isfile()}
    assert set(members) == {"gwlb-conformance-run-test"} | {f"gwlb-conformance-run-test/{n}" for n in files}
    assert sorted(files) == ["SHA256SUMS", "appliance.yaml", "environment.json", "index.html", "junit.xml", "results.json"]
    assert files["appliance.yaml"] == descriptor.read_bytes()
    assert files["results.json"] == (out / "results.json").read_bytes()
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode().splitlines())
    assert sums == {name: hashlib.sha256(data).hexdigest() for name, data in files.items() if name != "SHA256SUMS"}
    assert all(m.uid == 0 and m.uname == "root" for m in members.values())
    environment = json.loads(files["environment.json"])
    assert environment["harness_version"] == "0.1.0"
    assert environment["python_packages"]["pytest"] and environment["kernel"]
    assert plugin.result.artifacts.bundle == "bundle.tar.gz"


def test_bundle_is_reproducible(tmp_path: Path) -> None:
    for name in ("index.html", "results.json", "junit.xml", "environment.json"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    first = write_bundle(tmp_path, run_id="x", descriptor=None, mtime=1_700_000_000).read_bytes()
    second = write_bundle(tmp_path, run_id="x", descriptor=None, mtime=1_700_000_000).read_bytes()

    assert first == second


def test_bundle_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"cannot put the report file .*index.html into the bundle"):
        write_bundle(tmp_path, run_id="x", descriptor=None, mtime=0)


def test_certification_refuses_skips_but_not_unclaimed_features() -> None:
    def check(name: str, requirement: str, status: Status) -> CheckResult:
        return CheckResult(f"t.py::{name}", (requirement,), status, 0.1, "topology has no IPv6" if status is Status.SKIP else "")

    ran = [check("one", "ENC-ONE", Status.PASS), check("two", "ENC-TWO", Status.PASS), check("soft", "ENC-SOFT", Status.PASS)]
    unclaimed = build_result(CATALOG, INFO, [*ran, check("v6", "FLOW-V6", Status.NOT_CLAIMED)], certify=True)
    assert (unclaimed.verdict, unclaimed.errors) == (Verdict.CONFORMANT, ())
    skipped = build_result(CATALOG, INFO, [*ran, check("v6", "FLOW-V6", Status.SKIP)], certify=True)
    assert skipped.verdict is Verdict.ERROR
    assert skipped.errors == ("certification refuses skips: FLOW-V6 was skipped (topology has no IPv6)",)
    assert build_result(CATALOG, INFO, [*ran, check("v6", "FLOW-V6", Status.SKIP)]).verdict is Verdict.CONFORMANT


def test_perf_table_shows_each_figure_beside_its_ceiling_and_the_limit() -> None:
    records = [{"size": 64, "criterion": "no-drop", "pps": 16520.4, "ceiling_pps": 60760.0, "gbps": 0.0085,
                "ceiling_gbps": 0.0311, "limit": "appliance"}]
    check = CheckResult("t.py::test_throughput", ("ENC-ONE",), Status.PASS, 0.1,
                        data=(("perf", properties.decode("perf", records)),))

    html = render_html(build_result(CATALOG, INFO, [check]))

    table = html[html.index('<table class="perf">'):]
    table = table[:table.index("</table>")]
    assert "throughput no-drop (packets/s)" in table and "throughput no-drop (Gbit/s)" in table
    assert '<td class="num">16,520</td><td class="num">60,760</td><td>appliance</td>' in table
    assert '<td class="num">0.0085</td><td class="num">0.0311</td>' in table
