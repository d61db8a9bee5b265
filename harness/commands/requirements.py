"""`requirements`: list the requirement catalog, or print docs/requirements.md."""

from __future__ import annotations

import argparse

from harness.catalog import default_catalog_path, load_catalog
from harness.catalog_doc import render_markdown

NAME = "requirements"
HELP = "list the requirement catalog"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print docs/requirements.md")


def execute(args: argparse.Namespace) -> int:
    catalog = load_catalog(default_catalog_path())
    if args.markdown:
        print(render_markdown(catalog), end="")
        return 0
    for requirement in catalog:
        print(f"{requirement.id:22} {requirement.level.value:6} {requirement.title}")
    return 0
