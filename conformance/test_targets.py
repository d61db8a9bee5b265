"""HC and REB: the appliance under health checks, failover, scale-out, draining and rebalancing,
always with traffic flowing during the event.

    consumer ══ TCP stream ══▶ gwlb ──▶ a1  (stopped, restarted, deregistered ...)
                                   └──▶ a2  (takes over)       a3: spare, registered by scale-out

These checks change the target group, so they run last (file order) and each one puts the
testbed back as it found it.
"""

from __future__ import annotations

import pytest

from harness import checks
from harness.checks import CheckFailed, target_view, wait_for
from harness.errors import HarnessError

STARTUP_ALLOWANCE_S = 5.0
TOLERANCE_S = 1.0


@pytest.fixture
def probe(testbed):
    return testbed.probe


@pytest.fixture
def restore(testbed):
    """After a check: every appliance running, the usual targets registered and healthy."""
    yield
    testbed.restore_targets()


def _registered(testbed):
    return [t.name for t in testbed.targets if t.registered]


FRESH_PORTS = checks.FreshPorts()


def _new_flow_targets(testbed, hosts, flows=60):
    """Targets that new UDP flows from the client land on (and whether they all came back)."""
    first = FRESH_PORTS.take(flows)
    result = checks.udp_many(testbed, hosts.client, hosts.server, flows=flows, rounds=1, first_port=first)
    ports = range(first, first + flows)
    fresh = [f for f in checks.flows_of(testbed, checks.PROTO_UDP, hosts.client_address)
             if any(ip == hosts.client_address and p in ports for ip, p in f["ends"])]
    return {f["target"] for f in fresh}, result


@pytest.mark.requirement("HC-PROBES-UNDER-LOAD")
def test_health_probes_answered_under_load(testbed, hosts, probe):
    before = {t["name"]: t["failed_probes"] for t in testbed.control.get("/targets")}
    duration = probe.interval_s * 2 + probe.timeout_s
    result = checks.traffic(testbed, hosts.client, "udp-many", "--host", hosts.server_address, "--port", str(checks.UDP_PORT),
                            "--flows", "200", "--duration", str(duration), timeout_s=duration + 30)
    wait_for(lambda: False, probe.timeout_s + 0.2)
    after = testbed.control.get("/targets")
    failed = {t["name"]: t["failed_probes"] - before[t["name"]] for t in after if t["name"] in _registered(testbed)}
    if any(failed.values()):
        last = {t["name"]: t["last_probe"] for t in after}
        raise CheckFailed(
            f"health probes failed while traffic flowed ({result['echoes_intact']} echoes in ~{duration:.1f} s): "
            f"failed probes per target {failed}; last probe results {last}"
        )


@pytest.mark.requirement("HC-FAILOVER")
def test_killed_appliance_fails_over_and_recovers(testbed, hosts, new_flows, probe, restore, record_property):
    victim = _registered(testbed)[0]
    sampler = checks.TargetSampler(testbed)
    try:
        with sampler:
            _fail_over_and_recover(testbed, hosts, probe, victim, record_property)
    finally:
        record_property("failover_timeline", sampler.timeline())


def _fail_over_and_recover(testbed, hosts, probe, victim, record_property):
    failover_limit = probe.interval_s * probe.unhealthy_threshold + probe.interval_s + probe.timeout_s + TOLERANCE_S
    recovery_limit = probe.interval_s * probe.healthy_threshold + probe.interval_s + STARTUP_ALLOWANCE_S
    # Background traffic for the timeline; it is stopped once the check is done, at the latest after both limits.
    background = checks.Background.traffic(testbed, hosts.other_client, [
        "udp-many", "--host", hosts.server_address, "--port", str(checks.UDP_PORT), "--flows", "20",
        "--duration", str(1 + failover_limit + recovery_limit + 5), "--timeout", "0.2",
        "--first-port", str(FRESH_PORTS.take(20))])
    try:
        checks.wait_for(lambda: False, 1.0)
        testbed.kill_appliance(victim)
        detected = wait_for(lambda: target_view(testbed, victim)["health"] == "unhealthy", failover_limit)
        if detected is None:
            view = target_view(testbed, victim)
            raise CheckFailed(
                f"{victim}'s appliance was killed, but its health checks still pass {failover_limit:.1f} s later "
                f"(interval {probe.interval_s:g} s x unhealthy threshold {probe.unhealthy_threshold} + one interval): "
                f"state {view['health']}, last probe: {view['last_probe']}"
            )
        record_property("failover_s", round(detected, 2))
        targets, result = _new_flow_targets(testbed, hosts)
        if victim in targets or result["complete_flows"] != result["flows"]:
            raise CheckFailed(f"after failover, new flows went to {sorted(targets)} (not to {victim} expected), traffic: {result}")
        testbed.start_appliance(victim)
        recovered = wait_for(lambda: target_view(testbed, victim)["health"] == "healthy", recovery_limit)
        if recovered is None:
            raise CheckFailed(
                f"{victim} did not become healthy again within {recovery_limit:.1f} s of its restart: {target_view(testbed, victim)}"
            )
        record_property("recovery_s", round(recovered, 2))
        targets, result = _new_flow_targets(testbed, hosts, flows=100)
        if victim not in targets or result["complete_flows"] != result["flows"]:
            raise CheckFailed(f"after recovery, new flows went to {sorted(targets)} ({victim} expected among them), traffic: {result}")
    finally:
        background.stop()


