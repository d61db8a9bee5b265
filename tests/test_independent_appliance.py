"""The independent appliance's pure parts (appliance-images/independent/gwlbtund.py): what it drops,
what it forwards, and that both directions of a flow, and an ICMP error about it, find one flow.

Its end-to-end verdict is in test_conformance_run.py; here its decoder meets gwlbtun's real
requests (bytes neither it nor the harness wrote) and headers built by harness.geneve.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from harness import geneve
from harness.geneve import AwsMetadata, GeneveHeader, GeneveOption

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gwlbtund", REPO / "appliance-images" / "independent" / "gwlbtund.py")
gwlbtund = sys.modules.setdefault("gwlbtund", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(gwlbtund)

META = AwsMetadata(eni_id=0x1234567890ABCDEF, attachment_id=0x0123456789ABCDEF, cookie=0xC0FFEE)
INNER = bytes(IP(src="10.0.1.10", dst="10.0.2.10") / UDP(sport=40000, dport=7) / (b"x" * 20))


def _decode(packet: bytes) -> gwlbtund.Decoded:
    return gwlbtund.decode_geneve(memoryview(packet), len(packet))


def _drop_reason(packet: bytes) -> str:
    with pytest.raises(gwlbtund.Drop) as dropped:
        _decode(packet)
    return str(dropped.value)


def test_gwlbtun_capture_requests_are_forwarded_or_dropped_per_rfc_8926() -> None:
    """In capture order (vectors README): the critical and unknown-critical options are dropped
    (gwlbtun echoed them), as are version 1 and the overrunning OptLen; the rest is forwarded."""
    outcomes = []
    for frame in rdpcap(str(REPO / "tests" / "data" / "gwlbtun-v3.0-route.pcap")):
        if UDP not in frame or frame[IP].src != "192.168.100.1":
            continue
        try:
            outcomes.append(_decode(bytes(frame[UDP].payload)).endpoint_id)
        except gwlbtund.Drop as drop:
            outcomes.append(str(drop))
    eni = outcomes[0]
    assert outcomes == [eni] * 7 + ["unknown_critical_option"] * 2 + [eni] * 2 + ["version", "optlen_overrun", eni]


def test_header_bytes_are_not_interpreted_beyond_the_endpoint_id() -> None:
    extra = GeneveOption(0xFFF0, 0x01, b"\0" * 4)
    header = GeneveHeader(geneve.PROTO_IPV4, 0x00ABCD, (*META.options(), extra)).encode()
    decoded = _decode(header + INNER)
    assert (decoded.header_len, decoded.endpoint_id) == (len(header), META.eni_id)


@pytest.mark.parametrize(("header", "inner", "reason"), [
    (GeneveHeader(geneve.PROTO_IPV4, options=META.options(), version=1), INNER, "version"),
    (GeneveHeader.build(geneve.PROTO_IPV4, options=META.options(), oam=True), INNER, "oam"),
    (GeneveHeader(0x6558, options=META.options()), INNER, "protocol_type"),
    (GeneveHeader(geneve.PROTO_IPV6, options=META.options()), INNER, "inner_ipv6"),
    (GeneveHeader(geneve.PROTO_IPV4, options=META.options()), b"", "empty"),
    (GeneveHeader(geneve.PROTO_IPV4, options=META.options()), INNER[:-1], "inner_ipv4"),
    (GeneveHeader(geneve.PROTO_IPV4, options=META.options()[1:]), INNER, "no_endpoint_id"),
    (GeneveHeader(geneve.PROTO_IPV4, options=(*META.options(), GeneveOption(0xFFF0, 0x81, b""))), INNER,
     "unknown_critical_option"),
])
def test_malformed_or_unforwardable_packets_are_dropped(header: GeneveHeader, inner: bytes, reason: str) -> None:
    assert _drop_reason(header.encode() + inner) == reason


def test_truncations_of_a_valid_packet_never_raise_anything_but_drop() -> None:
    packet = geneve.aws_header(geneve.PROTO_IPV4, META).encode() + INNER
    for size in range(len(packet)):
        with pytest.raises(gwlbtund.Drop):
            gwlbtund.decode_geneve(memoryview(packet), size)


def test_both_directions_share_a_flow_with_opposite_directions() -> None:
    forward = gwlbtund.flow_key(bytes(IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=40000, dport=80)))
    backward = gwlbtund.flow_key(bytes(IP(src="10.0.2.10", dst="10.0.1.10") / TCP(sport=80, dport=40000)))
    other = gwlbtund.flow_key(bytes(IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=40001, dport=80)))
    assert forward[0] == backward[0] != other[0]
    assert {forward[1], backward[1]} == {0, 1}
    six = gwlbtund.flow_key(bytes(IPv6(src="fd00:1::10", dst="fd00:2::10") / UDP(sport=5, dport=6)))
    six_back = gwlbtund.flow_key(bytes(IPv6(src="fd00:2::10", dst="fd00:1::10") / UDP(sport=6, dport=5)))
    assert six_back == (six[0], 1 - six[1])


def test_an_icmp_error_finds_the_flow_it_quotes_in_the_reply_direction() -> None:
    request = IP(src="10.0.1.10", dst="10.0.2.10") / UDP(sport=40000, dport=9)
    error = IP(src="10.0.2.10", dst="10.0.1.10") / ICMP(type=3, code=3) / IPerror(bytes(request)[:20]) / UDPerror(bytes(request)[20:28])
    assert gwlbtund.flow_key(bytes(error)) == gwlbtund.flow_key(bytes(IP(src="10.0.2.10", dst="10.0.1.10") / UDP(sport=9, dport=40000)))


def test_interface_names_fit_ifnamsiz_and_differ_per_endpoint() -> None:
    names = {gwlbtund.interface_suffix(eni) for eni in (0, 1, 2**64 - 1, META.eni_id, 0x0FEDCBA987654321)}
    assert len(names) == 5 and max(len("gwi-" + n) for n in names) <= 15
