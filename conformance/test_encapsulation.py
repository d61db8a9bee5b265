"""ENC: what the appliance sends back must be the GWLB's own GENEVE header, to the right port.

    consumer ──▶ endpoint ──▶ gwlb ══GENEVE══▶ appliance
                                 ◀══GENEVE══  (header byte-for-byte, dst port 6081)
"""

from __future__ import annotations

import pytest

from harness import checks, geneve
from harness.checks import PROTO_UDP, CheckFailed

DIRECTION_PAIRS = 32


@pytest.fixture(scope="module")
def udp_flow(testbed, hosts):
    result = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=256, count=5)
    flows = checks.flows_of(testbed, PROTO_UDP, hosts.client_address, result["local_port"])
    if not flows:
        raise CheckFailed(f"the emulator has no flow for the UDP exchange {result}")
    return result, flows[0]


@pytest.mark.requirement("ENC-HDR-ECHO")
def test_header_echoed_byte_for_byte(testbed, udp_flow):
    result, flow = udp_flow
    if testbed.topology.gwlb.profile.directional:
        _expect_each_direction_echoed(testbed)
    mismatch = testbed.control.get("/mismatches").get(str(flow["cookie"]))
    if mismatch:
        raise CheckFailed(
            f"returned GENEVE header differs from the one sent ({mismatch['count']} packets):\n"
            + geneve.hexdump_diff(bytes.fromhex(mismatch["expected"]), bytes.fromhex(mismatch["observed"])),
            expected_header=mismatch["expected"],
            observed_header=mismatch["observed"],
        )
    checks.expect_returned_both_ways(testbed, flow, "UDP exchange")
    if result["received_intact"] != result["sent"]:
        raise CheckFailed(f"expected {result['sent']} UDP echoes intact, got {result}\n{checks.emulator_account(testbed)}")


def _expect_each_direction_echoed(testbed):
    """Under a profile whose cookie word carries the direction (tencent), a reply must echo the
    header its own packet arrived with. An appliance that caches one header per flow gets that
    right for request-reply traffic, but not while both directions are in flight. Real traffic
    makes that overlap only by chance (the GWLB paces it), so an injector in the GWLB's namespace
    sends one flow's packets from both ends, alternating, in a burst."""
    profile = testbed.topology.gwlb.profile
    endpoint = testbed.topology.endpoints[0]
    for target, result in checks.inject_each_target(testbed, endpoint, "both-directions", count=DIRECTION_PAIRS):
        if not result["echoed"]:
            raise CheckFailed(f"{target.name} returned none of {result['sent']} packets of one flow sent from both of its ends")
        if result["wrong_direction"] or result["changed"]:
            raise CheckFailed(
                f"profile {profile.name}: of {result['echoed']} packets of one flow sent from both of its ends, "
                f"{target.name} returned {result['wrong_direction']} with the other direction's header (its "
                f"{profile.direction_bits} direction bits in the cookie word) and {result['changed']} with a header "
                "matching neither direction; each packet's own header must be echoed:\n"
                + geneve.hexdump_diff(bytes.fromhex(result["expected_header"]), bytes.fromhex(result["observed_header"])),
                expected_header=result["expected_header"],
                observed_header=result["observed_header"],
            )


@pytest.mark.requirement("ENC-DST-PORT")
def test_replies_go_to_port_6081(testbed, udp_flow):
    _, flow = udp_flow
    dropped = testbed.control.get("/metrics")["drops"].get("dst_port", 0)
    if dropped:
        raise CheckFailed(f"{dropped} returned packets were sent to a UDP port other than 6081\n{checks.emulator_account(testbed)}")
    checks.expect_returned_both_ways(testbed, flow, "UDP exchange")


@pytest.mark.requirement("ENC-SRC-PORT")
def test_source_port_kept(testbed, udp_flow):
    _, flow = udp_flow
    checks.expect_returned_both_ways(testbed, flow, "UDP exchange")
    changed = testbed.control.get("/metrics")["source_port_changed"]
    if changed:
        raise CheckFailed(f"{changed} returned packets came from a UDP source port other than the GWLB's ({flow['source_port']} for this flow)")


@pytest.mark.requirement("ENC-UNKNOWN-OPTION")
def test_unknown_non_critical_option_echoed(testbed):
    """A GWLB never sends other options, so this comes from an injector in the GWLB's namespace."""
    for target, result in checks.inject_each_target(testbed, testbed.topology.endpoints[0], "extra-option"):
        if not result["echoed"]:
            vendor = testbed.topology.gwlb.profile.layout.vendor
            raise CheckFailed(f"{target.name} returned none of 3 packets carrying an unknown non-critical option after {vendor}'s three")
        wrong = [h for h in result["echoed_headers"] if h != result["sent_header"]]
        if wrong:
            raise CheckFailed(
                f"{target.name} changed the header of a packet with an unknown non-critical option:\n"
                + geneve.hexdump_diff(bytes.fromhex(result["sent_header"]), bytes.fromhex(wrong[0])),
                expected_header=result["sent_header"],
                observed_header=wrong[0],
            )
