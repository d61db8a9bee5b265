"""harness.descriptor: real descriptors load; every bad one is a one-line ConfigError.

Bad descriptors are made by editing a copy of a full valid one, so each case shows the one thing
that is wrong, and the assertion is on the full message a user would read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.descriptor import (
    KNOWN_CLAIMS, PLACEHOLDERS, HealthCheck, HealthProtocol, LaunchKind, load_descriptor,
)
from harness.errors import ConfigError
from harness.yamlconfig import SCHEMA_DIR

GWLBTUN = Path(__file__).parent / "data" / "gwlbtun-appliance.yaml"
FULL = {
    "name": "reference",
    "version": "0.1.0",
    "launch": {
        "kind": "process",
        "command": "python3 {appliance_dir}/refappliance --ip {appliance_ip} --id '{{\"n\": {index}}}'",
        "env": {"LOG_LEVEL": "info", "WORKERS": 4, "TARGET": "a{index}"},
        "ready": {"tcp_port": 8080, "timeout_s": 20},
    },
    "health_check": {
        "protocol": "HTTP", "port": 8080, "path": "/health", "matcher": "200-399",
        "interval_s": 10, "timeout_s": 5, "healthy_threshold": 5, "unhealthy_threshold": 2,
    },
    "interface": {"mtu": 9001},
    "sysctls": {"net.ipv4.ip_forward": 1},
    "claims": ["ipv6", "jumbo"],
}


def write(tmp_path: Path, edit: Callable[[dict[str, Any]], object] = lambda data: None) -> Path:
    data = copy.deepcopy(FULL)
    edit(data)
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_gwlbtun_descriptor_loads() -> None:
    descriptor = load_descriptor(GWLBTUN)
    assert descriptor.name == "gwlbtun" and descriptor.version == "3.0"
    assert descriptor.launch.kind is LaunchKind.PROCESS
    assert descriptor.launch.command == (
        "/opt/gwlbtun/gwlbtun -c /opt/gwlbtun/create-route.sh -p 8080")
    assert (descriptor.launch.image, descriptor.launch.env) == (None, ())
    assert (descriptor.launch.ready_tcp_port, descriptor.launch.ready_timeout_s) == (8080, 20)
    assert descriptor.health_check == HealthCheck(
        protocol=HealthProtocol.HTTP, port=8080, path="/", matcher=(200, 200))
    assert descriptor.mtu == 9001
    assert dict(descriptor.sysctls) == {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"}
    assert descriptor.claims == {"ipv6", "jumbo"}
    assert descriptor.path == GWLBTUN.resolve() and descriptor.directory == GWLBTUN.resolve().parent


def test_full_descriptor_loads_with_exact_values(tmp_path: Path) -> None:
    descriptor = load_descriptor(write(tmp_path))
    assert descriptor.launch.env == (
        ("LOG_LEVEL", "info"), ("WORKERS", "4"), ("TARGET", "a{index}"))
    assert descriptor.health_check == HealthCheck(
        HealthProtocol.HTTP, 8080, "/health", (200, 399), 10, 5, 5, 2)


def test_minimal_descriptor_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text("name: x\nversion: '1'\nlaunch: {kind: docker, image: 'vendor/x:1.0'}\n")
    descriptor = load_descriptor(path)
    assert descriptor.launch.kind is LaunchKind.DOCKER and descriptor.launch.image == "vendor/x:1.0"
    launch = descriptor.launch
    assert (launch.command, launch.ready_tcp_port, launch.ready_timeout_s) == (None, None, 30)
    assert descriptor.health_check == HealthCheck()
    assert (descriptor.mtu, descriptor.sysctls, descriptor.claims) == (9001, (), frozenset())


IMAGES = Path(__file__).resolve().parents[1] / "appliance-images"
SHIPPED = sorted(IMAGES.glob("**/appliance*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(IMAGES)) for p in SHIPPED])
def test_shipped_descriptors_load_and_name_the_schema(path: Path) -> None:
    depth = len(path.relative_to(IMAGES.parent).parts) - 1
    header = f"# yaml-language-server: $schema={'../' * depth}harness/schemas/appliance.schema.json\n"
    assert path.read_text().startswith(header)
    load_descriptor(path)


def test_reference_docker_descriptor_matches_the_process_one() -> None:
    process = load_descriptor(IMAGES / "reference" / "appliance.yaml")
    docker = load_descriptor(IMAGES / "reference" / "appliance-docker.yaml")
    assert docker.launch.kind is LaunchKind.DOCKER and docker.launch.command is None
    assert docker.launch.image == f"gwlb-conformance/reference:{process.version}"
    assert (docker.name, docker.version, docker.health_check) == (process.name, process.version, process.health_check)
    assert dict(docker.sysctls)["net.ipv4.ip_forward"] == "1"


def test_schema_lists_the_known_claims() -> None:
    schema = json.loads((SCHEMA_DIR / "appliance.schema.json").read_text())
    assert set(schema["properties"]["claims"]["items"]["enum"]) == KNOWN_CLAIMS


def set_in(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return edit


def delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return edit


ALLOWED = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
LITERAL = "(write other braces doubled: {{ and }})"
CASES = {
    "missing name": (delete("name"), "name: required key is missing"),
    "unquoted version": (
        set_in("version", value=1.0),
        "version: expected a string (put it in quotes), got a number 1.0"),
    "unknown key": (
        set_in("launch", "cmd", value="x"),
        "launch.cmd: unknown key 'cmd'; allowed keys: kind, command, image, env, ready"),
    "unknown kind": (
        set_in("launch", "kind", value="vm"),
        "launch.kind: 'vm' is not a valid value; expected one of: process, docker"),
    "process without command": (
        delete("launch", "command"),
        "launch.command: required key is missing; expected it with kind process"),
    "docker without image": (
        set_in("launch", "kind", value="docker"),
        "launch.image: required key is missing; expected it with kind docker"),
    "process with image": (
        set_in("launch", "image", value="vendor/x:1.0"),
        "launch.image: only used with kind docker; expected no image with kind process"),
    "unknown placeholder": (
        set_in("launch", "command", value="run --ip {target_ip}"),
        f"launch.command: unknown placeholder {{target_ip}}; expected one of: {ALLOWED} {LITERAL}"),
    "unknown placeholder in env": (
        set_in("launch", "env", "PEER", value="{gwlb}"),
        f"launch.env.PEER: unknown placeholder {{gwlb}}; expected one of: {ALLOWED} {LITERAL}"),
    "shell variable": (
        set_in("launch", "command", value="sh -c 'echo ${HOME}'"),
        f"launch.command: unknown placeholder {{HOME}}; expected one of: {ALLOWED} {LITERAL}"),
    "stray brace": (
        set_in("launch", "command", value="run }"),
        "launch.command: 'run }' is not a valid template (Single '}' encountered in format string); "
        f"expected one of: {ALLOWED} {LITERAL}"),
    "positional placeholder": (
        set_in("launch", "command", value="run {0}"),
        "launch.command: 'run {0}' is not a valid template "
        f"(Replacement index 0 out of range for positional args tuple); expected one of: {ALLOWED} {LITERAL}"),
    "env value not scalar": (
        set_in("launch", "env", "DEBUG", value=True),
        "launch.env.DEBUG: expected a string or a number (put it in quotes), got a boolean true"),
    "env name": (
        set_in("launch", "env", "LOG-LEVEL", value="x"),
        "launch.env.LOG-LEVEL: 'LOG-LEVEL' is not a valid key; "
        "expected an environment variable name of letters, digits and '_'"),
    "ready timeout": (
        set_in("launch", "ready", "timeout_s", value=0),
        "launch.ready.timeout_s: 0 is not a valid value; expected a number from 1 to 600"),
    "health protocol": (
        set_in("health_check", "protocol", value="GRPC"),
        "health_check.protocol: 'GRPC' is not a valid value; expected one of: TCP, HTTP, HTTPS"),
    "health port": (
        set_in("health_check", "port", value=0),
        "health_check.port: 0 is not a valid value; expected an integer from 1 to 65535"),
    "health path": (
        set_in("health_check", "path", value="health"),
        "health_check.path: 'health' is not valid; expected a path starting with '/'"),
    "matcher shape": (
        set_in("health_check", "matcher", value="2xx"),
        "health_check.matcher: '2xx' is not valid; expected HTTP codes like \"200\" or \"200-399\""),
    "matcher list": (
        set_in("health_check", "matcher", value="200,202"),
        "health_check.matcher: '200,202': lists of codes are not supported yet; "
        "expected one code like \"200\" or a range like \"200-399\""),
    "matcher out of range": (
        set_in("health_check", "matcher", value="200-499"),
        "health_check.matcher: '200-499' is not a valid value; expected codes from 200 to 399, the lower first"),
    "matcher reversed": (
        set_in("health_check", "matcher", value="399-200"),
        "health_check.matcher: '399-200' is not a valid value; expected codes from 200 to 399, the lower first"),
    "matcher with TCP": (
        set_in("health_check", "protocol", value="TCP"),
        "health_check.path: only used with protocol HTTP or HTTPS, not TCP"),
    "interval": (
        set_in("health_check", "interval_s", value=301),
        "health_check.interval_s: 301 is not a valid value; expected a number from 5 to 300"),
    "timeout not below interval": (
        set_in("health_check", "timeout_s", value=10),
        "health_check.timeout_s: 10 is not a valid value; expected less than interval_s (10)"),
    "threshold": (
        set_in("health_check", "unhealthy_threshold", value=1),
        "health_check.unhealthy_threshold: 1 is not a valid value; expected an integer from 2 to 10"),
    "mtu": (
        set_in("interface", "mtu", value=9217),
        "interface.mtu: 9217 is not a valid value; expected an integer from 1500 to 9216"),
    "sysctl name": (
        set_in("sysctls", "ip_forward", value=1),
        "sysctls.ip_forward: 'ip_forward' is not a valid key; expected a network sysctl in dotted form "
        "like net.ipv4.ip_forward (only net.* ones belong to the target's namespace)"),
    "sysctl outside the namespace": (
        set_in("sysctls", "kernel.pid_max", value=99999),
        "sysctls.kernel.pid_max: 'kernel.pid_max' is not a valid key; expected a network sysctl in "
        "dotted form like net.ipv4.ip_forward (only net.* ones belong to the target's namespace)"),
    "sysctl value": (
        set_in("sysctls", "net.ipv4.ip_forward", value=[1]),
        "sysctls.net.ipv4.ip_forward: expected a string or an integer, got a list [1]"),
    "unknown claim": (
        set_in("claims", value=["ipv6", "teleport"]),
        "claims[1]: 'teleport' is not a valid value; "
        "expected one of: ipv6, jumbo, mid-stream-tcp, multi-endpoint, two-arm"),
}


@pytest.mark.parametrize("edit, expected", CASES.values(), ids=CASES.keys())
def test_bad_descriptor_names_file_key_and_expectation(
    tmp_path: Path, edit: Callable, expected: str
) -> None:
    path = write(tmp_path, edit)
    with pytest.raises(ConfigError) as caught:
        load_descriptor(path)
    assert str(caught.value) == f"{path}: {expected}"
    assert (caught.value.path, caught.value.key) == (path, expected.partition(": ")[0])


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text("name: x\nlaunch:\n  kind: process\n command: run\n")
    with pytest.raises(ConfigError) as caught:
        load_descriptor(path)
    assert str(caught.value).startswith(f"{path}: YAML syntax error at line 4, column 2: ")


def test_empty_value_is_reported_as_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, set_in("version", value=None))
    with pytest.raises(ConfigError) as caught:
        load_descriptor(path)
    assert str(caught.value) == f"{path}: version: expected a string, got nothing"


def test_unquoted_date_version_asks_for_quotes(tmp_path: Path) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text("name: x\nversion: 2024-01-31\nlaunch: {kind: process, command: run}\n")
    with pytest.raises(ConfigError) as caught:
        load_descriptor(path)
    assert str(caught.value) == (
        f"{path}: version: expected a string (put it in quotes), got a value \"2024-01-31\"")
