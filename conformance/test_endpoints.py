"""FLOW across endpoints: flows of different GWLB endpoints never mix, even when their consumer
address ranges overlap and their 5-tuples are identical.

    c1 10.0.1.10 ── gwlbe1 ──┐                      ┌── a1
                             ├── gwlb ══GENEVE══════┤      same 5-tuple, different ENI IDs
    d1 10.0.1.10 ── gwlbe2 ──┘                      └── a2
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from harness import checks
from harness.checks import CheckFailed

SHARED_SOURCE_PORT = 31002


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
