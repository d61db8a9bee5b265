"""The published requirement matrix matches the catalog, and every requirement can fail."""

from __future__ import annotations

from pathlib import Path

from harness.catalog import Level, default_catalog_path, load_catalog
from harness.catalog_doc import checks_by_requirement, faults_by_requirement, render_markdown

REPO = Path(__file__).resolve().parents[1]


def test_docs_requirements_md_is_generated_from_the_catalog() -> None:
    expected = render_markdown(load_catalog(default_catalog_path()))
    assert (REPO / "docs" / "requirements.md").read_text() == expected, (
        "docs/requirements.md is stale: run `.venv/bin/gwlb-conformance requirements --markdown > docs/requirements.md`"
    )


def test_every_requirement_has_a_check_and_every_must_or_should_a_faulty_appliance() -> None:
    checks, faults = checks_by_requirement(), faults_by_requirement()
    for requirement in load_catalog(default_catalog_path()):
        assert checks.get(requirement.id), f"{requirement.id} has no conformance check"
        if requirement.level is not Level.INFO:
            assert faults.get(requirement.id), f"{requirement.id} has no faulty appliance proving it can fail"


def test_every_marker_names_a_catalog_requirement() -> None:
    catalog = load_catalog(default_catalog_path())
    assert set(checks_by_requirement()) <= set(catalog.ids)
