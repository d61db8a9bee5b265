"""FLOW across endpoints: flows of different GWLB endpoints never mix, even when their consumer
address ranges overlap and their 5-tuples are identical; and an endpoint created while traffic
flows (`joins: late` in the topology) works at once without disturbing the running flows.

    c1 10.0.1.10 ── gwlbe1 ──┐                      ┌── a1
                             ├── gwlb ══GENEVE══════┤      same 5-tuple, different ENI IDs
    d1 10.0.1.10 ── gwlbe2 ──┘                      └── a2
    e1 ─ ─ ─ ─ ─ ─ gwlbe9 ─ ─┘  (joins while c1's flows run)
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from harness import checks, geneve
from harness.checks import CheckFailed
from harness.errors import HarnessError

SHARED_SOURCE_PORT = 31002
LATE_PORTS = checks.FreshPorts(31100, 31499)
SPREAD_FLOWS = 16
"""UDP flows before and after the join: enough that every target carries some (2^-15 that two do not)."""
RUNNING_S = 8.0
SETTLE_S = 1.0


@pytest.fixture(scope="module")
def overlapping(testbed):
    """Two endpoints whose consumer subnets overlap, with echo servers behind each."""
    endpoints = testbed.topology.endpoints
    for i, first in enumerate(endpoints):
        for second in endpoints[i + 1 :]:
            if first.consumers.cidr.overlaps(second.consumers.cidr) and first.servers.cidr == second.servers.cidr:
                for endpoint in (first, second):
                    checks.start_echo_servers(testbed, endpoint.servers.hosts[0])
                    checks.wait_for_servers(testbed, endpoint.servers.hosts[0])
                return first, second
    pytest.skip(f"topology {testbed.topology.name} has no two endpoints with overlapping address ranges")


@pytest.mark.requirement("FLOW-MULTI-ENDPOINT")
def test_identical_flows_of_two_endpoints_stay_apart(testbed, overlapping):
    start_at = time.time() + 1.0

    def exchange(endpoint):
        return checks.udp_exchange(testbed, endpoint.consumers.hosts[0], endpoint.servers.hosts[0], inner_size=256,
                                   count=50, source_port=SHARED_SOURCE_PORT, tag=endpoint.name, timeout_s=3.0,
                                   start_at=start_at)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(exchange, overlapping))
    for endpoint, result in zip(overlapping, results):
        if result["received_intact"] != result["sent"] or result["damaged"]:
            raise CheckFailed(
                f"{endpoint.name}'s consumer sent {result['sent']} UDP packets from port {SHARED_SOURCE_PORT} while "
                f"another endpoint's identical flow ran; it got {result['received_intact']} of its own echoes back "
                f"intact and {result['damaged']} foreign or damaged ones\n{checks.emulator_account(testbed)}"
            )


@pytest.fixture(scope="module")
def late_endpoint(testbed):
    if not testbed.topology.late_endpoints:
        pytest.skip(f"topology {testbed.topology.name} declares no endpoint that joins late (joins: late)")
    return testbed.topology.late_endpoints[0]


def _cookies(testbed, address, ports):
    """Cookie of each flow from `address` with one of `ports` as its source port."""
    return {port: f["cookie"] for f in checks.flows_of(testbed, checks.PROTO_UDP, address) + checks.flows_of(testbed, checks.PROTO_TCP, address)
            for ip, port in f["ends"] if ip == address and port in ports}


@pytest.mark.requirement("FLOW-LATE-ENDPOINT")
def test_endpoint_created_while_traffic_flows(testbed, hosts, late_endpoint, record_property):
    """UDP flows on every target and a TCP connection run through the first endpoint; the late
    endpoint joins; its flows must work at once, and the running ones go on with their cookies."""
    spread = LATE_PORTS.take(SPREAD_FLOWS)
    stream_port = LATE_PORTS.take(1)
    before = checks.udp_many(testbed, hosts.client, hosts.server, flows=SPREAD_FLOWS, rounds=1, first_port=spread)
    stream = checks.tcp_stream(testbed, hosts.other_client, hosts.server, RUNNING_S, stream_port)
    if checks.wait_for_connection(testbed, hosts.other_client, stream_port) is None:
        raise HarnessError(f"the TCP stream from {hosts.other_client}:{stream_port} never reached the GWLB")
    checks.wait_for(lambda: False, SETTLE_S)
    ports = {*range(spread, spread + SPREAD_FLOWS)}
    cookies = _cookies(testbed, hosts.client_address, ports) | _cookies(testbed, testbed.host_address(hosts.other_client), {stream_port})

    endpoint = testbed.join_endpoint(late_endpoint.name)
    client, server = endpoint.consumers.hosts[0], endpoint.servers.hosts[0]
    checks.start_echo_servers(testbed, server)
    checks.wait_for_servers(testbed, server)
    fresh = checks.udp_many(testbed, client, server, flows=SPREAD_FLOWS, rounds=3, first_port=LATE_PORTS.take(SPREAD_FLOWS))
    tcp = checks.tcp_exchange(testbed, client, server, size=65536)
    address = testbed.host_address(client)
    late_flows = [f for f in testbed.control.get("/flows")
                  if f["endpoint"] == endpoint.name and any(ip == address for ip, _ in f["ends"])]
    record_property("late_endpoint_flows_per_target",
                    {t: sum(1 for f in late_flows if f["target"] == t) for t in sorted({f["target"] for f in late_flows})})
    eni = geneve.format_eni(endpoint.eni_id)
    if fresh["complete_flows"] != fresh["flows"] or not tcp["intact"]:
        raise CheckFailed(
            f"endpoint {endpoint.name} ({eni}, attachment {endpoint.attachment_id:#018x}) was created while traffic "
            f"flowed; through it {fresh['complete_flows']} of {fresh['flows']} new UDP flows came back complete "
            f"({fresh['echoes_intact']} of {fresh['flows'] * fresh['rounds']} echoes) and a 64 KiB TCP exchange "
            f"{'came back intact' if tcp['intact'] else 'failed: ' + str(tcp)}; its flows per target (packets sent, "
            f"returned): {_per_target(late_flows)}\n{checks.emulator_account(testbed)}",
            **checks.emulator_evidence(testbed),
        )
    for flow in late_flows:
        meta = testbed.topology.gwlb.profile.metadata(geneve.GeneveHeader.decode(bytes.fromhex(flow["header"])))
        if (meta.eni_id, meta.attachment_id) != (endpoint.eni_id, endpoint.attachment_id):
            raise HarnessError(f"the emulator sent {endpoint.name}'s flow with ENI {geneve.format_eni(meta.eni_id)}, "
                               f"attachment {meta.attachment_id:#018x}")
        checks.expect_returned_both_ways(testbed, flow, f"a flow through late endpoint {endpoint.name} ({eni})")

    after = checks.udp_many(testbed, hosts.client, hosts.server, flows=SPREAD_FLOWS, rounds=2, first_port=spread)
    running = stream.result(timeout_s=RUNNING_S + 30)
    kept = _cookies(testbed, hosts.client_address, ports) | _cookies(testbed, testbed.host_address(hosts.other_client), {stream_port})
    if not running["survived"] or after["complete_flows"] != after["flows"]:
        raise CheckFailed(
            f"after endpoint {endpoint.name} joined, the flows that were running through {testbed.topology.endpoints[0].name} "
            f"broke: TCP connection from port {stream_port}: {running}; {after['complete_flows']} of {after['flows']} "
            f"UDP flows (complete before the join: {before['complete_flows']}) came back complete\n"
            f"{checks.emulator_account(testbed)}",
            **checks.emulator_evidence(testbed),
        )
    if kept != cookies:
        raise HarnessError(f"the emulator changed running flows' cookies when {endpoint.name} joined: {cookies} -> {kept}")


def _per_target(flows):
    totals = {}
    for flow in flows:
        sent, returned = totals.get(flow["target"], (0, 0))
        totals[flow["target"]] = (sent + sum(flow["packets"]), returned + sum(flow["returned"]))
    return totals or "none (no flow reached the GWLB)"
