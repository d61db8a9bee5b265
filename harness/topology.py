"""The topology description: frozen, validated data with no side effects.

`load_topology` reads a YAML file (validated against `schemas/topology.schema.json`) into these
types; `testbed.py` turns them into namespaces. Addresses are private IPv4 ranges (and, for
dual-stack sides, IPv6 unique local addresses) that live only inside the run's own namespaces.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.profiles import Profile, Stickiness, get_profile
from harness.yamlconfig import load_validated


@dataclass(frozen=True)
class Subnet:
    """Hosts on one side of an endpoint; host i (from 0) gets address network[10 + i], the router
    network[1]; a dual-stack side (`cidr6`) numbers its IPv6 addresses the same way."""

    cidr: ipaddress.IPv4Network
    hosts: tuple[str, ...]
    cidr6: ipaddress.IPv6Network | None = None

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.cidr.network_address + 1

    def address_of(self, host: str) -> ipaddress.IPv4Address:
        return self.cidr.network_address + _FIRST_HOST + self.hosts.index(host)

    @property
    def gateway6(self) -> ipaddress.IPv6Address:
        return self._v6().network_address + 1

    def address6_of(self, host: str) -> ipaddress.IPv6Address:
        return self._v6().network_address + _FIRST_HOST + self.hosts.index(host)

    def _v6(self) -> ipaddress.IPv6Network:
        if self.cidr6 is None:
            raise ValueError(f"subnet {self.cidr} has no subnet6 (IPv6) in this topology")
        return self.cidr6


@dataclass(frozen=True)
class Endpoint:
    """A GWLB endpoint: the route target of one VPC; its ENI ID travels in GENEVE option 1."""

    name: str
    eni_id: int
    attachment_id: int
    zone: str
    consumers: Subnet
    servers: Subnet


@dataclass(frozen=True)
class Gwlb:
    """The emulated load balancer: its profile, its address on the appliance subnet and its
    attributes (`stickiness` is the one in effect, which the profile may force)."""

    profile: Profile
    address: ipaddress.IPv4Address
    target_subnet: ipaddress.IPv4Network
    targets_per_zone: int
    stickiness: Stickiness
    tcp_idle_timeout_s: int
    deregistration_delay_s: int
    cross_zone: bool
    rebalance: bool = False


@dataclass(frozen=True)
class TwoArm:
    """Two-arm mode: each target's second interface (`a<N>-eth1`, address network[11 + index])
    faces the `egress` router (network[1]), behind which sit servers that only the appliances'
    own routing (typically NAT) reaches; replies return through the GWLB tunnel."""

    subnet: ipaddress.IPv4Network
    servers: Subnet

    @property
    def router_address(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def target_address(self, index: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + _FIRST_TARGET + index


@dataclass(frozen=True)
class Topology:
    name: str
    zones: tuple[str, ...]
    gwlb: Gwlb
    endpoints: tuple[Endpoint, ...]
    link_mtu: int
    source: str
    two_arm: TwoArm | None = None
    late_endpoints: tuple[Endpoint, ...] = ()
    """Endpoints declared `joins: late`: not built at `up`, created while traffic flows
    (`Testbed.join_endpoint`), as a consumer may create an endpoint at any time."""

    def target_address(self, index: int) -> ipaddress.IPv4Address:
        """Appliance target `index` (from 0) on the appliance subnet."""
        return self.gwlb.target_subnet.network_address + 11 + index

    @property
    def target_count(self) -> int:
        return self.gwlb.targets_per_zone * len(self.zones)

    @property
    def dual_stack(self) -> bool:
        """Whether any host has an IPv6 address."""
        return any(
            side.cidr6 is not None for e in self.endpoints for side in (e.consumers, e.servers)
        )

    def subnets(self) -> tuple[Subnet, ...]:
        """Every subnet with hosts: each endpoint's consumers and servers (late ones last), then
        two-arm servers."""
        sides = tuple(side for e in self.endpoints + self.late_endpoints for side in (e.consumers, e.servers))
        return sides + ((self.two_arm.servers,) if self.two_arm else ())


_PRIVATE = tuple(map(ipaddress.IPv4Network, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")))
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_RESERVED = re.compile(r"gwlb|egress|a[0-9]+")
_ROLES = {"gwlb": "the GWLB node", "egress": "the two-arm egress router"}
_FIRST_HOST = 10
_FIRST_TARGET = 11


def default_topology_path(profile: str | None = None) -> Path:
    """The topology `run` uses when none is given: `default.yaml`, or for a profile other than
    aws the one named after it (its attributes suit that profile, e.g. tencent's 3-tuple)."""
    name = "default" if profile in (None, "aws") else profile
    return Path(__file__).resolve().parents[1] / "topologies" / f"{name}.yaml"


def load_topology(path: Path, profile: str | None = None) -> Topology:
    """Read, validate and check a topology file; every problem is a `ConfigError`.

    `profile` (from `run --profile`) replaces the file's `gwlb.profile`: the profile is which
    cloud to emulate, the topology the network, so one topology serves every profile. The
    attributes are checked against the profile in effect either way."""
    path = Path(path)
    data = load_validated(path, "topology.schema.json")
    zones = tuple(data["zones"])
    _check_names(path, data["endpoints"], data.get("two_arm"))
    gwlb = _gwlb(path, data["gwlb"], len(zones), profile)
    endpoints = tuple(_endpoint(path, i, raw, zones) for i, raw in enumerate(data["endpoints"]))
    _check_unique_enis(path, endpoints)
    reserved = [("gwlb.target_subnet", gwlb.target_subnet)]
    two_arm = None
    if "two_arm" in data:
        two_arm = _two_arm(path, data["two_arm"], gwlb.targets_per_zone * len(zones))
        _check_apart(path, "two_arm.subnet", two_arm.subnet, reserved)
        reserved.append(("two_arm.subnet", two_arm.subnet))
        _check_apart(path, "two_arm.servers.subnet", two_arm.servers.cidr, reserved)
    for i, endpoint in enumerate(endpoints):
        for side in ("consumers", "servers"):
            cidr = getattr(endpoint, side).cidr
            _check_apart(path, f"endpoints[{i}].{side}.subnet", cidr, reserved)
    late = [raw.get("joins") == "late" for raw in data["endpoints"]]
    if all(late):
        raise ConfigError(
            path, f"endpoints[{len(late) - 1}].joins",
            "every endpoint joins late; expected at least one built at up (the checks use the first one)",
        )
    return Topology(
        name=data["name"],
        zones=zones,
        gwlb=gwlb,
        endpoints=tuple(e for e, joins_late in zip(endpoints, late) if not joins_late),
        link_mtu=data.get("links", {}).get("mtu", 9001),
        source=str(path),
        two_arm=two_arm,
        late_endpoints=tuple(e for e, joins_late in zip(endpoints, late) if joins_late),
    )


def _check_apart(
    path: Path, key: str, cidr: ipaddress.IPv4Network, others: list[tuple[str, ipaddress.IPv4Network]]
) -> None:
    for other_key, other in others:
        if cidr.overlaps(other):
            raise ConfigError(
                path, key, f"{cidr} overlaps {other_key} {other}; expected a separate network"
            )


def _network(path: Path, key: str, text: str, first: int, count: int) -> ipaddress.IPv4Network:
    """A private network of at most /28 that holds `count` addresses from offset `first`."""
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError as exc:
        expected = "expected a network like 10.0.1.0/24"
        raise ConfigError(path, key, f"{text!r} is not valid ({exc}); {expected}") from None
    if not any(net.subnet_of(private) for private in _PRIVATE):
        private = "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        raise ConfigError(path, key, f"{net} is not private; expected a network inside {private}")
    if net.prefixlen > 28:
        raise ConfigError(path, key, f"{net} is too small; expected a prefix of /28 or shorter")
    room = net.num_addresses - 1 - first
    if count > room:
        raise ConfigError(
            path, key,
            f"{net} has room for {room} address(es) from offset {first}, {count} needed; "
            "expected a larger network",
        )
    return net


def _network6(path: Path, key: str, text: str, count: int) -> ipaddress.IPv6Network:
    """A unique local IPv6 network of at most /120 that holds `count` hosts from offset 10."""
    try:
        net = ipaddress.IPv6Network(text)
    except ValueError as exc:
        expected = "expected a network like fd00:1::/64"
        raise ConfigError(path, key, f"{text!r} is not valid ({exc}); {expected}") from None
    if not net.subnet_of(_UNIQUE_LOCAL):
        expected = f"expected a unique local network inside {_UNIQUE_LOCAL}"
        raise ConfigError(path, key, f"{net} is not unique local; {expected}")
    if net.prefixlen > 120:
        raise ConfigError(path, key, f"{net} is too small; expected a prefix of /120 or shorter")
    room = net.num_addresses - 1 - _FIRST_HOST
    if count > room:
        raise ConfigError(
            path, key,
            f"{net} has room for {room} address(es) from offset {_FIRST_HOST}, {count} needed; "
            "expected a larger network",
        )
    return net


def _two_arm(path: Path, raw: dict[str, Any], target_count: int) -> TwoArm:
    subnet = _network(path, "two_arm.subnet", raw["subnet"], _FIRST_TARGET, target_count)
    servers = _subnet(path, "two_arm.servers", raw["servers"])
    return TwoArm(subnet, servers)


def _gwlb(path: Path, raw: dict[str, Any], zone_count: int, profile_name: str | None) -> Gwlb:
    count = raw["targets_per_zone"] * zone_count
    subnet = _network(path, "gwlb.target_subnet", raw["target_subnet"], _FIRST_TARGET, count)
    try:
        address = ipaddress.IPv4Address(raw["address"])
    except ValueError as exc:
        problem = f"{raw['address']!r} is not valid ({exc})"
        raise ConfigError(path, "gwlb.address", f"{problem}; expected an IPv4 address") from None
    first, last = subnet.network_address + 1, subnet.network_address + _FIRST_TARGET - 1
    if not first <= address <= last:
        raise ConfigError(
            path, "gwlb.address",
            f"{address} is not usable; expected an address in {subnet} from {first} to {last}",
        )
    attributes = raw.get("attributes", {})
    try:
        profile = get_profile(profile_name or raw.get("profile", "aws"))
    except ValueError as exc:
        raise ConfigError(path, "gwlb.profile", f"{exc} (given with --profile)") from None
    requested = attributes.get("stickiness.type")
    try:
        stickiness = profile.stickiness(None if requested is None else Stickiness(requested))
    except ValueError as exc:
        raise ConfigError(path, "gwlb.attributes.stickiness.type",
                          f"{exc}; expected {profile.forced_stickiness.value} or no value") from None  # type: ignore[union-attr]
    if "tcp.idle_timeout.seconds" in attributes and stickiness is not Stickiness.FIVE_TUPLE:
        raise ConfigError(
            path, "gwlb.attributes.tcp.idle_timeout.seconds",
            f"cannot be set with stickiness.type {stickiness.value}; "
            "expected it only with five_tuple",
        )
    on_unhealthy = attributes.get("target_failover.on_unhealthy", "no_rebalance")
    on_deregistration = attributes.get("target_failover.on_deregistration", "no_rebalance")
    if on_unhealthy != on_deregistration:
        raise ConfigError(
            path, "gwlb.attributes.target_failover.on_deregistration",
            f"ValidationError: target_failover.on_unhealthy ({on_unhealthy}) and "
            f"target_failover.on_deregistration ({on_deregistration}) must have the same value",
        )
    return Gwlb(
        profile=profile,
        address=address,
        target_subnet=subnet,
        targets_per_zone=raw["targets_per_zone"],
        stickiness=stickiness,
        tcp_idle_timeout_s=attributes.get("tcp.idle_timeout.seconds", 350),
        deregistration_delay_s=attributes.get("deregistration_delay.timeout_seconds", 300),
        cross_zone=attributes.get("load_balancing.cross_zone.enabled", False),
        rebalance=on_unhealthy == "rebalance",
    )


def _endpoint(path: Path, index: int, raw: dict[str, Any], zones: tuple[str, ...]) -> Endpoint:
    at = f"endpoints[{index}]"
    eni_id = int(raw["eni_id"].removeprefix("vpce-"), 16)
    if eni_id >= 1 << 64:
        raise ConfigError(
            path, f"{at}.eni_id",
            f"{raw['eni_id']!r} does not fit in 64 bits; expected a first hex digit of 0",
        )
    if raw["zone"] not in zones:
        expected = f"expected one of: {', '.join(zones)}"
        raise ConfigError(path, f"{at}.zone", f"{raw['zone']!r} is not in zones; {expected}")
    consumers = _subnet(path, f"{at}.consumers", raw["consumers"])
    servers = _subnet(path, f"{at}.servers", raw["servers"])
    if consumers.cidr.overlaps(servers.cidr):
        raise ConfigError(
            path, f"{at}.servers.subnet",
            f"{servers.cidr} overlaps consumers.subnet {consumers.cidr}; "
            "expected separate networks",
        )
    if consumers.cidr6 and servers.cidr6 and consumers.cidr6.overlaps(servers.cidr6):
        raise ConfigError(
            path, f"{at}.servers.subnet6",
            f"{servers.cidr6} overlaps consumers.subnet6 {consumers.cidr6}; "
            "expected separate networks",
        )
    attachment = raw["attachment_id"]
    return Endpoint(
        name=raw["name"],
        eni_id=eni_id,
        attachment_id=attachment if isinstance(attachment, int) else int(attachment, 16),
        zone=raw["zone"],
        consumers=consumers,
        servers=servers,
    )


def _subnet(path: Path, key: str, raw: dict[str, Any]) -> Subnet:
    count = len(raw["hosts"])
    cidr = _network(path, f"{key}.subnet", raw["subnet"], _FIRST_HOST, count)
    cidr6 = _network6(path, f"{key}.subnet6", raw["subnet6"], count) if "subnet6" in raw else None
    return Subnet(cidr, tuple(raw["hosts"]), cidr6)


def _check_names(path: Path, endpoints: list[dict[str, Any]], two_arm: dict[str, Any] | None) -> None:
    """Endpoint and host names become node names: unique, and not those the harness uses."""
    named: list[tuple[str, str]] = []
    for i, raw in enumerate(endpoints):
        named.append((f"endpoints[{i}].name", raw["name"]))
        for side in ("consumers", "servers"):
            hosts = enumerate(raw[side]["hosts"])
            named += [(f"endpoints[{i}].{side}.hosts[{j}]", host) for j, host in hosts]
    if two_arm is not None:
        named += [(f"two_arm.servers.hosts[{j}]", h) for j, h in enumerate(two_arm["servers"]["hosts"])]
    owners: dict[str, str] = {}
    for key, name in named:
        if _RESERVED.fullmatch(name):
            role = _ROLES.get(name, "appliance targets (a1, a2, ...)")
            raise ConfigError(path, key, f"{name!r} is reserved for {role}; expected another name")
        if name in owners:
            raise ConfigError(
                path, key,
                f"{name!r} is already used by {owners[name]}; expected names unique in the topology",
            )
        owners[name] = key


def _check_unique_enis(path: Path, endpoints: tuple[Endpoint, ...]) -> None:
    first_use: dict[int, int] = {}
    for i, endpoint in enumerate(endpoints):
        j = first_use.setdefault(endpoint.eni_id, i)
        if j != i:
            raise ConfigError(
                path, f"endpoints[{i}].eni_id",
                f"vpce-{endpoint.eni_id:017x} is already used by endpoints[{j}]; "
                "expected unique ENI IDs",
            )
