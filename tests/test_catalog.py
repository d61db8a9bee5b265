"""The requirement catalog loader: the shipped catalog loads, and every kind of mistake in a
catalog file is a ConfigError naming the file, the key path and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.catalog import Catalog, Family, Level, default_catalog_path, load_catalog
from harness.descriptor import KNOWN_CLAIMS
from harness.errors import ConfigError

VALID = """
requirements:
  - id: ENC-HDR-ECHO
    family: ENC
    level: MUST
    title: Header echoed
    statement: >
      The header is echoed
      byte-for-byte.
    source: RFC 8926
  - id: FLOW-V6
    family: FLOW
    level: SHOULD
    title: IPv6 flows
    statement: IPv6 flows work.
    source: AWS docs
    needs: ipv6
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def entry(**overrides: object) -> str:
    fields = {
        "id": "ENC-A",
        "family": "ENC",
        "level": "MUST",
        "title": "A",
        "statement": "A holds.",
        "source": "test",
    } | overrides
    lines = [f"    {key}: {value}" for key, value in fields.items() if value is not None]
    return "\n".join(["  - " + lines[0].strip(), *lines[1:]])


def test_valid_catalog_loads(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))

    assert catalog.ids == ("ENC-HDR-ECHO", "FLOW-V6")
    assert len(catalog) == 2 and "FLOW-V6" in catalog and "ENC-NOPE" not in catalog
    echo = catalog.get("ENC-HDR-ECHO")
    assert (echo.family, echo.level, echo.needs) == (Family.ENC, Level.MUST, None)
    assert echo.statement == "The header is echoed byte-for-byte."
    assert catalog.get("FLOW-V6").needs == "ipv6"
    assert [r.id for r in catalog] == ["ENC-HDR-ECHO", "FLOW-V6"]
    assert {family: [r.id for r in reqs] for family, reqs in catalog.by_family().items()} == {
        Family.ENC: ["ENC-HDR-ECHO"],
        Family.FLOW: ["FLOW-V6"],
    }


def test_get_unknown_id_names_it_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    catalog = load_catalog(path)

    with pytest.raises(KeyError, match=f"unknown requirement ID 'ENC-NOPE' in {path}"):
        catalog.get("ENC-NOPE")


def test_shipped_catalog_loads() -> None:
    catalog = load_catalog(default_catalog_path())

    repo = Path(__file__).resolve().parents[1]
    assert default_catalog_path() == repo / "conformance" / "requirements.yaml"
    assert len(catalog.ids) == len(set(catalog.ids)) >= 10
    assert {"ENC-HDR-ECHO", "ENC-DST-PORT", "FLOW-TCP-SYMMETRIC", "MTU-JUMBO-8500"} <= set(catalog.ids)
    assert catalog.get("ENC-SRC-PORT").level is Level.SHOULD
    assert catalog.get("MTU-JUMBO-8500").level is Level.MUST
    assert {r.needs for r in catalog} <= {None, *KNOWN_CLAIMS}
    assert all(r.id.startswith(f"{r.family.value}-") for r in catalog)


def test_catalog_constructor_rejects_duplicates() -> None:
    requirement = next(iter(load_catalog(default_catalog_path())))

    with pytest.raises(ValueError, match="unique"):
        Catalog([requirement, requirement])


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("requirements: [\n", "", "valid YAML"),
        ("- just a list\n", "", "a mapping with the key 'requirements'"),
        ("requirements: []\n", "requirements", "a non-empty list of requirements"),
        ("requirements: []\nversion: 1\n", "version", "no such key (allowed: requirements)"),
        ("requirements:\n  - ENC-A\n", "requirements[0]", "a mapping with keys id, family"),
        (
            f"requirements:\n{entry()}\n{entry(id='ENC-B')}\n{entry(id='ENC-A')}\n",
            "requirements[2].id",
            "a unique ID ('ENC-A' is already used by requirements[0])",
        ),
        (
            f"requirements:\n{entry(colour='red')}\n",
            "requirements[0].colour",
            "no such key (allowed: id, family, level, title, statement, source, needs)",
        ),
        (
            f"requirements:\n{entry(source=None)}\n",
            "requirements[0].source",
            "a value (the key is required)",
        ),
        (f"requirements:\n{entry(title=3)}\n", "requirements[0].title", "a non-empty string"),
        (
            f"requirements:\n{entry(id='enc-a')}\n",
            "requirements[0].id",
            "an upper-case ID such as ENC-HDR-ECHO, not 'enc-a'",
        ),
        (
            f"requirements:\n{entry(family='NET')}\n",
            "requirements[0].family",
            "one of ENC, FLOW, MTU, HC, REB, ROB, PERF, not 'NET'",
        ),
        (
            f"requirements:\n{entry(family='FLOW')}\n",
            "requirements[0].id",
            "an ID starting with its family FLOW-, not 'ENC-A'",
        ),
        (
            f"requirements:\n{entry(level='MAY')}\n",
            "requirements[0].level",
            "one of MUST, SHOULD, INFO, not 'MAY'",
        ),
        (
            f"requirements:\n{entry(title='x' * 81)}\n",
            "requirements[0].title",
            "a single line of at most 80 characters",
        ),
        (
            f"requirements:\n{entry(needs='jumbo-frames')}\n",
            "requirements[0].needs",
            "one of ipv6, jumbo, mid-stream-tcp, multi-endpoint, two-arm, not 'jumbo-frames'",
        ),
    ],
)
def test_invalid_catalog_raises_config_error(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as raised:
        load_catalog(path)

    assert raised.value.path == path
    assert raised.value.key == key
    assert raised.value.expected.startswith(expected)
    assert str(raised.value).startswith(f"{path}: {key + ': ' if key else ''}{expected}")


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match="a readable requirement catalog") as raised:
        load_catalog(path)

    assert raised.value.path == path
