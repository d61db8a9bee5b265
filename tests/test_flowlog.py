"""harness.emulator.flowlog: VPC-flow-log-style records written as flows leave the emulator's table.

No sockets: flows are made by a Gwlb on both data paths (the compiled cache counts the packets of
known flows itself, so the records prove its counts reach the log), with an injected clock.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

from harness.emulator import fastpath
from harness.emulator.flowlog import FIELDS, FlowLog, FlowLogRecord
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Timeouts
from harness.topology import Stickiness

ENDPOINTS = [EndpointSpec("e-a", eni_id=0x02B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, zone="a")]
TARGETS = [TargetSpec("t-a1", "10.0.1.10", "a")]
CLIENT, SERVER = "192.0.2.10", "198.51.100.20"
WALL_AT_START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=list(fastpath.Datapath), ids=lambda d: d.value)
def datapath(request: pytest.FixtureRequest) -> fastpath.Datapath:
    if request.param is fastpath.Datapath.FAST and not fastpath.AVAILABLE:
        pytest.skip(f"the compiled fast path is not built: {fastpath.IMPORT_ERROR}")
    return request.param


def _rig(datapath: fastpath.Datapath, path: Path, stickiness: Stickiness = Stickiness.FIVE_TUPLE):
    clock = Clock()
    gwlb = fastpath.gwlb_for(datapath)(ENDPOINTS, TARGETS, Settings(stickiness, Timeouts(350, 120)), clock,
                                       random.Random(7))
    gwlb.set_health(0, True)
    log = FlowLog(path, gwlb.endpoints, clock, lambda: WALL_AT_START)
    gwlb.flows.listeners.append(log)
    return gwlb, log, clock


def _records(path: Path) -> list[FlowLogRecord]:
    header, *lines = path.read_text().splitlines()
    assert header.split() == list(FIELDS)
    return [FlowLogRecord.parse(line) for line in lines]


def test_an_expired_flow_is_logged_per_direction_with_its_packets_and_bytes(tmp_path: Path, datapath: fastpath.Datapath) -> None:
    gwlb, log, clock = _rig(datapath, tmp_path / "flow-log.txt")
    request = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53) / Raw(bytes(72)))
    answer = bytes(IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=40000) / Raw(bytes(12)))
    for _ in range(3):
        gwlb.from_endpoint(0, request)
    clock.now += 5
    gwlb.from_endpoint(0, answer)
    clock.now += 121
    gwlb.tick()
    log.close([])
    assert _records(tmp_path / "flow-log.txt") == [
        FlowLogRecord("vpce-02b8ee1d4db0c51c4", CLIENT, SERVER, 40000, 53, 17, 3, 3 * len(request),
                      int(WALL_AT_START), int(WALL_AT_START + 5)),
        FlowLogRecord("vpce-02b8ee1d4db0c51c4", SERVER, CLIENT, 53, 40000, 17, 1, len(answer),
                      int(WALL_AT_START), int(WALL_AT_START + 5)),
    ]


def test_live_flows_are_written_on_close_and_silent_directions_have_no_record(tmp_path: Path, datapath: fastpath.Datapath) -> None:
    gwlb, log, _ = _rig(datapath, tmp_path / "flow-log.txt")
    gwlb.from_endpoint(0, bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=41000, dport=443, flags="S")))
    with gwlb.lock:
        log.close(gwlb.flows.flows())
    (record,) = _records(tmp_path / "flow-log.txt")
    assert (record.srcaddr, record.srcport, record.dstport, record.protocol, record.packets) == (CLIENT, 41000, 443, 6, 1)


def test_three_tuple_flows_log_no_ports(tmp_path: Path, datapath: fastpath.Datapath) -> None:
    gwlb, log, _ = _rig(datapath, tmp_path / "flow-log.txt", Stickiness.THREE_TUPLE)
    for sport in (40000, 40001):
        gwlb.from_endpoint(0, bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=sport, dport=53)))
    gwlb.from_endpoint(0, bytes(IP(src=CLIENT, dst=SERVER) / ICMP()))
    with gwlb.lock:
        log.close(gwlb.flows.flows())
    records = _records(tmp_path / "flow-log.txt")
    assert sorted((r.protocol, r.srcport, r.dstport, r.packets) for r in records) == [(1, 0, 0, 1), (17, 0, 0, 2)]


def test_a_line_with_missing_fields_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="has 3 fields, expected 14"):
        FlowLogRecord.parse("2 - vpce-1")
