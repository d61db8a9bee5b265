"""Shared loading of the harness's YAML files: parse, validate against a JSON Schema, explain.

The schemas in `schemas/` are the one description of each file's shape (editors use them through
the `# yaml-language-server: $schema=...` header). This module turns YAML and schema failures into
a one-line `ConfigError` naming the file, the key path (`endpoints[0].eni_id`) and what was
expected. Checks a schema cannot express live next to the dataclasses they build (`topology.py`,
`descriptor.py`) and use the same wording: "<value> is not valid; expected <what>".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.errors import ConfigError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: list[Any] = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
            seen.append(key)
        return super().construct_mapping(node, deep)


def key_path(parts: Iterable[str | int]) -> str:
    """`["endpoints", 0, "eni_id"]` -> `endpoints[0].eni_id`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show(value: Any) -> str:
    """A value as the user would write it in YAML."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, default=str)


def _got(value: Any) -> str:
    if value is None:
        return "nothing"
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (list, "a list"), (dict, "a mapping"))
    words = next((words for cls, words in kinds if isinstance(value, cls)), "a value")
    return f"{words} {show(value)}"


@functools.cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / schema_name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load_yaml(path: Path) -> Any:
    """Parse one YAML document, rejecting duplicate keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read file: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(path, "", f"{kind}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"YAML error: {exc}") from None


def load_validated(path: Path, schema_name: str) -> dict[str, Any]:
    """Load `path` and validate it against `schemas/<schema_name>`; return the plain data."""
    try:
        data = load_yaml(path)
        if data is None:
            raise ConfigError(path, "", "the file is empty; expected a mapping of settings")
        error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(data))
    except RecursionError:
        raise ConfigError(path, "", "nested too deeply; expected a few levels of keys") from None
    if error is not None:
        key, expected = _explain(error)
        raise ConfigError(path, key, expected)
    return data


def _types(schema: dict[str, Any]) -> list[str]:
    types = schema.get("type", [])
    return types if isinstance(types, list) else [types]


def _range(schema: dict[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    kind = "an integer" if "integer" in _types(schema) else "a number"
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if "exclusiveMinimum" in schema:
        return f"{kind} greater than {schema['exclusiveMinimum']}"
    return f"{kind} of at least {low}" if low is not None else f"{kind} of at most {high}"


def _explain(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Turn one schema violation into (key path, what was expected) in plain words."""
    path: list[str | int] = list(error.absolute_path)
    schema, value, rule = error.schema, error.instance, error.validator
    if "propertyNames" in error.absolute_schema_path:
        what = schema.get("description", "a valid name")
        return key_path([*path, str(value)]), f"{show(value)} is not a valid key; expected {what}"
    if rule == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        unknown = next(k for k in value if k not in allowed)
        expected = f"allowed keys: {', '.join(allowed)}"
        return key_path([*path, str(unknown)]), f"unknown key {show(unknown)}; {expected}"
    if rule == "required":
        missing = next(k for k in schema["required"] if k not in value)
        return key_path([*path, missing]), "required key is missing"
    where = key_path(path)
    if rule == "type":
        types = _types(schema)
        expected = " or ".join(_TYPE_WORDS[t] for t in types)
        if "string" in types and value is not None and not isinstance(value, (dict, list)):
            expected += " (put it in quotes)"
        return where, f"expected {expected}, got {_got(value)}"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return where, f"{show(value)} is not a valid value; expected {_range(schema)}"
    if rule in ("enum", "const"):
        options = ", ".join(map(str, schema.get("enum", [schema.get("const")])))
        return where, f"{show(value)} is not a valid value; expected one of: {options}"
    if rule == "pattern":
        what = schema.get("description", f"text matching {schema['pattern']}")
        return where, f"{show(value)} is not valid; expected {what}"
    if rule in ("minItems", "maxItems"):
        bound = "at least" if rule == "minItems" else "at most"
        return where, f"expected {bound} {schema[rule]} item(s), got {len(value)}"
    if rule == "uniqueItems":
        duplicate = next(v for i, v in enumerate(value) if v in value[:i])
        return where, f"{show(duplicate)} is listed more than once; expected unique items"
    if rule in ("minLength", "maxLength"):
        bound = "at least" if rule == "minLength" else "at most"
        return where, f"expected {bound} {schema[rule]} character(s), got {show(value)}"
    return where, error.message