@pytest.mark.requirement("HC-DATAPLANE")
def test_health_reflects_a_dead_data_plane(testbed, hosts, probe):
    checks.udp_many(testbed, hosts.client, hosts.server, flows=40, rounds=1, round_timeout_s=probe.interval_s)
    wait_for(lambda: False, probe.interval_s * probe.unhealthy_threshold + probe.interval_s)
    silent = {}
    for flow in testbed.control.get("/flows"):
        if flow["protocol"] == checks.PROTO_UDP:
            sent, back = silent.get(flow["target"], (0, 0))
            silent[flow["target"]] = (sent + sum(flow["packets"]), back + sum(flow["returned"]))
    dead = [name for name, (sent, back) in silent.items() if sent and not back]
    still_healthy = [name for name in dead if target_view(testbed, name)["health"] == "healthy"]
    if still_healthy:
        raise CheckFailed(
            f"{', '.join(still_healthy)} returned none of the packets sent to them, yet their health checks still pass: "
            f"a GWLB keeps sending new flows to a dead data plane\n{checks.emulator_account(testbed)}"
        )


@pytest.mark.requirement("REB-SCALE-OUT")
def test_scale_out_keeps_existing_flows_and_spreads_new_ones(testbed, hosts, new_flows, restore):
    spare = next((t.name for t in testbed.targets if not t.registered), None)
    if spare is None:
        raise HarnessError("the testbed has no spare target to register")
    stream = checks.tcp_stream(testbed, hosts.other_client, hosts.server, duration_s=3.0, source_port=FRESH_PORTS.take(1))
    before = {f["cookie"]: f["target"] for f in testbed.control.get("/flows")}
    testbed.control.post(f"/targets/{spare}/register")
    testbed.wait_healthy(STARTUP_ALLOWANCE_S)
    targets, result = _new_flow_targets(testbed, hosts, flows=150)
    moved = {c: (t, now) for c, now in ((f["cookie"], f["target"]) for f in testbed.control.get("/flows"))
             if c in before and (t := before[c]) != now}
    outcome = stream.result()
    if moved:
        raise HarnessError(f"the emulator moved existing flows on scale-out: {moved}")
    if spare not in targets or result["complete_flows"] != result["flows"]:
        raise CheckFailed(f"after registering {spare}, new flows went to {sorted(targets)} and traffic gave {result}")
    if not outcome["survived"]:
        raise CheckFailed(f"a TCP connection open during the scale-out broke: {outcome}\n{checks.emulator_account(testbed)}")


@pytest.mark.requirement("REB-DRAIN")
def test_deregistered_target_drains(testbed, hosts, new_flows, restore):
    delay = testbed.deregistration_delay_s
    port = FRESH_PORTS.take(1)
    stream = checks.tcp_stream(testbed, hosts.other_client, hosts.server, duration_s=delay * 0.8, source_port=port)
    flow = checks.wait_for_connection(testbed, hosts.other_client, port)
    if flow is None:
        raise CheckFailed(f"the TCP stream did not start: {stream.result()}")
    victim = flow["target"]
    testbed.control.post(f"/targets/{victim}/deregister")
    targets, result = _new_flow_targets(testbed, hosts)
    outcome = stream.result(timeout_s=delay + 30)
    if victim in targets:
        raise HarnessError(f"the emulator sent new flows to draining target {victim}")
    if not outcome["survived"]:
        raise CheckFailed(f"a connection on {victim} broke while {victim} was draining: {outcome}\n{checks.emulator_account(testbed)}")
    if result["complete_flows"] != result["flows"]:
        raise CheckFailed(f"new flows during the drain did not all come back: {result}")
    gone = wait_for(lambda: target_view(testbed, victim)["state"] == "unused", delay + 2)
    if gone is None:
        raise HarnessError(f"{victim} is still {target_view(testbed, victim)['state']} after the {delay:g} s deregistration delay")


@pytest.fixture
def rebalance(testbed):
    """target_failover = rebalance for one check (AWS lets it change on a live target group)."""
    testbed.control.post("/attributes/target_failover/rebalance")
    yield
    testbed.control.post(f"/attributes/target_failover/{'rebalance' if testbed.topology.gwlb.rebalance else 'no_rebalance'}")


@pytest.mark.requirement("REB-REBALANCE-MIDSTREAM")
def test_rebalanced_flow_continues_mid_stream(testbed, hosts, new_flows, probe, rebalance, restore, record_property):
    failover = probe.interval_s * probe.unhealthy_threshold + probe.interval_s + probe.timeout_s + TOLERANCE_S
    port = FRESH_PORTS.take(1)
    # After an outage of up to `failover`, TCP's doubling retransmission timer may wait about as long again.
    stall = 2 * failover + 3
    stream = checks.tcp_stream(testbed, hosts.other_client, hosts.server, duration_s=failover + 3, source_port=port,
                               stall_s=stall)
    flow = checks.wait_for_connection(testbed, hosts.other_client, port)
    if flow is None:
        raise CheckFailed(f"the TCP stream did not start: {stream.result()}")
    victim = flow["target"]
    testbed.kill_appliance(victim)
    outcome = stream.result(timeout_s=stall + 40)
    now = next(f for f in testbed.control.get("/flows") if f["cookie"] == flow["cookie"])
    if now["target"] == victim:
        raise HarnessError(f"the emulator did not rebalance the flow away from failed target {victim}")
    if not outcome["survived"]:
        raise CheckFailed(
            f"the TCP connection moved mid-stream from {victim} to {now['target']} (no new handshake) and broke: "
            f"{outcome}\n{checks.emulator_account(testbed)}"
        )
    record_property("rebalance_gap_s", outcome["max_gap_s"])
