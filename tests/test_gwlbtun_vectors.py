"""The emulator against bytes nobody here wrote: AWS's gwlbtun v3.0 (tests/data/gwlbtun-v3.0-route.pcap).

For every request in the capture that a GWLB could send (the three AWS options, an inner packet of
at most 8500 bytes), a Gwlb given the same endpoint IDs and the same cookie must

- encapsulate the request's inner packet into exactly the request's GENEVE header, and
- accept gwlbtun's real reply (outer TTL 2, UDP checksum 0, the GWLB's source port kept, inner
  TTL decremented by the appliance's routing) and deliver its inner packet unchanged,

on both data paths, in the default and in strict mode. This is SPEC §6's "a correct, widely deployed
appliance must not fail a MUST", checked on its real traffic rather than on our reading of it.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap

from harness import geneve
from harness.emulator import fastpath
from harness.emulator.core import MAX_INNER, Delivery, Encapsulated
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Timeouts
from harness.topology import Stickiness

PCAP = Path(__file__).parent / "data" / "gwlbtun-v3.0-route.pcap"
GWLB, APPLIANCE = "192.168.100.1", "192.168.100.11"


@dataclass(frozen=True)
class Exchange:
    request: bytes
    reply: bytes
    reply_source_port: int
    reply_dest_port: int
    meta: geneve.AwsMetadata


class Cookies(random.Random):
    """An RNG whose 32-bit draws are the capture's cookie, so the flow gets the cookie gwlbtun saw."""

    def __init__(self, cookie: int) -> None:
        super().__init__(0)
        self._cookie = cookie

    def getrandbits(self, k: int) -> int:
        return self._cookie if k == 32 else super().getrandbits(k)


def _exchanges() -> list[Exchange]:
    packets = [p for p in rdpcap(str(PCAP)) if UDP in p and p[UDP].dport == geneve.GENEVE_PORT]
    found = []
    for request, reply in zip(packets, packets[1:]):
        if request[IP].src != GWLB or reply[IP].src != APPLIANCE:
            continue
        payload = bytes(request[UDP].payload)
        try:
            header, raw, inner = geneve.split(payload)
            meta = geneve.AwsMetadata.from_header(header)
        except geneve.GeneveError:
            continue
        if raw != geneve.aws_header(header.protocol, meta).encode() or len(inner) > MAX_INNER:
            continue
        found.append(Exchange(payload, bytes(reply[UDP].payload), reply[UDP].sport, reply[UDP].dport, meta))
    return found


EXCHANGES = _exchanges()


def test_the_capture_holds_the_requests_a_gwlb_sends() -> None:
    """UDP 64 B, ICMP echo, TCP SYN, inner IPv6, UDP 8500 B and a reused flow with a new cookie; the
    others carry options, sizes or versions a GWLB never sends."""
    assert [e.meta.cookie for e in EXCHANGES] == [0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555,
                                                  0x77777777]


@pytest.mark.parametrize("datapath", list(fastpath.Datapath), ids=lambda d: d.value)
@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: f"cookie-{e.meta.cookie:08x}-{len(e.request)}B")
def test_gwlbtun_reply_is_accepted(exchange: Exchange, strict: bool, datapath: fastpath.Datapath) -> None:
    if datapath is fastpath.Datapath.FAST and not fastpath.AVAILABLE:
        pytest.skip(f"the compiled fast path is not built: {fastpath.IMPORT_ERROR}")
    endpoint = EndpointSpec("gwlbe", exchange.meta.eni_id, exchange.meta.attachment_id, "a")
    gwlb = fastpath.gwlb_for(datapath)(
        [endpoint], [TargetSpec("gwlbtun", APPLIANCE, "a")], Settings(Stickiness.FIVE_TUPLE, Timeouts(350, 120), strict=strict),
        rng=Cookies(exchange.meta.cookie),
    )
    gwlb.set_health(0, True)
    _, raw, inner = geneve.split(exchange.request)
    sent = gwlb.from_endpoint(0, inner)
    assert isinstance(sent, Encapsulated), sent
    assert sent.payload == exchange.request, "the emulator's GENEVE header differs from the capture's request"
    source_port = sent.source_port if strict else exchange.reply_source_port
    for _ in range(2):
        delivered = gwlb.from_target(ipaddress.IPv4Address(APPLIANCE).packed, source_port, exchange.reply_dest_port, exchange.reply)
        assert isinstance(delivered, Delivery), f"gwlbtun's reply was dropped: {delivered} ({list(gwlb.rejects)[-1:]})"
        assert delivered.inner == geneve.split(exchange.reply)[2]
    assert not gwlb.mismatches and gwlb.metrics.mixups == 0
