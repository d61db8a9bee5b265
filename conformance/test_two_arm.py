"""FLOW in two-arm mode: the appliance sends traffic on through its second interface (typically
NATed) and the replies come back through the GWLB tunnel.

    c1 ── gwlbe1 ── gwlb ══GENEVE══ a1 ── a1-eth1 (NAT) ── egress ── w1
     ▲                                  │ replies un-NATed, into the tunnel
     └──────────────────────────────────┘
"""

from __future__ import annotations

import pytest

from harness import checks
from harness.checks import CheckFailed


@pytest.fixture(scope="module")
def far_server(testbed, hosts):
    two_arm = testbed.topology.two_arm
    if two_arm is None:
        pytest.skip(f"topology {testbed.topology.name} has no two-arm servers")
    server = two_arm.servers.hosts[0]
    checks.start_echo_servers(testbed, server)
    checks.wait_for_servers(testbed, server)
    return server


@pytest.mark.requirement("FLOW-TWO-ARM")
def test_two_arm_traffic_returns_through_the_tunnel(testbed, hosts, far_server):
    tcp = checks.tcp_exchange(testbed, hosts.client, far_server, size=65536)
    udp = checks.udp_exchange(testbed, hosts.client, far_server, inner_size=512, count=5)
    received, summary = checks.ping(testbed, hosts.client, far_server, count=3)
    if not tcp["intact"] or udp["received_intact"] != 5 or received < 3:
        raise CheckFailed(
            f"traffic to {far_server} behind the appliances' second interface failed: TCP {tcp}, UDP {udp}, "
            f"ping {summary}\n{checks.emulator_account(testbed)}",
            **checks.emulator_evidence(testbed),
        )
