"""`diff OLD NEW`: requirement-level regressions and improvements between two runs (harness/diff.py).

Exit codes: 0 no regression, 1 a regression, 2 an input that cannot be read (via the CLI).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import diff

NAME = "diff"
HELP = "compare two runs' results.json; exit 1 on any regression"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, help="results.json of the earlier run, or its run folder")
    parser.add_argument("new", type=Path, help="results.json of the later run, or its run folder")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (e.g. for a CI job summary)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail when a passing requirement is no longer verified (skipped, not claimed, gone)")


def execute(args: argparse.Namespace) -> int:
    result = diff.compare(diff.load(args.old), diff.load(args.new))
    render = diff.format_markdown if args.markdown else diff.format_text
    print(render(result, args.strict), end="")
    return 1 if result.regressed(args.strict) else 0
