"""Documented check properties: names a check may `record_property(...)` for the report to use.

A check records plain values or JSON text; each name here has a decoder that turns what was
recorded into checked, JSON-ready data (`CheckResult.data`), so renderers and results.json get one
shape whatever the check passed. A value that does not fit raises `PropertyError` naming the
property and what was expected. Names not listed here stay free-form text
(`CheckResult.properties`). The plugin's docstring is the user-facing list; `results.schema.json`
describes each decoded shape under `$defs/data`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Decoder = Callable[[Any], Any]

_HEX_SEPARATORS = re.compile(r"[\s:]+")
_HEX = re.compile(r"^(?:[0-9a-f]{2})*$")


class PropertyError(ValueError):
    """A documented property was recorded with a value of the wrong shape."""


def _json(value: Any, name: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise PropertyError(f"{name}: expected JSON, found {value[:60]!r} ({error.msg})") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _hex_bytes(name: str) -> Decoder:
    def decode(value: Any) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).hex()
        if not isinstance(value, str):
            raise PropertyError(f"{name}: expected bytes or a hex string, found {type(value).__name__}")
        text = _HEX_SEPARATORS.sub("", value.lower()).removeprefix("0x")
        if not _HEX.match(text):
            raise PropertyError(f"{name}: expected hex digits in pairs, found {value[:60]!r}")
        return text

    return decode


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PropertyError(f"{where}: expected a finite number, found {value!r}")
    return value


def _counts(name: str) -> Decoder:
    def decode(value: Any) -> dict[str, int]:
        data = _json(value, name)
        if not isinstance(data, Mapping):
            raise PropertyError(f"{name}: expected a JSON object of counts, found {type(data).__name__}")
        counts = {}
        for key, count in data.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise PropertyError(f"{name}.{key}: expected a count (integer ≥ 0), found {count!r}")
            counts[str(key)] = count
        return counts

    return decode


def _records(name: str, fields: Mapping[str, type], required: tuple[str, ...]) -> Decoder:
    def decode(value: Any) -> list[dict[str, Any]]:
        data = _json(value, name)
        if not isinstance(data, list):
            raise PropertyError(f"{name}: expected a JSON list of objects, found {type(data).__name__}")
        records = []
        for index, item in enumerate(data):
            where = f"{name}[{index}]"
            if not isinstance(item, Mapping):
                raise PropertyError(f"{where}: expected an object, found {type(item).__name__}")
            unknown = sorted(set(item) - set(fields))
            if unknown:
                raise PropertyError(f"{where}: unknown keys {unknown}; expected some of {sorted(fields)}")
            missing = [key for key in required if key not in item]
            if missing:
                raise PropertyError(f"{where}: missing {missing}")
            record = {}
            for key, field_value in item.items():
                if fields[key] is float:
                    record[key] = _number(field_value, f"{where}.{key}")
                elif not isinstance(field_value, str):
                    raise PropertyError(f"{where}.{key}: expected text, found {field_value!r}")
                else:
                    record[key] = field_value
            records.append(record)
        return records

    return decode


_EVENT_FIELDS = {"t": float, "target": str, "state": str}


def _timeline(name: str) -> Decoder:
    def decode(value: Any) -> dict[str, Any]:
        data = _json(value, name)
        if not isinstance(data, Mapping) or not {"t", "packets"} <= set(data):
            raise PropertyError(f"{name}: expected an object with keys t, packets and optionally events")
        unknown = sorted(set(data) - {"t", "packets", "events"})
        if unknown:
            raise PropertyError(f"{name}: unknown keys {unknown}")
        times = [_number(t, f"{name}.t") for t in _list(data["t"], f"{name}.t")]
        packets = data["packets"]
        if not isinstance(packets, Mapping):
            raise PropertyError(f"{name}.packets: expected an object target → list of counts")
        series = {}
        for target, counts in packets.items():
            counts = [_number(c, f"{name}.packets.{target}") for c in _list(counts, f"{name}.packets.{target}")]
            if len(counts) != len(times):
                raise PropertyError(f"{name}.packets.{target}: expected {len(times)} counts (one per t), found {len(counts)}")
            series[str(target)] = counts
        events = _records(f"{name}.events", _EVENT_FIELDS, ("t", "target", "state"))(data.get("events", []))
        return {"t": times, "packets": series, "events": events}

    return decode


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PropertyError(f"{where}: expected a list, found {type(value).__name__}")
    return value


_PERF_FIELDS = {
    "size": float, "criterion": str, "pps": float, "gbps": float, "ceiling_pps": float, "ceiling_gbps": float,
    "resolution_pps": float, "latency_p50_us": float, "latency_p99_us": float, "ceiling_latency_p50_us": float,
    "ceiling_latency_p99_us": float, "added_latency_p50_us": float, "added_latency_p99_us": float, "lost": float,
    "new_flows_per_s": float, "ceiling_new_flows_per_s": float, "resolution_per_s": float,
    "concurrent_flows": float, "ceiling_concurrent_flows": float, "limit": str,
}
PERF_LIMITS = ("appliance", "harness")


def _perf(value: Any) -> list[dict[str, Any]]:
    records = _records("perf", _PERF_FIELDS, ("size",))(value)
    for index, record in enumerate(records):
        if record.get("limit", PERF_LIMITS[0]) not in PERF_LIMITS:
            raise PropertyError(f"perf[{index}].limit: expected one of {', '.join(PERF_LIMITS)}, found {record['limit']!r}")
    return records


_REJECT_FIELDS = {"reason": str, "source": str, "detail": str, "header": str}

DECODERS: dict[str, Decoder] = {
    "expected": _text,
    "observed": _text,
    "expected_header": _hex_bytes("expected_header"),
    "observed_header": _hex_bytes("observed_header"),
    "drops": _counts("drops"),
    "rejects": _records("rejects", _REJECT_FIELDS, ("reason",)),
    "flows_per_target": _counts("flows_per_target"),
    "failover_timeline": _timeline("failover_timeline"),
    "perf": _perf,
}
"""Documented property name → decoder; see the plugin's docstring for what each one means."""


def decode(name: str, value: Any) -> Any:
    """The decoded value of a documented property; KeyError for any other name."""
    return DECODERS[name](value)


def encode_text(value: Any) -> str:
    """A decoded value as the text junit.xml carries."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
