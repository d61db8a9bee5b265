"""Subcommands of `gwlb-conformance`, one module each.

A module here defines `NAME`, `HELP`, `configure(parser)` and `execute(args) -> int`; the CLI
discovers them, so adding a command means adding a module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    execute: Callable[[argparse.Namespace], int]


def _command(module: ModuleType) -> Command:
    return Command(module.NAME, module.HELP, module.configure, module.execute)


def discover() -> list[Command]:
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted((_command(m) for m in modules), key=lambda c: c.name)
