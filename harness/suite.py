"""Runs the conformance suite (conformance/) with pytest against a testbed built beforehand.

The testbed is built outside pytest so that Ctrl-C, a crash in a check or a failed build still
reach the `finally` that removes it; pytest gets it through the `testbed` fixture below. If the
testbed could not be built, every check errors with the reason and the report still gets written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.perf import default_thresholds_path
from harness.testbed import Testbed

SUITE_DIR = Path(__file__).resolve().parents[1] / "conformance"


_PROVIDER = pytest.StashKey["TestbedProvider"]()


class TestbedProvider:
    """A pytest plugin object handing the run's testbed (or the reason there is none) to the
    `testbed` fixture below."""

    def __init__(
        self,
        testbed: Testbed | None,
        failure: str | None = None,
        requirements: frozenset[str] = frozenset(),
        needs: dict[str, str] | None = None,
        claims: frozenset[str] = frozenset(),
        perf_thresholds: Path | None = None,
    ) -> None:
        self.testbed = testbed
        self.perf_thresholds = perf_thresholds
        self.failure = failure
        self.requirements = requirements
        self.needs = needs or {}
        self.claims = claims

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """A check of an optional feature the appliance does not claim reports `not claimed`,
        before any of its fixtures runs."""
        unclaimed = self.unclaimed(item)
        if unclaimed:
            pytest.skip(f"not claimed: {', '.join(unclaimed)}")

    def unclaimed(self, item: pytest.Item) -> list[str]:
        """Optional features a check's requirements need that the appliance does not claim."""
        ids = {arg for marker in item.iter_markers("requirement") for arg in marker.args}
        return sorted({self.needs[r] for r in ids if r in self.needs} - self.claims)

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[_PROVIDER] = self

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """With `--requirement`, keep only the checks of those requirements."""
        if not self.requirements:
            return
        keep, drop = [], []
        for item in items:
            ids = {arg for marker in item.iter_markers("requirement") for arg in marker.args}
            (keep if ids & self.requirements else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


@pytest.fixture(scope="session")
def testbed(request: pytest.FixtureRequest) -> Testbed:
    provider = request.config.stash[_PROVIDER]
    if provider.testbed is None:
        raise HarnessError(provider.failure or "no testbed")
    return provider.testbed


@pytest.fixture(scope="session")
def perf_thresholds(request: pytest.FixtureRequest) -> Path:
    """The PERF thresholds file: `run --perf-thresholds`, else conformance/perf-thresholds.yaml."""
    return request.config.stash[_PROVIDER].perf_thresholds or default_thresholds_path()


def suite_arguments(keyword: str | None, quiet: bool) -> list[str]:
    args = [str(SUITE_DIR), "-p", "no:cacheprovider", "-o", "console_output_style=classic", "-rN"]
    args.append("-q" if quiet else "-v")
    if keyword:
        args += ["-k", keyword]
    return args
