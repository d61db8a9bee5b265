"""FLOW: real connections through the appliance keep to their flow's target and cookie.

    c1 ──TCP──▶ s1      both directions: same target, same cookie, both come back
    c1 ──ICMP─▶ s1
"""

from __future__ import annotations

import pytest

from harness import checks
from harness.checks import PROTO_ICMP, PROTO_TCP, CheckFailed
from harness.errors import HarnessError

REUSED_PORT = 31001
STICKY_PORTS = checks.FreshPorts(30000, 30999)


@pytest.mark.requirement("FLOW-TCP-SYMMETRIC")
def test_tcp_connection_is_symmetric(testbed, hosts):
    result = checks.tcp_exchange(testbed, hosts.client, hosts.server, size=65536)
    if not result["intact"]:
        raise CheckFailed(f"TCP echo of 64 KiB through the appliance failed: {result}\n{checks.emulator_account(testbed)}")
    flows = checks.flows_of(testbed, PROTO_TCP, hosts.client_address, result["local_port"])
    if len(flows) != 1:
        raise CheckFailed(f"expected exactly one emulator flow for the connection, found {len(flows)}")
    checks.expect_returned_both_ways(testbed, flows[0], "TCP connection")


@pytest.mark.requirement("FLOW-ICMP")
def test_icmp_echo(testbed, hosts):
    received, summary = checks.ping(testbed, hosts.client, hosts.server, count=3)
    if received < 3:
        raise CheckFailed(f"expected 3 ICMP echo replies, ping says: {summary}\n{checks.emulator_account(testbed)}")
    flows = checks.flows_of(testbed, PROTO_ICMP, hosts.client_address)
    checks.expect_returned_both_ways(testbed, flows[0], "ICMP echo")


@pytest.mark.requirement("FLOW-COOKIE-REUSE")
def test_reused_five_tuple_gets_new_cookie(testbed, hosts, new_flows):
    cookies = []
    for attempt in (1, 2):
        result = checks.tcp_exchange(testbed, hosts.other_client, hosts.server, size=4096, source_port=REUSED_PORT, reset=True)
        if not result["intact"]:
            raise CheckFailed(
                f"connection {attempt} from port {REUSED_PORT} failed: {result}"
                + (f" (first connection's cookie {cookies[0]:#010x})" if cookies else "")
                + f"\n{checks.emulator_account(testbed)}"
            )
        flows = checks.flows_of(testbed, PROTO_TCP, testbed.host_address(hosts.other_client), REUSED_PORT)
        cookies.append(flows[0]["cookie"])
    if cookies[0] == cookies[1]:
        raise CheckFailed(f"the emulator reused cookie {cookies[0]:#010x}: the check itself is broken")
    stale = testbed.control.get("/metrics")["drops"].get("stale_cookie", 0)
    if stale:
        raise CheckFailed(f"{stale} returned packets carried a retired cookie\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("FLOW-CONCURRENT")
def test_a_thousand_concurrent_flows_keep_their_cookies(testbed, hosts, record_property):
    result = checks.udp_many(testbed, hosts.client, hosts.server, flows=1000, rounds=2)
    spread: dict[str, int] = {}
    for flow in checks.flows_of(testbed, checks.PROTO_UDP, hosts.client_address):
        spread[flow["target"]] = spread.get(flow["target"], 0) + 1
    record_property("flows_per_target", spread)
    mixups = testbed.control.get("/metrics")["mixups"]
    if mixups:
        samples = "\n".join(f"  cookie {m['cookie']:#010x} of {m['expected']} came back on {m['observed']}"
                            for m in testbed.control.get("/mixups")[:5])
        raise CheckFailed(f"{mixups} returned packets carried another flow's cookie:\n{samples}")
    if result["complete_flows"] != result["flows"]:
        raise CheckFailed(f"expected all 1000 flows to echo twice, got {result}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("FLOW-ICMP-ERROR")
def test_icmp_error_returns_in_its_flow(testbed, hosts):
    result = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=128, count=1, port=checks.CLOSED_PORT, timeout_s=1.5)
    if not result.get("refused"):
        flows = checks.flows_of(testbed, checks.PROTO_UDP, hosts.client_address, result["local_port"])
        raise CheckFailed(
            f"expected the server's ICMP port unreachable to reach the client through the flow's tunnel; "
            f"the client saw {result}; flow: {flows[0] if flows else 'none'}\n{checks.emulator_account(testbed)}"
        )


@pytest.mark.requirement("FLOW-IPV6")
def test_inner_ipv6_crosses_in_an_ipv4_tunnel(testbed, hosts):
    endpoint = testbed.topology.endpoints[0]
    if endpoint.consumers.cidr6 is None or endpoint.servers.cidr6 is None:
        pytest.skip(f"topology {testbed.topology.name} gives the first endpoint's hosts no IPv6 addresses")
    client6, server6 = testbed.host_address6(hosts.client), testbed.host_address6(hosts.server)
    tcp = checks.traffic(testbed, hosts.client, "tcp-client", "--host", server6, "--port", str(checks.TCP_PORT), "--size", "65536")
    udp = checks.traffic(testbed, hosts.client, "udp-client", "--host", server6, "--port", str(checks.UDP_PORT),
                         "--size", "1280", "--count", "5")
    if not tcp["intact"] or udp["received_intact"] != 5:
        raise CheckFailed(f"IPv6 through the appliance failed: TCP {tcp}, UDP {udp}\n{checks.emulator_account(testbed)}")
    for flow in checks.flows_of(testbed, PROTO_TCP, client6, tcp["local_port"]) + checks.flows_of(
        testbed, checks.PROTO_UDP, client6, udp["local_port"]
    ):
        if flow["header"][4:8] != "86dd":
            raise HarnessError(f"the emulator sent inner IPv6 with GENEVE protocol type {flow['header'][4:8]}")
        checks.expect_returned_both_ways(testbed, flow, "IPv6 flow")


@pytest.mark.requirement("FLOW-STICKINESS")
def test_flows_follow_the_target_groups_stickiness(testbed, hosts, record_property):
    """50 concurrent UDP flows between the same two hosts: one cookie each (5-tuple), or one
    shared cookie (3- and 2-tuple); either way every flow comes back intact under its cookie."""
    first = STICKY_PORTS.take(50)
    result = checks.udp_many(testbed, hosts.client, hosts.server, flows=50, rounds=3, first_port=first)
    ours = [f for f in checks.flows_of(testbed, checks.PROTO_UDP, hosts.client_address)
            if any(ip == hosts.client_address and (first <= p < first + 50 or p == 0) for ip, p in f["ends"])]
    mode = testbed.topology.gwlb.stickiness.value
    cookies = {f["cookie"] for f in ours}
    expected = 50 if mode == "five_tuple" else 1
    if len(cookies) != expected:
        raise HarnessError(f"with stickiness {mode} the emulator used {len(cookies)} cookies for 50 flows, not {expected}")
    mixups = testbed.control.get("/metrics")["mixups"]
    if mixups or result["complete_flows"] != 50:
        raise CheckFailed(
            f"with stickiness {mode}, {result['complete_flows']} of 50 concurrent flows came back intact "
            f"and {mixups} returned packets carried another flow's cookie\n{checks.emulator_account(testbed)}",
            **checks.emulator_evidence(testbed),
        )
    record_property("flows_per_target", {t: sum(1 for f in ours if f["target"] == t) for t in {f["target"] for f in ours}})
