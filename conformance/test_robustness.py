"""ROB: malformed GENEVE sent straight to the appliance (a GWLB never sends it, an attacker on the
appliance subnet might). The appliance must survive it and keep valid flows working (MUST), and
should drop it rather than send it back (SHOULD).

    gwlb node ── injector ══ bad version, truncated, overruns, critical option, ... ══▶ a1, a2
    consumer ══ valid flows ══▶ gwlb ══▶ a1, a2       (before, during and after)
"""

from __future__ import annotations

import pytest

from harness import checks, inject
from harness.checks import CheckFailed, target_view

VALID_FLOWS = 30
FLOOD_S = 3.0
FLOOD_PPS = 10000
FLOOD_DELIVERY_FLOOR = 0.5


def _registered(testbed):
    return [t for t in testbed.targets if t.registered]


def _health_views(testbed):
    return {target.name: target_view(testbed, target.name) for target in _registered(testbed)}


def _wait_for_a_probe(testbed, before):
    """Until every target has had a health probe since `before` (at most two intervals), so that
    health is judged on a probe that saw the appliance after what it was sent."""
    def probed():
        return all(view["probes"] > before[name]["probes"] for name, view in _health_views(testbed).items())
    checks.wait_for(probed, 2 * testbed.probe.interval_s + testbed.probe.timeout_s)


def _expect_still_serving(testbed, hosts, after):
    for target in _registered(testbed):
        if not testbed.appliances[target.name].alive():
            raise CheckFailed(f"{target.name}'s appliance {testbed.appliances[target.name].describe_exit()} after {after}")
        view = target_view(testbed, target.name)
        if view["health"] != "healthy":
            raise CheckFailed(f"{target.name} is {view['health']} after {after}: last probe {view['last_probe']}")
    result = checks.udp_many(testbed, hosts.client, hosts.server, flows=VALID_FLOWS, rounds=1)
    if result["complete_flows"] != VALID_FLOWS:
        raise CheckFailed(f"valid flows failed after {after}: {result}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("ROB-MALFORMED-SURVIVE")
@pytest.mark.parametrize("kind", sorted(inject.KINDS))
def test_appliance_survives_malformed_geneve(testbed, hosts, kind):
    before = _health_views(testbed)
    checks.inject_each_target(testbed, testbed.topology.endpoints[0], kind, count=5, listen_s=0.2)
    _wait_for_a_probe(testbed, before)
    _expect_still_serving(testbed, hosts, f"5 '{kind}' packets")


@pytest.mark.requirement("ROB-MALFORMED-NOT-ECHOED")
@pytest.mark.parametrize("kind", sorted(set(inject.KINDS) - {"random-bytes"}))
def test_malformed_geneve_is_not_echoed(testbed, kind):
    for target, result in checks.inject_each_target(testbed, testbed.topology.endpoints[0], kind):
        if result["echoed"]:
            raise CheckFailed(f"{target.name} sent {result['echoed']} of {result['sent']} '{kind}' packets back instead of dropping them")


@pytest.mark.requirement("ROB-FLOOD")
def test_garbage_flood_does_not_starve_valid_flows(testbed, hosts):
    endpoint = testbed.topology.endpoints[0]
    floods = [
        checks.Background(testbed, "gwlb", checks.inject_command(
            testbed, target, endpoint, "flood", "--duration", str(FLOOD_S), "--rate", str(FLOOD_PPS)))
        for target in _registered(testbed)
    ]
    checks.wait_for(lambda: False, 0.3)
    during = checks.udp_exchange(testbed, hosts.client, hosts.server, inner_size=256, count=40, timeout_s=FLOOD_S - 0.5)
    rates = [flood.result(timeout_s=FLOOD_S + 30) for flood in floods]
    delivered = during["received_intact"] / during["sent"]
    if delivered < FLOOD_DELIVERY_FLOOR:
        raise CheckFailed(
            f"during a flood of malformed GENEVE ({', '.join(str(r['pps']) + ' pps' for r in rates)}), only "
            f"{during['received_intact']} of {during['sent']} valid UDP echoes came back (at least "
            f"{FLOOD_DELIVERY_FLOOR:.0%} expected)"
        )
    _expect_still_serving(testbed, hosts, "the flood")
