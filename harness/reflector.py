"""The emulator's ceiling: GENEVE reflected at each target's interface, as a perfect appliance
with no work would return it.

    emulator ─GENEVE─► gwlb-ethN ═veth═► aN-eth0 [nft netdev ingress: swap addresses, fwd back] ═veth═► emulator

While `reflecting(testbed)` is active, every target's namespace holds an nftables `netdev`
ingress rule that takes each UDP packet from the GWLB to port 6081, swaps the outer IPv4 (and
Ethernet) addresses and sends it straight back out of the same interface. The header, the GWLB's
source port and destination 6081 stay as they were: byte-for-byte what a correct appliance
returns. The rule is stateless (no conntrack entry outlives it) and runs before the target's IP
stack, so the appliance process sees none of these packets (except one reading with AF_PACKET,
which gets a copy), and health probes (TCP) pass untouched. Removing the table restores the
target exactly.

What the ceiling includes: the load generator, the consumer's and the endpoint's kernels, the tun
device, the emulator's whole per-packet work (both directions, fast or Python data path), both
veth crossings to each target and back, tcpdump on the GWLB node, the server's kernel. What it
excludes: the target's IP stack and the appliance's own work, which is what the appliance figures
add. See docs/architecture.md (Performance measurements).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

from harness import geneve
from harness.errors import HarnessError
from harness.testbed import GWLB_NODE, Testbed

TABLE = "gwlb_conformance_ceiling"


def _nsenter(pid: int, args: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(["nsenter", "-t", str(pid), "-n", *args], input=stdin, capture_output=True, text=True,
                              timeout=10)
    except FileNotFoundError as error:
        raise HarnessError(f"{error.filename} is missing: the ceiling's reflector needs nsenter and nft (nftables)") from None
    if done.returncode != 0:
        raise HarnessError(f"`{' '.join(args)}` in the namespace of process {pid} failed: {done.stderr.strip()}")
    return done.stdout


def _mac(pid: int, interface: str) -> str:
    return json.loads(_nsenter(pid, ["ip", "-j", "link", "show", "dev", interface]))[0]["address"]


def ruleset(interface: str, target_address: str, target_mac: str, gwlb_address: str, gwlb_mac: str) -> str:
    """The nftables table that reflects GENEVE arriving on `interface` back to the GWLB."""
    return (
        f"table netdev {TABLE} {{\n"
        f"  chain reflect {{\n"
        f'    type filter hook ingress device "{interface}" priority -500; policy accept;\n'
        f"    ip saddr {gwlb_address} ip daddr {target_address} udp dport {geneve.GENEVE_PORT} "
        f"ether saddr set {target_mac} ether daddr set {gwlb_mac} "
        f'ip saddr set {target_address} ip daddr set {gwlb_address} fwd to "{interface}"\n'
        f"  }}\n"
        f"}}\n"
    )


@contextlib.contextmanager
def reflecting(testbed: Testbed) -> Iterator[None]:
    """Reflect GENEVE at every target (registered or spare) for the body; always undone."""
    pids = testbed.node_pids()
    gwlb_address = str(testbed.topology.gwlb.address)
    installed: list[int] = []
    try:
        for target in testbed.targets:
            pid = pids[target.name]
            interface = f"{target.name}-eth0"
            rules = ruleset(interface, target.address, _mac(pid, interface), gwlb_address,
                            _mac(pids[GWLB_NODE], f"{GWLB_NODE}-eth{target.index}"))
            _nsenter(pid, ["nft", "-f", "-"], rules)
            installed.append(pid)
        yield
    finally:
        failures = []
        for pid in installed:
            try:
                _nsenter(pid, ["nft", "delete", "table", "netdev", TABLE])
            except HarnessError as error:
                failures.append(str(error))
        if failures:
            raise HarnessError("the ceiling's reflector could not be removed, later checks would bypass the appliance: "
                               + "; ".join(failures))
