"""Shared fixtures of the conformance suite. The `testbed` fixture itself comes from the harness
(harness/suite.py), which builds the testbed before pytest starts and removes it afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness import checks
from harness.testbed import Testbed
from harness.topology import Stickiness


@dataclass(frozen=True)
class Hosts:
    """A consumer, a second consumer and a server behind the first endpoint."""

    client: str
    client_address: str
    other_client: str
    server: str
    server_address: str


@pytest.fixture
def new_flows(testbed: Testbed) -> None:
    """Skips checks that open new flows between the same two hosts, which only 5-tuple stickiness
    tells apart (under 3- and 2-tuple stickiness they all join one existing flow)."""
    if testbed.topology.gwlb.stickiness is not Stickiness.FIVE_TUPLE:
        pytest.skip(f"needs new flows between the same hosts; topology {testbed.topology.name} is not five_tuple"
                    + checks.forced_stickiness_note(testbed))


@pytest.fixture(scope="session")
def hosts(testbed: Testbed) -> Hosts:
    endpoint = testbed.topology.endpoints[0]
    consumers, server = endpoint.consumers.hosts, endpoint.servers.hosts[0]
    checks.start_echo_servers(testbed, server)
    checks.wait_for_servers(testbed, server)
    return Hosts(
        client=consumers[0],
        client_address=testbed.host_address(consumers[0]),
        other_client=consumers[-1],
        server=server,
        server_address=testbed.host_address(server),
    )
