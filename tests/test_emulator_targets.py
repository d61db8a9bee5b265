"""Target-group membership in the emulated GWLB: scale-out, draining, failover with and without
rebalance (AWS `target_failover.on_unhealthy` / `on_deregistration`).

    endpoint (zone a) ──► Gwlb ──► t-a1, t-a2 (zone a)      t-b1 (zone b, out of scope)
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from scapy.layers.inet import IP, TCP, UDP

from harness.emulator.core import Delivery, DropReason, Gwlb
from harness.emulator.specs import Settings, TargetSpec
from harness.emulator.targets import NoTarget, TargetPool
from harness.flows import Timeouts
from harness.topology import Stickiness
from tests.test_emulator_core import ENDPOINTS, TARGETS, Clock, back, send

BASE = Settings(Stickiness.FIVE_TUPLE, Timeouts(350, 120), deregistration_delay_s=10)


def udp(sport: int) -> bytes:
    return bytes(IP(src="192.0.2.10", dst="198.51.100.20") / UDP(sport=sport, dport=53))


def gwlb_with(clock: Clock, registered=(0, 1, 2), healthy=(0, 1, 2), **settings: object) -> Gwlb:
    gwlb = Gwlb(ENDPOINTS, TARGETS, replace(BASE, **settings), clock, random.Random(7), registered=registered)
    for target in healthy:
        gwlb.set_health(target, True)
    return gwlb


def targets_of(gwlb: Gwlb, ports: range) -> set[int]:
    return {send(gwlb, udp(p)).target for p in ports}


def test_unregistered_target_gets_no_flows_until_registered() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, registered=(0,))
    before = {p: send(gwlb, udp(p)).target for p in range(1000, 1100)}
    assert set(before.values()) == {0}
    gwlb.register(1)
    assert targets_of(gwlb, range(2000, 2100)) == {0, 1}
    assert {p: send(gwlb, udp(p)).target for p in range(1000, 1100)} == before, "scale-out moved existing flows"


def test_draining_target_keeps_its_flows_but_gets_no_new_ones_until_the_delay_ends() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock)
    on_one = [p for p in range(1000, 1100) if send(gwlb, udp(p)).target == 1]
    gwlb.deregister(1)
    assert gwlb.pool.registration(1) == "draining"
    assert targets_of(gwlb, range(3000, 3100)) == {0}
    assert {send(gwlb, udp(p)).target for p in on_one} == {1}
    clock.now[0] += 10.5
    gwlb.tick()
    assert gwlb.pool.registration(1) == "unused"
    assert {send(gwlb, udp(p)).target for p in on_one} == {0}, "after the delay the flows start anew elsewhere"


def test_deregistration_ends_existing_tcp_flows_without_rebalance() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, registered=(0, 1), healthy=(0, 1))
    syns = [bytes(IP(src="192.0.2.10", dst="198.51.100.20") / TCP(sport=p, dport=80, flags="S")) for p in range(1000, 1040)]
    on_one = [syn for syn in syns if send(gwlb, syn).target == 1]
    gwlb.deregister(1)
    clock.now[0] += 11
    gwlb.tick()
    ack = IP(on_one[0])
    ack[TCP].flags = "A"
    assert gwlb.from_endpoint(0, bytes(ack)) is DropReason.REJECTED_TCP


def test_unhealthy_target_keeps_its_flows_without_rebalance() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock)
    flows = {p: send(gwlb, udp(p)).target for p in range(1000, 1100)}
    gwlb.set_health(1, False)
    assert {p: send(gwlb, udp(p)).target for p in flows} == flows
    assert targets_of(gwlb, range(4000, 4100)) == {0}


def test_rebalance_moves_only_the_failed_targets_flows_and_keeps_their_cookies() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, rebalance=True)
    sent = {p: send(gwlb, udp(p)) for p in range(1000, 1100)}
    gwlb.set_health(1, False)
    after = {p: send(gwlb, udp(p)) for p in sent}
    for port, first in sent.items():
        if first.target == 1:
            assert after[port].target == 0
        else:
            assert after[port].target == first.target
        assert after[port].payload == first.payload, "the flow keeps its header (cookie) when it moves"
    moved = next(p for p, s in sent.items() if s.target == 1)
    assert back(gwlb, after[moved]) == Delivery(0, udp(moved))
    assert back(gwlb, sent[moved]) is DropReason.WRONG_TARGET, "the old target no longer owns the flow"
    assert gwlb.metrics.rebalanced_flows == sum(1 for s in sent.values() if s.target == 1)


def test_rebalance_on_deregistration_happens_after_the_delay() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, rebalance=True)
    on_one = [p for p in range(1000, 1100) if send(gwlb, udp(p)).target == 1]
    gwlb.deregister(1)
    assert {send(gwlb, udp(p)).target for p in on_one} == {1}
    clock.now[0] += 10.5
    gwlb.tick()
    assert {send(gwlb, udp(p)).target for p in on_one} == {0}


def test_all_unhealthy_pins_new_flows_to_some_registered_target() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, healthy=())
    assert targets_of(gwlb, range(1000, 1200)) == {0, 1}


def test_no_registered_target_drops_with_a_reason() -> None:
    clock = Clock()
    gwlb = gwlb_with(clock, registered=(2,), healthy=(2,))
    assert gwlb.from_endpoint(0, udp(1000)) is DropReason.NO_TARGET


def test_pool_states() -> None:
    clock = Clock()
    pool = TargetPool([TargetSpec("t", "10.0.0.1", "a")], (), False, clock, random.Random(1))
    assert pool.registration(0) == "unused"
    with pytest.raises(NoTarget):
        pool.choose("a", 0)
    pool.register(0)
    assert pool.choose("a", 12345) == 0
    pool.deregister(0, 0)
    assert pool.drained() == [0]
    assert pool.registration(0) == "unused"
