"""junit.xml for CI: one testcase per check, plus one erroring testcase per harness error.

Each testcase is named `<requirement IDs> <test name>` and carries what the check recorded
(its capture, free-form and documented properties) as testcase properties.

Written from the result model rather than by pytest's --junitxml so that testcase names carry
requirement IDs, not-claimed checks read as skipped, and harness errors fail the CI job too.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.report.model import CheckResult, RunResult, Status
from harness.report.properties import encode_text

SUITE_NAME = "gwlb-conformance"
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def to_junit_tree(result: RunResult) -> ET.ElementTree:
    checks = result.checks
    failures = sum(check.status is Status.FAIL for check in checks)
    errors = sum(check.status is Status.ERROR for check in checks) + len(result.errors)
    skipped = sum(check.status in (Status.SKIP, Status.NOT_CLAIMED) for check in checks)
    tests = len(checks) + len(result.errors)
    totals = {
        "tests": str(tests),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": f"{sum(check.duration_s for check in checks):.3f}",
    }
    root = ET.Element("testsuites", name=SUITE_NAME, **totals)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=SUITE_NAME,
        timestamp=result.info.started_at.isoformat(),
        hostname=socket.gethostname(),
        **totals,
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _suite_properties(result):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    for check in checks:
        suite.append(_testcase(check))
    for index, error in enumerate(result.errors, start=1):
        case = ET.SubElement(suite, "testcase", classname="harness", name=f"harness error {index}")
        case.set("time", "0")
        element = ET.SubElement(case, "error", message=_clean(error), type="HarnessError")
        element.text = _clean(error)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(result: RunResult, path: Path) -> None:
    to_junit_tree(result).write(Path(path), encoding="utf-8", xml_declaration=True)


def _suite_properties(result: RunResult) -> list[tuple[str, str]]:
    info = result.info
    return [
        ("verdict", result.verdict.value),
        ("profile", info.profile),
        ("timers", info.timers),
        ("appliance", f"{info.appliance_name} {info.appliance_version}"),
        ("appliance_launch", info.appliance_launch),
        ("topology", info.topology),
        ("run_id", info.run_id),
        ("harness_version", info.harness_version),
        ("kernel", info.kernel),
    ]


def _testcase(check: CheckResult) -> ET.Element:
    path, _, name = check.nodeid.partition("::")
    classname = path.removesuffix(".py").replace("/", ".")
    if "::" in name:
        outer, _, name = name.rpartition("::")
        classname = f"{classname}.{outer.replace('::', '.')}"
    label = " ".join(check.requirement_ids) or "NO-REQUIREMENT"
    case = ET.Element("testcase", classname=classname, name=f"{label} {name or path}")
    case.set("time", f"{check.duration_s:.3f}")
    recorded = [("pcap", check.pcap)] if check.pcap else []
    recorded += list(check.properties)
    recorded += [(name, encode_text(value)) for name, value in check.data]
    if recorded:
        properties = ET.SubElement(case, "properties")
        for name, value in recorded:
            ET.SubElement(properties, "property", name=name, value=_clean(value))
    text = _clean(check.details or check.message)
    message = _clean(check.message)
    if check.status is Status.FAIL:
        ET.SubElement(case, "failure", message=message, type="NOT_CONFORMANT").text = text
    elif check.status is Status.ERROR:
        ET.SubElement(case, "error", message=message, type="ERROR").text = text
    elif check.status in (Status.SKIP, Status.NOT_CLAIMED):
        ET.SubElement(case, "skipped", message=message, type=check.status.value)
    return case


def _clean(text: str) -> str:
    """Replace characters XML 1.0 cannot carry (e.g. NUL in a raw dump)."""
    return _XML_ILLEGAL.sub("\N{REPLACEMENT CHARACTER}", text)
