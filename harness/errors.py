"""Errors the harness reports to users without a traceback.

Each carries enough to act on: a config error names the file, the key path and what was expected;
a harness error says which part of the testbed failed. The CLI turns both into exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """The testbed could not be built or run (not a verdict on the appliance)."""


class ConfigError(HarnessError):
    """A YAML file does not describe a valid topology, appliance or catalog."""

    def __init__(self, path: Path | str, key: str, expected: str) -> None:
        self.path = Path(path)
        self.key = key
        self.expected = expected
        where = f"{self.path}: {key}" if key else str(self.path)
        super().__init__(f"{where}: {expected}")
