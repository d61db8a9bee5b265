"""MTU: a GWLB passes inner packets up to 8500 bytes; the appliance must carry them whole.

    c1 ──8500-byte UDP / ICMP──▶ gwlb ══8568-byte GENEVE══▶ appliance ══▶ back, unfragmented
"""

from __future__ import annotations

import pytest

from harness import checks
from harness.checks import CheckFailed
from harness.errors import HarnessError

JUMBO = 8500


@pytest.mark.requirement("MTU-JUMBO-8500")
def test_8500_byte_udp_both_ways(testbed, hosts):
    result = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=JUMBO, count=3)
    if result["received_intact"] != 3:
        raise CheckFailed(f"expected 3 intact {JUMBO}-byte UDP echoes, got {result}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("MTU-JUMBO-8500")
def test_8500_byte_icmp_both_ways(testbed, hosts):
    received, summary = checks.ping(testbed, hosts.client, hosts.server, count=3, inner_size=JUMBO)
    if received < 3:
        raise CheckFailed(f"expected 3 replies to {JUMBO}-byte pings, ping says: {summary}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("MTU-BOUNDARIES")
@pytest.mark.parametrize("size", [1500, 8499])
def test_boundary_sizes_cross_intact(testbed, hosts, size):
    result = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=size, count=2)
    if result["received_intact"] != 2:
        raise CheckFailed(f"expected 2 intact {size}-byte UDP echoes, got {result}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("MTU-BOUNDARIES")
def test_gwlb_drops_8501_byte_packets(testbed, hosts):
    """A testbed self-check: the emulated GWLB, not the appliance, must drop these."""
    before = testbed.control.get("/metrics")["drops"].get("oversize", 0)
    result = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=JUMBO + 1, count=1, timeout_s=0.5)
    after = testbed.control.get("/metrics")["drops"].get("oversize", 0)
    if result["received_intact"] or after != before + 1:
        raise HarnessError(f"the emulated GWLB did not drop an {JUMBO + 1}-byte inner packet: {result}, oversize drops {before} -> {after}")
