"""The requirement catalog: `conformance/requirements.yaml` loaded into frozen, validated data.

The YAML file is the single source of truth for requirement IDs, levels and wording; tests only
name IDs (`@pytest.mark.requirement("ENC-HDR-ECHO")`) and the report looks everything else up
here. Loading has no side effects and rejects anything it does not understand with a ConfigError
naming the file, the key path and what was expected.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from harness.descriptor import KNOWN_CLAIMS
from harness.errors import ConfigError


class Level(enum.Enum):
    """A requirement's weight in the verdict: only MUST failures make a run NOT_CONFORMANT."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"


class Family(enum.Enum):
    """Requirement families (SPEC §6), in report order; every ID starts with its family."""

    ENC = "ENC"
    FLOW = "FLOW"
    MTU = "MTU"
    HC = "HC"
    REB = "REB"
    ROB = "ROB"
    PERF = "PERF"

    @property
    def description(self) -> str:
        return _FAMILY_DESCRIPTIONS[self]


_FAMILY_DESCRIPTIONS = {
    Family.ENC: "Encapsulation",
    Family.FLOW: "Flows",
    Family.MTU: "MTU",
    Family.HC: "Health checks",
    Family.REB: "Rebalancing",
    Family.ROB: "Robustness",
    Family.PERF: "Performance",
}

_ID_PATTERN = re.compile(r"^[A-Z]+(-[A-Z0-9]+)+$")
_REQUIRED_KEYS = ("id", "family", "level", "title", "statement", "source")
_OPTIONAL_KEYS = ("needs",)
_TITLE_MAX = 80

_E = TypeVar("_E", bound=enum.Enum)


@dataclass(frozen=True)
class Requirement:
    id: str
    family: Family
    level: Level
    title: str
    statement: str
    source: str
    needs: str | None = None


class Catalog:
    """Requirements in file order, looked up by ID."""

    def __init__(self, requirements: Iterable[Requirement], path: Path | None = None) -> None:
        self._requirements = tuple(requirements)
        self._by_id = {r.id: r for r in self._requirements}
        if len(self._by_id) != len(self._requirements):
            raise ValueError("requirement IDs must be unique")
        self.path = path

    def get(self, requirement_id: str) -> Requirement:
        try:
            return self._by_id[requirement_id]
        except KeyError:
            where = f" in {self.path}" if self.path else ""
            raise KeyError(f"unknown requirement ID {requirement_id!r}{where}") from None

    def __contains__(self, requirement_id: object) -> bool:
        return requirement_id in self._by_id

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self._requirements)

    def __len__(self) -> int:
        return len(self._requirements)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def by_family(self) -> dict[Family, tuple[Requirement, ...]]:
        """Non-empty families in `Family` order, each with its requirements in file order."""
        groups = {
            family: tuple(r for r in self._requirements if r.family is family) for family in Family
        }
        return {family: reqs for family, reqs in groups.items() if reqs}


def default_catalog_path() -> Path:
    return Path(__file__).resolve().parents[1] / "conformance" / "requirements.yaml"


def load_catalog(path: Path) -> Catalog:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"a readable requirement catalog ({exc.strerror})") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"valid YAML ({_one_line(exc)})") from exc
    if not isinstance(document, dict):
        raise ConfigError(path, "", "a mapping with the key 'requirements'")
    unknown = sorted(str(k) for k in document if k != "requirements")
    if unknown:
        raise ConfigError(path, unknown[0], "no such key (allowed: requirements)")
    entries = document.get("requirements")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(path, "requirements", "a non-empty list of requirements")

    requirements: list[Requirement] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        requirement = _parse_entry(path, f"requirements[{index}]", entry)
        if requirement.id in first_seen:
            raise ConfigError(
                path,
                f"requirements[{index}].id",
                f"a unique ID ({requirement.id!r} is already used by "
                f"requirements[{first_seen[requirement.id]}])",
            )
        first_seen[requirement.id] = index
        requirements.append(requirement)
    return Catalog(requirements, path)


def _parse_entry(path: Path, where: str, entry: Any) -> Requirement:
    if not isinstance(entry, dict):
        raise ConfigError(path, where, "a mapping with keys " + ", ".join(_REQUIRED_KEYS))
    allowed = _REQUIRED_KEYS + _OPTIONAL_KEYS
    for key in entry:
        if key not in allowed:
            expected = "no such key (allowed: " + ", ".join(allowed) + ")"
            raise ConfigError(path, f"{where}.{key}", expected)
    for key in _REQUIRED_KEYS:
        if key not in entry:
            raise ConfigError(path, f"{where}.{key}", "a value (the key is required)")
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ConfigError(path, f"{where}.{key}", "a non-empty string")

    requirement_id = entry["id"]
    if not _ID_PATTERN.match(requirement_id):
        raise ConfigError(
            path, f"{where}.id", f"an upper-case ID such as ENC-HDR-ECHO, not {requirement_id!r}"
        )
    family = _enum_value(path, f"{where}.family", Family, entry["family"])
    if not requirement_id.startswith(family.value + "-"):
        expected = f"an ID starting with its family {family.value}-, not {requirement_id!r}"
        raise ConfigError(path, f"{where}.id", expected)
    level = _enum_value(path, f"{where}.level", Level, entry["level"])
    title = entry["title"].strip()
    if "\n" in title or len(title) > _TITLE_MAX:
        expected = f"a single line of at most {_TITLE_MAX} characters"
        raise ConfigError(path, f"{where}.title", expected)

    needs = entry.get("needs")
    if needs is not None and (not isinstance(needs, str) or needs not in KNOWN_CLAIMS):
        expected = "one of " + ", ".join(sorted(KNOWN_CLAIMS)) + f", not {needs!r}"
        raise ConfigError(path, f"{where}.needs", expected)
    return Requirement(
        id=requirement_id,
        family=family,
        level=level,
        title=title,
        statement=" ".join(entry["statement"].split()),
        source=" ".join(entry["source"].split()),
        needs=needs,
    )


def _enum_value(path: Path, key: str, kind: type[_E], value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ConfigError(path, key, f"one of {choices}, not {value!r}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
