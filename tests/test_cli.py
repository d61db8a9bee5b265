"""harness.cli: exit codes for what goes wrong outside the checks (no root, no testbed)."""

from __future__ import annotations

import pytest

from harness.cli import EXIT_ERROR, main
from harness.commands import requirements
from harness.errors import HarnessError


def test_a_harness_error_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(args: object) -> int:
        raise HarnessError("the catalog is unreadable")

    monkeypatch.setattr(requirements, "execute", refuse)
    assert main(["requirements"]) == EXIT_ERROR
    assert capsys.readouterr().err == "gwlb-conformance: error: the catalog is unreadable\n"


def test_a_bug_is_exit_2_not_1_which_means_a_must_failed(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def crash(args: object) -> int:
        raise KeyError("oops")

    monkeypatch.setattr(requirements, "execute", crash)
    assert main(["requirements"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'oops'" in err
    assert err.rstrip().endswith("gwlb-conformance: internal error (a bug in the harness, please report it with the "
                                 "traceback above): KeyError('oops')")
