"""harness.topology: the default topology loads exactly; every bad input is a one-line ConfigError.

Bad topologies are made by editing a copy of the default one, so each case shows the one thing
that is wrong, and the assertion is on the full message a user would read.
"""

from __future__ import annotations

import copy
import ipaddress
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import profiles
from harness.errors import ConfigError
from harness.topology import Stickiness, default_topology_path, load_topology

Edit = Callable[[dict[str, Any]], object]

DEFAULT = yaml.safe_load(default_topology_path().read_text())
SECOND = {
    "name": "gwlbe2", "eni_id": "vpce-0fedcba9876543210", "attachment_id": "0x1", "zone": "az1",
    "consumers": {"subnet": "10.0.3.0/24", "hosts": ["c3"]},
    "servers": {"subnet": "10.0.4.0/24", "hosts": ["s2"]},
}


def write(tmp_path: Path, edit: Edit = lambda data: None) -> Path:
    data = copy.deepcopy(DEFAULT)
    edit(data)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def failure(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_topology(path)
    assert "\n" not in str(caught.value)
    return caught.value


def test_default_topology_loads_with_exact_values() -> None:
    path = default_topology_path()
    assert path == Path(__file__).resolve().parents[1] / "topologies" / "default.yaml"
    header = "# yaml-language-server: $schema=../harness/schemas/topology.schema.json\n"
    assert path.read_text().startswith(header)
    topology = load_topology(path)
    assert (topology.name, topology.zones, topology.link_mtu) == ("default", ("az1",), 9001)
    assert topology.source == str(path)
    gwlb = topology.gwlb
    assert gwlb.profile is profiles.AWS
    assert gwlb.address == ipaddress.IPv4Address("10.200.0.1")
    assert gwlb.target_subnet == ipaddress.IPv4Network("10.200.0.0/24")
    assert (gwlb.targets_per_zone, topology.target_count) == (2, 2)
    assert (gwlb.stickiness, gwlb.tcp_idle_timeout_s) == (Stickiness.FIVE_TUPLE, 350)
    assert (gwlb.deregistration_delay_s, gwlb.cross_zone) == (30, False)
    assert [str(topology.target_address(i)) for i in range(2)] == ["10.200.0.11", "10.200.0.12"]
    (endpoint,) = topology.endpoints
    assert (endpoint.name, endpoint.zone) == ("gwlbe1", "az1")
    assert endpoint.eni_id == 0x01234567890ABCDEF
    assert endpoint.attachment_id == 0x0123456789ABCDEF
    assert endpoint.consumers.cidr == ipaddress.IPv4Network("10.0.1.0/24")
    assert endpoint.consumers.hosts == ("c1", "c2")
    assert str(endpoint.consumers.address_of("c2")) == "10.0.1.11"
    assert str(endpoint.consumers.gateway) == "10.0.1.1"
    assert endpoint.servers.cidr == ipaddress.IPv4Network("10.0.2.0/24")
    assert endpoint.servers.hosts == ("s1",)


def test_attributes_and_links_default_to_aws_values(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        del data["gwlb"]["attributes"], data["gwlb"]["profile"], data["links"]
        data["endpoints"][0]["attachment_id"] = 0x42

    topology = load_topology(write(tmp_path, edit))
    gwlb = topology.gwlb
    assert (gwlb.profile, gwlb.stickiness, gwlb.tcp_idle_timeout_s) == (
        profiles.AWS, Stickiness.FIVE_TUPLE, 350)
    assert (gwlb.deregistration_delay_s, gwlb.cross_zone, topology.link_mtu) == (300, False, 9001)
    assert topology.endpoints[0].attachment_id == 0x42


def test_two_zones_and_overlapping_consumers_of_two_endpoints(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["zones"] = ["az1", "az2"]
        data["gwlb"]["attributes"] = {
            "stickiness.type": "source_ip_dest_ip", "load_balancing.cross_zone.enabled": True,
        }
        second = copy.deepcopy(SECOND) | {"zone": "az2"}
        second["consumers"]["subnet"] = data["endpoints"][0]["consumers"]["subnet"]
        data["endpoints"].append(second)

    topology = load_topology(write(tmp_path, edit))
    assert topology.target_count == 4
    assert topology.gwlb.stickiness is Stickiness.TWO_TUPLE and topology.gwlb.cross_zone
    assert {e.consumers.cidr for e in topology.endpoints} == {ipaddress.IPv4Network("10.0.1.0/24")}


def test_late_endpoint_is_described_but_not_among_the_built_ones(tmp_path: Path) -> None:
    topology = load_topology(write(tmp_path, lambda data: data["endpoints"].append(SECOND | {"joins": "late"})))
    assert [e.name for e in topology.endpoints] == ["gwlbe1"]
    assert [e.name for e in topology.late_endpoints] == ["gwlbe2"]
    assert topology.late_endpoints[0].eni_id == 0x0FEDCBA9876543210
    assert ipaddress.IPv4Network("10.0.3.0/24") in {side.cidr for side in topology.subnets()}


def set_in(*keys: str | int, value: Any) -> Edit:
    def edit(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return edit


def delete(*keys: str | int) -> Edit:
    def edit(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return edit


def with_second(**changes: Any) -> Edit:
    return lambda data: data["endpoints"].append(copy.deepcopy(SECOND) | changes)


def six_targets_in_a_28(data: dict[str, Any]) -> None:
    data["zones"] = ["az1", "az2"]
    data["gwlb"].update(target_subnet="10.200.0.0/28", targets_per_zone=3)


def dual_stack(consumers6: str, servers6: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["endpoints"][0]["consumers"]["subnet6"] = consumers6
        data["endpoints"][0]["servers"]["subnet6"] = servers6
    return edit


def two_arm(
    subnet: str = "10.250.0.0/24", servers: str = "10.99.0.0/24", hosts: list[str] | None = None
) -> dict[str, Any]:
    return {"subnet": subnet, "servers": {"subnet": servers, "hosts": hosts or ["w1"]}}


EP = ("endpoints", 0)
ATTR = ("gwlb", "attributes")
INVALID = "is not a valid value; expected"
CASES: dict[str, tuple[Edit, str, str]] = {
    "unknown top-level key": (
        set_in("extra", value=1), "extra",
        "unknown key 'extra'; allowed keys: name, zones, gwlb, endpoints, links, two_arm"),
    "unknown nested key": (
        set_in(*EP, "eni", value="x"), "endpoints[0].eni",
        "unknown key 'eni'; allowed keys: name, eni_id, attachment_id, zone, consumers, servers, joins"),
    "unknown attribute": (
        set_in(*ATTR, "stickiness", value="five_tuple"), "gwlb.attributes.stickiness",
        "unknown key 'stickiness'; allowed keys: stickiness.type, tcp.idle_timeout.seconds, "
        "deregistration_delay.timeout_seconds, load_balancing.cross_zone.enabled, "
        "target_failover.on_unhealthy, target_failover.on_deregistration"),
    "missing key": (
        delete(*EP, "eni_id"), "endpoints[0].eni_id", "required key is missing"),
    "wrong type": (
        set_in("gwlb", "targets_per_zone", value="two"), "gwlb.targets_per_zone",
        "expected an integer, got a string 'two'"),
    "idle timeout too low": (
        set_in(*ATTR, "tcp.idle_timeout.seconds", value=59),
        "gwlb.attributes.tcp.idle_timeout.seconds", f"59 {INVALID} an integer from 60 to 6000"),
    "deregistration delay too high": (
        set_in(*ATTR, "deregistration_delay.timeout_seconds", value=3601),
        "gwlb.attributes.deregistration_delay.timeout_seconds",
        f"3601 {INVALID} an integer from 0 to 3600"),
    "unknown stickiness": (
        set_in(*ATTR, "stickiness.type", value="lb_cookie"), "gwlb.attributes.stickiness.type",
        f"'lb_cookie' {INVALID} one of: five_tuple, source_ip_dest_ip_proto, source_ip_dest_ip"),
    "idle timeout without 5-tuple": (
        set_in(*ATTR, "stickiness.type", value="source_ip_dest_ip_proto"),
        "gwlb.attributes.tcp.idle_timeout.seconds",
        "cannot be set with stickiness.type source_ip_dest_ip_proto; expected it only with five_tuple"),
    "cross zone not boolean": (
        set_in(*ATTR, "load_balancing.cross_zone.enabled", value="yes please"),
        "gwlb.attributes.load_balancing.cross_zone.enabled",
        "expected true or false, got a string 'yes please'"),
    "too many targets": (
        set_in("gwlb", "targets_per_zone", value=33), "gwlb.targets_per_zone",
        f"33 {INVALID} an integer from 1 to 32"),
    "unknown profile": (
        set_in("gwlb", "profile", value="alibaba"), "gwlb.profile", f"'alibaba' {INVALID} one of: aws, tencent"),
    "link mtu too small": (
        set_in("links", "mtu", value=1400), "links.mtu", f"1400 {INVALID} an integer from 1500 to 9216"),
    "no endpoints": (
        set_in("endpoints", value=[]), "endpoints", "expected at least 1 item(s), got 0"),
    "duplicate zone": (
        set_in("zones", value=["az1", "az1"]), "zones",
        "'az1' is listed more than once; expected unique items"),
    "eni id shape": (
        set_in(*EP, "eni_id", value="vpce-123"), "endpoints[0].eni_id",
        "'vpce-123' is not valid; "
        "expected 'vpce-' followed by 17 lowercase hex digits, like vpce-01234567890abcdef"),
    "eni id over 64 bits": (
        set_in(*EP, "eni_id", value="vpce-f1234567890abcdef"), "endpoints[0].eni_id",
        "'vpce-f1234567890abcdef' does not fit in 64 bits; expected a first hex digit of 0"),
    "attachment id shape": (
        set_in(*EP, "attachment_id", value="12345"), "endpoints[0].attachment_id",
        "'12345' is not valid; expected a 64-bit hex string like \"0x0123456789abcdef\""),
    "attachment id over 64 bits": (
        set_in(*EP, "attachment_id", value=1 << 64), "endpoints[0].attachment_id",
        f"18446744073709551616 {INVALID} an integer from 0 to 18446744073709551615"),
    "zone not listed": (
        set_in(*EP, "zone", value="az2"), "endpoints[0].zone",
        "'az2' is not in zones; expected one of: az1"),
    "bad host name": (
        set_in(*EP, "consumers", "hosts", value=["c1", "Client1"]), "endpoints[0].consumers.hosts[1]",
        "'Client1' is not valid; "
        "expected a node name of 1 to 8 lowercase letters and digits, starting with a letter"),
    "host named like a target": (
        set_in(*EP, "servers", "hosts", value=["a12"]), "endpoints[0].servers.hosts[0]",
        "'a12' is reserved for appliance targets (a1, a2, ...); expected another name"),
    "endpoint named gwlb": (
        set_in(*EP, "name", value="gwlb"), "endpoints[0].name",
        "'gwlb' is reserved for the GWLB node; expected another name"),
    "host named like its endpoint": (
        set_in(*EP, "servers", "hosts", value=["gwlbe1"]), "endpoints[0].servers.hosts[0]",
        "'gwlbe1' is already used by endpoints[0].name; expected names unique in the topology"),
    "host in two endpoints": (
        with_second(servers={"subnet": "10.0.4.0/24", "hosts": ["s1"]}), "endpoints[1].servers.hosts[0]",
        "'s1' is already used by endpoints[0].servers.hosts[0]; expected names unique in the topology"),
    "duplicate eni id": (
        with_second(eni_id=DEFAULT["endpoints"][0]["eni_id"]), "endpoints[1].eni_id",
        "vpce-01234567890abcdef is already used by endpoints[0]; expected unique ENI IDs"),
    "public subnet": (
        set_in(*EP, "servers", "subnet", value="8.8.8.0/24"), "endpoints[0].servers.subnet",
        "8.8.8.0/24 is not private; "
        "expected a network inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"),
    "host bits set": (
        set_in(*EP, "consumers", "subnet", value="10.0.1.5/24"), "endpoints[0].consumers.subnet",
        "'10.0.1.5/24' is not valid (10.0.1.5/24 has host bits set); "
        "expected a network like 10.0.1.0/24"),
    "not a cidr": (
        set_in(*EP, "consumers", "subnet", value="10.0.1.0"), "endpoints[0].consumers.subnet",
        "'10.0.1.0' is not valid; expected an IPv4 network in CIDR form like 10.0.1.0/24"),
    "prefix longer than 28": (
        set_in(*EP, "consumers", "subnet", value="10.0.1.0/29"), "endpoints[0].consumers.subnet",
        "10.0.1.0/29 is too small; expected a prefix of /28 or shorter"),
    "no room for hosts": (
        set_in(*EP, "consumers", value={"subnet": "10.0.1.0/28", "hosts": [f"c{i}" for i in range(6)]}),
        "endpoints[0].consumers.subnet",
        "10.0.1.0/28 has room for 5 address(es) from offset 10, 6 needed; expected a larger network"),
    "consumers overlap servers": (
        set_in(*EP, "servers", "subnet", value="10.0.0.0/16"), "endpoints[0].servers.subnet",
        "10.0.0.0/16 overlaps consumers.subnet 10.0.1.0/24; expected separate networks"),
    "endpoint overlaps target subnet": (
        set_in(*EP, "servers", "subnet", value="10.200.0.0/16"), "endpoints[0].servers.subnet",
        "10.200.0.0/16 overlaps gwlb.target_subnet 10.200.0.0/24; expected a separate network"),
    "gwlb address among targets": (
        set_in("gwlb", "address", value="10.200.0.11"), "gwlb.address",
        "10.200.0.11 is not usable; expected an address in 10.200.0.0/24 from 10.200.0.1 to 10.200.0.10"),
    "gwlb address outside subnet": (
        set_in("gwlb", "address", value="10.201.0.1"), "gwlb.address",
        "10.201.0.1 is not usable; expected an address in 10.200.0.0/24 from 10.200.0.1 to 10.200.0.10"),
    "gwlb address invalid": (
        set_in("gwlb", "address", value="10.200.0.300"), "gwlb.address",
        "'10.200.0.300' is not valid (Octet 300 (> 255) not permitted in '10.200.0.300'); "
        "expected an IPv4 address"),
    "subnet6 not unique local": (
        set_in(*EP, "consumers", "subnet6", value="2001:db8::/64"), "endpoints[0].consumers.subnet6",
        "2001:db8::/64 is not unique local; expected a unique local network inside fc00::/7"),
    "subnet6 uppercase": (
        set_in(*EP, "consumers", "subnet6", value="FD00::/64"), "endpoints[0].consumers.subnet6",
        "'FD00::/64' is not valid; expected an IPv6 network in CIDR form like fd00:1::/64 (lowercase hex)"),
    "subnet6 host bits": (
        set_in(*EP, "consumers", "subnet6", value="fd00::1/64"), "endpoints[0].consumers.subnet6",
        "'fd00::1/64' is not valid (fd00::1/64 has host bits set); expected a network like fd00:1::/64"),
    "subnet6 too small": (
        set_in(*EP, "consumers", "subnet6", value="fd00::/121"), "endpoints[0].consumers.subnet6",
        "fd00::/121 is too small; expected a prefix of /120 or shorter"),
    "subnet6 overlap": (
        dual_stack("fd00:1::/64", "fd00:1::/48"), "endpoints[0].servers.subnet6",
        "fd00:1::/48 overlaps consumers.subnet6 fd00:1::/64; expected separate networks"),
    "two-arm without servers": (
        set_in("two_arm", value={"subnet": "10.250.0.0/24"}), "two_arm.servers", "required key is missing"),
    "two-arm subnet over targets": (
        set_in("two_arm", value=two_arm("10.200.0.0/16")), "two_arm.subnet",
        "10.200.0.0/16 overlaps gwlb.target_subnet 10.200.0.0/24; expected a separate network"),
    "two-arm servers over its subnet": (
        set_in("two_arm", value=two_arm(servers="10.250.0.0/25")), "two_arm.servers.subnet",
        "10.250.0.0/25 overlaps two_arm.subnet 10.250.0.0/24; expected a separate network"),
    "endpoint over two-arm subnet": (
        set_in("two_arm", value=two_arm("10.0.2.0/24", servers="10.99.0.0/24")), "endpoints[0].servers.subnet",
        "10.0.2.0/24 overlaps two_arm.subnet 10.0.2.0/24; expected a separate network"),
    "two-arm server named egress": (
        set_in("two_arm", value=two_arm(hosts=["egress"])), "two_arm.servers.hosts[0]",
        "'egress' is reserved for the two-arm egress router; expected another name"),
    "two-arm server named like a consumer": (
        set_in("two_arm", value=two_arm(hosts=["c1"])), "two_arm.servers.hosts[0]",
        "'c1' is already used by endpoints[0].consumers.hosts[0]; expected names unique in the topology"),
    "unknown joins": (
        set_in("endpoints", 0, "joins", value="soon"), "endpoints[0].joins",
        "'soon' is not a valid value; expected one of: up, late"),
    "every endpoint late": (
        set_in("endpoints", 0, "joins", value="late"), "endpoints[0].joins",
        "every endpoint joins late; expected at least one built at up (the checks use the first one)"),
    "late endpoint reusing an ENI": (
        lambda data: data["endpoints"].append(SECOND | {"eni_id": data["endpoints"][0]["eni_id"], "joins": "late"}),
        "endpoints[1].eni_id",
        "vpce-01234567890abcdef is already used by endpoints[0]; expected unique ENI IDs"),
    "no room for targets": (
        six_targets_in_a_28,
        "gwlb.target_subnet",
        "10.200.0.0/28 has room for 4 address(es) from offset 11, 6 needed; expected a larger network"),
}


@pytest.mark.parametrize("edit, key, expected", CASES.values(), ids=CASES.keys())
def test_bad_topology_names_file_key_and_expectation(
    tmp_path: Path, edit: Edit, key: str, expected: str
) -> None:
    path = write(tmp_path, edit)
    error = failure(path)
    assert str(error) == f"{path}: {key}: {expected}"
    assert (error.path, error.key, error.expected) == (path, key, expected)


TEXT_CASES: dict[str, tuple[str | bytes, str]] = {
    "syntax error": (
        "name: default\nzones: [az1\n",
        "YAML syntax error at line 3, column 1: while parsing a flow sequence, "
        "expected ',' or ']', but got '<stream end>'"),
    "two documents": (
        "name: a\n---\nname: b\n",
        "YAML syntax error at line 2, column 1: expected a single document in the stream, "
        "but found another document"),
    "duplicate key": ("name: a\nname: b\n", "YAML error at line 2, column 1: duplicate key 'name'"),
    "python tag": (
        "!!python/object:os.system {}\n",
        "YAML error at line 1, column 1: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system'"),
    "too deep": ("a: " + "[" * 2000 + "]" * 2000, "nested too deeply; expected a few levels of keys"),
    "empty file": ("# nothing\n", "the file is empty; expected a mapping of settings"),
    "not a mapping": ("- name\n", "expected a mapping, got a list [\"name\"]"),
    "not text": (
        b"\xff\xfe",
        "cannot read file: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
}


@pytest.mark.parametrize("text, expected", TEXT_CASES.values(), ids=TEXT_CASES.keys())
def test_unparsable_topology(tmp_path: Path, text: str | bytes, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert str(failure(path)) == f"{path}: {expected}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    expected = f"{path}: cannot read file: [Errno 2] No such file or directory"
    assert str(failure(path)).startswith(expected)


LIBRARY = sorted((Path(__file__).resolve().parents[1] / "topologies").glob("*.yaml"))


def test_library_has_the_documented_topologies() -> None:
    assert {path.stem for path in LIBRARY} >= {
        "default", "two-zones", "two-zones-cross-zone", "multi-endpoint", "dual-stack", "scale", "two-arm-nat",
    }


@pytest.mark.parametrize("path", LIBRARY, ids=[path.stem for path in LIBRARY])
def test_library_topology_loads_and_draws_itself(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../harness/schemas/topology.schema.json\n")
    drawing = [line for line in text.splitlines() if line.startswith("#") and any(c in line for c in "─|│")]
    assert len(drawing) >= 3, f"{path.name} should draw its topology in a comment"
    topology = load_topology(path)
    assert topology.name == path.stem


def test_library_topologies_have_what_their_names_say() -> None:
    loaded = {path.stem: load_topology(path) for path in LIBRARY}
    off, on = loaded["two-zones"], loaded["two-zones-cross-zone"]
    assert (off.zones, off.target_count, off.gwlb.cross_zone) == (("az1", "az2"), 4, False)
    assert (on.zones, on.target_count, on.gwlb.cross_zone) == (("az1", "az2"), 4, True)
    assert {e.zone for e in off.endpoints} == {"az1", "az2"}
    multi = loaded["multi-endpoint"].endpoints
    assert len(multi) == 3 and len({e.eni_id for e in multi}) == 3
    assert multi[0].consumers.cidr == multi[1].consumers.cidr and multi[0].servers.cidr == multi[1].servers.cidr
    assert not multi[2].consumers.cidr.overlaps(multi[0].consumers.cidr)
    assert [e.name for e in loaded["multi-endpoint"].late_endpoints] == ["gwlbe4"]
    assert [e.name for e in loaded["certification"].late_endpoints] == ["gwlbe3"]
    scale = loaded["scale"]
    assert scale.target_count == 8 and len(scale.endpoints[0].consumers.hosts) >= 16
    dual = loaded["dual-stack"]
    assert dual.dual_stack and not loaded["default"].dual_stack
    assert loaded["two-arm-nat"].two_arm is not None and loaded["default"].two_arm is None


def test_dual_stack_addresses() -> None:
    topology = load_topology(default_topology_path().with_name("dual-stack.yaml"))
    consumers = topology.endpoints[0].consumers
    assert consumers.cidr6 == ipaddress.IPv6Network("fd00:1::/64")
    assert (str(consumers.gateway6), str(consumers.address6_of("c2"))) == ("fd00:1::1", "fd00:1::b")
    assert str(consumers.address_of("c2")) == "10.0.1.11"
    with pytest.raises(ValueError, match="subnet 10.0.1.0/24 has no subnet6"):
        load_topology(default_topology_path()).endpoints[0].consumers.address6_of("c1")


def test_two_arm_addresses_and_subnets() -> None:
    topology = load_topology(default_topology_path().with_name("two-arm-nat.yaml"))
    two_arm = topology.two_arm
    assert two_arm is not None
    assert (str(two_arm.router_address), str(two_arm.target_address(1))) == ("10.250.0.1", "10.250.0.12")
    assert two_arm.servers.hosts == ("w1",) and str(two_arm.servers.address_of("w1")) == "10.99.0.10"
    assert topology.subnets()[-1] is two_arm.servers


def test_cli_rejects_a_malformed_topology_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, set_in(*EP, "zone", value="az9"))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--topology", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"gwlb-conformance: error: {path}: endpoints[0].zone: "
                           "'az9' is not in zones; expected one of: az1\n")


def test_tencent_topology_forces_symmetric_three_tuple() -> None:
    path = default_topology_path("tencent")
    assert path.name == "tencent.yaml" and default_topology_path("aws").name == "default.yaml"
    gwlb = load_topology(path).gwlb
    assert (gwlb.profile, gwlb.stickiness) == (profiles.TENCENT, Stickiness.THREE_TUPLE)


def test_profile_argument_replaces_the_files_profile(tmp_path: Path) -> None:
    """`run --profile`: the file's network under another profile, its attributes checked against it."""
    aws = load_topology(default_topology_path("tencent"), "aws").gwlb
    assert (aws.profile, aws.stickiness) == (profiles.AWS, Stickiness.FIVE_TUPLE)
    path = write(tmp_path, lambda data: data["gwlb"]["attributes"].pop("tcp.idle_timeout.seconds"))
    with pytest.raises(ConfigError) as caught:
        load_topology(path, "tencent")
    assert str(caught.value) == (
        f"{path}: gwlb.attributes.stickiness.type: profile tencent always hashes source_ip_dest_ip_proto; "
        "five_tuple is not available; expected source_ip_dest_ip_proto or no value")
    with pytest.raises(ConfigError, match=r"gwlb.profile: unknown profile 'gcp'; expected one of: aws, tencent"):
        load_topology(path, "gcp")


def test_target_failover_must_be_equal(tmp_path) -> None:
    import yaml

    from harness.errors import ConfigError
    from harness.topology import default_topology_path, load_topology

    raw = yaml.safe_load(default_topology_path().read_text())
    raw["gwlb"]["attributes"]["target_failover.on_unhealthy"] = "rebalance"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="must have the same value"):
        load_topology(path)
    raw["gwlb"]["attributes"]["target_failover.on_deregistration"] = "rebalance"
    path.write_text(yaml.safe_dump(raw))
    assert load_topology(path).gwlb.rebalance is True
