"""Run reporting, split like pytest-html: a result model, a pytest plugin, one renderer per format.

`model` holds pytest-free result types and the verdict rules; `plugin` turns pytest reports into
them; `render_json`, `render_junit` and `render_html` write results.json, junit.xml and index.html.
`properties` decodes the documented values checks record, `plots` draws them (the registry to
extend), `pcaps` cuts each failing check's packets out of the run's capture.
"""

from harness.report.model import (
    Artifacts,
    CheckResult,
    RequirementResult,
    RunInfo,
    RunResult,
    Status,
    Verdict,
    build_result,
)
from harness.report.plugin import ReportPlugin

__all__ = [
    "Artifacts",
    "CheckResult",
    "ReportPlugin",
    "RequirementResult",
    "RunInfo",
    "RunResult",
    "Status",
    "Verdict",
    "build_result",
]
