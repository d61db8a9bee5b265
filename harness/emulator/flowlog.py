"""VPC-flow-log-style records of the emulated GWLB's flows.

A Gateway Load Balancer has no access logs (SPEC §3.5); what an AWS user reads instead is a VPC
flow log of the GWLB endpoint's network interface. The emulator writes the same kind of record so
that a run can be inspected with the tools and habits people already have: the default (version 2)
field list, space separated, a header line first, one record per flow and direction with the
packets and bytes that entered the GWLB in that direction.

A record is written when its flow leaves the flow table (idle timeout, TCP reuse, end of a
deregistration) and, for flows still live, when the emulator stops; AWS aggregates into capture
windows instead, which only matters for flows longer than a window. Fields AWS fills from its
account data have no value here and read `-`, as AWS writes missing data. The interface ID is the
endpoint's ID as gwlbtun prints it; ports are 0 where the stickiness in force does not key on them
(3- and 2-tuple flows), and the protocol is 0 under 2-tuple stickiness.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import geneve
from harness.emulator.specs import EndpointSpec
from harness.flows import Flow

FILE_NAME = "flow-log.txt"
"""Its name in the run folder (the testbed asks the emulator to write it there)."""
FIELDS = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
          "packets", "bytes", "start", "end", "action", "log-status")


@dataclass(frozen=True)
class FlowLogRecord:
    interface_id: str
    srcaddr: str
    dstaddr: str
    srcport: int
    dstport: int
    protocol: int
    packets: int
    bytes: int
    start: int
    end: int

    def line(self) -> str:
        return (f"2 - {self.interface_id} {self.srcaddr} {self.dstaddr} {self.srcport} {self.dstport} {self.protocol} "
                f"{self.packets} {self.bytes} {self.start} {self.end} ACCEPT OK")

    @classmethod
    def parse(cls, line: str) -> FlowLogRecord:
        """The record of one line written by `line`; a ValueError names what is wrong."""
        values = line.split()
        if len(values) != len(FIELDS):
            raise ValueError(f"flow log record has {len(values)} fields, expected {len(FIELDS)}: {line!r}")
        interface_id, srcaddr, dstaddr = values[2:5]
        srcport, dstport, protocol, packets, size, start, end = (int(v) for v in values[5:12])
        return cls(interface_id, srcaddr, dstaddr, srcport, dstport, protocol, packets, size, start, end)


def flow_records(flow: Flow, endpoints: Sequence[EndpointSpec], to_wall: Callable[[float], int]) -> list[FlowLogRecord]:
    """The flow's records, initiator's direction first; a direction that carried nothing has none."""
    first, second = flow.key.low, flow.key.high
    if first[0] != flow.initiator:
        first, second = second, first
    interface = geneve.format_eni(endpoints[flow.key.endpoint].eni_id)
    start, end = to_wall(flow.created), to_wall(flow.last_seen)
    records = []
    for direction, (source, destination) in enumerate(((first, second), (second, first))):
        if flow.packets[direction]:
            records.append(FlowLogRecord(
                interface, str(ipaddress.ip_address(source[0])), str(ipaddress.ip_address(destination[0])),
                source[1], destination[1], flow.key.protocol, flow.packets[direction], flow.octets[direction], start, end,
            ))
    return records


class FlowLog:
    """A FlowListener that appends each retired flow's records to a file.

    `endpoints` is the emulator's own list, so endpoints added at run time are known by index too.
    Monotonic flow times become Unix seconds through the offset between the two clocks at start.
    """

    def __init__(self, path: Path, endpoints: Sequence[EndpointSpec], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._endpoints = endpoints
        self._offset = wall() - clock()
        self._file = path.open("w", encoding="ascii", buffering=1)
        self._file.write(" ".join(FIELDS) + "\n")

    def retired(self, flow: Flow) -> None:
        self._write(flow)

    def moved(self, flow: Flow) -> None:
        """A rebalanced flow keeps its record: AWS keeps the flow, only its target changes."""

    def close(self, live: Iterable[Flow]) -> None:
        """Write the flows still in the table and close the file."""
        for flow in live:
            self._write(flow)
        self._file.close()

    def _write(self, flow: Flow) -> None:
        for record in flow_records(flow, self._endpoints, self._to_wall):
            self._file.write(record.line() + "\n")

    def _to_wall(self, monotonic: float) -> int:
        return int(monotonic + self._offset)
