"""harness.geneve against hand-written bytes, scapy's dissector and a real gwlbtun capture.

scapy's ``contrib.geneve`` is written by other people, and the capture (tests/data/, a copy of
the shared vectors; see tests/data/README.md) holds bytes nobody here wrote: agreeing with both is
what makes the hand-written data-path codec trustworthy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from harness.geneve import (
    AWS_HEADER_LENGTH, AWS_OPTION_CLASS, AWS_OVERHEAD, GENEVE_PORT, PROTO_IPV4, PROTO_IPV6,
    AwsMetadata, GeneveError, GeneveHeader, GeneveOption, aws_header, format_eni, hexdump_diff,
    parse_eni, split,
)

PCAP = Path(__file__).parent / "data" / "gwlbtun-v3.0-route.pcap"
META = AwsMetadata(eni_id=0x2B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, cookie=0x11111111)

# RFC 8926 3.4 base header, then three 3.5 option TLVs (class 0x0108, types 1, 2, 3).
AWS_BYTES = bytes.fromhex(
    "08"                # Ver 0, OptLen 8 words
    "00"                # O 0, C 0, reserved 0
    "0800"              # Protocol Type IPv4
    "000000" "00"       # VNI 0, reserved
    "0108" "01" "02"    # class, type 1 (ENI ID), R 0 + length 2 words
    "2b8ee1d4db0c51c4"
    "0108" "02" "02"    # type 2 (attachment ID)
    "1122334455667788"
    "0108" "03" "01"    # type 3 (flow cookie), 1 word
    "11111111"
)

SAMPLES = {
    "aws-ipv4": aws_header(PROTO_IPV4, META),
    "aws-ipv6": aws_header(PROTO_IPV6, META),
    "no-options": GeneveHeader(PROTO_IPV4, vni=0xABCDEF),
    "flags-and-reserved": GeneveHeader(
        0x6558, vni=1, oam=True, critical=True, reserved_bits=0x2A, reserved_byte=0x5A,
        options=(GeneveOption(0xFFF0, 0x85, b"", reserved_bits=5),)),
    "largest-option": GeneveHeader.build(
        PROTO_IPV6, options=(GeneveOption(0x0101, 0x7F, bytes(range(124))),)),
    "full-optlen": GeneveHeader(PROTO_IPV4, options=(GeneveOption(1, 1, bytes(124)),
                                                     GeneveOption(2, 2, bytes(120)))),
}


def test_aws_header_exact_bytes() -> None:
    header = aws_header(PROTO_IPV4, META)
    assert header.encode() == AWS_BYTES
    assert header.length == AWS_HEADER_LENGTH == 40
    assert AWS_OVERHEAD == 68
    assert [(o.opt_class, o.opt_type, len(o.data)) for o in header.options] == [
        (AWS_OPTION_CLASS, 1, 8), (AWS_OPTION_CLASS, 2, 8), (AWS_OPTION_CLASS, 3, 4)]
    assert GENEVE_PORT == 6081


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip(name: str) -> None:
    header = SAMPLES[name]
    raw = header.encode()
    assert len(raw) == header.length
    assert GeneveHeader.decode(raw) == header
    assert split(raw + b"inner") == (header, raw, b"inner")
    assert GeneveHeader.decode(memoryview(bytearray(raw))) == header


def test_build_sets_c_bit_from_options() -> None:
    plain = GeneveHeader.build(PROTO_IPV4, options=META.options())
    crit = GeneveHeader.build(PROTO_IPV4, options=(*META.options(), GeneveOption(0xFFF0, 0x81)))
    assert (plain.critical, crit.critical) == (False, True)
    assert crit.options[-1].critical and not crit.options[0].critical
    assert crit.encode()[1] == 0x40


def test_option_lookup() -> None:
    header = aws_header(PROTO_IPV4, META)
    assert header.option(AWS_OPTION_CLASS, 3) == GeneveOption(AWS_OPTION_CLASS, 3, b"\x11" * 4)
    assert header.option(AWS_OPTION_CLASS, 4) is None


def _replace(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1:]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "GENEVE header at offset 0: expected at least 8 bytes, found 0"),
    (AWS_BYTES[:7], "GENEVE header at offset 0: expected at least 8 bytes, found 7"),
    (_replace(AWS_BYTES, 0, 0x48), "GENEVE version at offset 0: expected 0, found 1"),
    (_replace(AWS_BYTES, 0, 0xC8), "GENEVE version at offset 0: expected 0, found 3"),
    (_replace(AWS_BYTES, 0, 0x3F),
     "GENEVE OptLen at offset 0: 63 words (252 bytes) overrun the 40-byte packet (at most 8 fit)"),
    (AWS_BYTES[:39],
     "GENEVE OptLen at offset 0: 8 words (32 bytes) overrun the 39-byte packet (at most 7 fit)"),
    (_replace(AWS_BYTES, 35, 0x02),
     "GENEVE option 3 (class 0x0108, type 0x03) length at offset 35: 2 words (8 bytes) overrun "
     "OptLen (options end at offset 40, this one at 44)"),
    (_replace(AWS_BYTES, 0, 0x07) + bytes(100),
     "GENEVE option 3 (class 0x0108, type 0x03) length at offset 35: 1 words (4 bytes) overrun "
     "OptLen (options end at offset 36, this one at 40)"),
])
def test_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(GeneveError, match=f"^{re.escape(message)}$"):
        GeneveHeader.decode(data)
    with pytest.raises(GeneveError):
        split(data)


def test_decode_keeps_unknown_critical_options() -> None:
    header = GeneveHeader.build(PROTO_IPV4, options=(GeneveOption(0xFFF0, 0xFF, bytes(4)),))
    assert GeneveHeader.decode(header.encode()).options[0].critical


@pytest.mark.parametrize(("build", "message"), [
    (lambda: GeneveHeader(0x10000),
     "GENEVE protocol type: expected 0..65535 (16 bits), found 65536"),
    (lambda: GeneveHeader(PROTO_IPV4, vni=1 << 24),
     "GENEVE VNI: expected 0..16777215 (24 bits), found 16777216"),
    (lambda: GeneveHeader(PROTO_IPV4, version=4),
     "GENEVE version: expected 0..3 (2 bits), found 4"),
    (lambda: GeneveHeader(PROTO_IPV4, options=(GeneveOption(1, 1, bytes(124)),) * 3),
     "GENEVE options: expected at most 252 bytes, found 384"),
    (lambda: GeneveOption(1, 256), "GENEVE option type: expected 0..255 (8 bits), found 256"),
    (lambda: GeneveOption(1, 1, b"abc"),
     "GENEVE option data: expected a multiple of 4 bytes up to 124, found 3 bytes"),
    (lambda: GeneveOption(1, 1, bytes(128)),
     "GENEVE option data: expected a multiple of 4 bytes up to 124, found 128 bytes"),
    (lambda: AwsMetadata(1, 2, 1 << 32),
     "AWS flow cookie: expected 0..4294967295 (32 bits), found 4294967296"),
])
def test_invalid_values(build, message: str) -> None:
    with pytest.raises(GeneveError, match=f"^{re.escape(message)}$"):
        build()


def test_version_1_can_be_built_for_robustness_tests() -> None:
    raw = GeneveHeader(PROTO_IPV4, version=1, options=META.options()).encode()
    assert raw == _replace(AWS_BYTES, 0, 0x48)


def test_aws_metadata() -> None:
    header = aws_header(PROTO_IPV6, META)
    assert AwsMetadata.from_header(header) == META
    unknown = GeneveOption(0xFFF0, 1, bytes(8))
    extra = GeneveHeader(PROTO_IPV4, options=(unknown, *reversed(META.options())))
    assert AwsMetadata.from_header(extra) == META
    with pytest.raises(GeneveError, match=re.escape(
            "AWS flow cookie option (class 0x0108, type 3): expected in the header, found none")):
        AwsMetadata.from_header(GeneveHeader(PROTO_IPV4, options=META.options()[:2]))
    short = (*META.options()[:2], GeneveOption(AWS_OPTION_CLASS, 3, bytes(8)))
    with pytest.raises(GeneveError, match=re.escape(
            "AWS flow cookie option (class 0x0108, type 3): expected 4 bytes of data, found 8")):
        AwsMetadata.from_header(GeneveHeader(PROTO_IPV4, options=short))


def test_eni_text() -> None:
    assert format_eni(META.eni_id) == "vpce-02b8ee1d4db0c51c4"
    assert parse_eni("vpce-02b8ee1d4db0c51c4") == META.eni_id
    for value in (0, 1, (1 << 64) - 1):
        assert parse_eni(format_eni(value)) == value
    for bad in ("vpce-2b8ee1d4db0c51c4", "vpce-12b8ee1d4db0c51c4", "eni-02b8ee1d4db0c51c4",
                "vpce-02B8EE1D4DB0C51C4", " vpce-02b8ee1d4db0c51c4", "vpce-0_2b8ee1d4db0c51c4", ""):
        with pytest.raises(ValueError, match=re.escape(f"ENI ID {bad!r}: expected 'vpce-'")):
            parse_eni(bad)


def test_hexdump_diff() -> None:
    assert hexdump_diff(AWS_BYTES, AWS_BYTES) == "expected == observed (40 bytes)"
    changed = _replace(AWS_BYTES, 1, 0x40) + b"\x00"
    expected, observed = hexdump_diff(AWS_BYTES, changed).splitlines()
    assert expected.startswith("expected (40 B) @0: 08*00 08 00")
    assert observed.startswith("observed (41 B) @0: 08*40 08 00")
    assert expected.endswith(" 11*--") and observed.endswith(" 11*00")
    far = hexdump_diff(bytes(200), bytes(100) + b"\x01" + bytes(99)).splitlines()
    assert far[0].startswith("expected (200 B) @96: 00 00 00 00*00") and far[0].endswith(" ...")


def _scapy_fields(layer: GENEVE) -> tuple:
    return (layer.version, layer.optionlen, layer.oam, layer.critical, layer.reserved, layer.proto,
            layer.vni, layer.reserved2,
            [(o.classid, o.type, o.reserved, o.length, bytes(o.data)) for o in layer.options])


def _our_fields(header: GeneveHeader) -> tuple:
    return (header.version, (header.length - 8) // 4, header.oam, header.critical,
            header.reserved_bits, header.protocol, header.vni, header.reserved_byte,
            [(o.opt_class, o.opt_type, o.reserved_bits, len(o.data) // 4, o.data)
             for o in header.options])


@pytest.mark.parametrize("name", SAMPLES)
def test_scapy_dissects_our_bytes(name: str) -> None:
    header = SAMPLES[name]
    raw = header.encode()
    layer = GENEVE(raw)
    assert _scapy_fields(layer) == _our_fields(header)
    assert not layer.payload
    assert bytes(layer) == raw


@pytest.mark.parametrize("inner", [
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"x" * 9),
    IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"y",
], ids=["ipv4", "ipv6"])
def test_we_decode_scapy_bytes(inner) -> None:
    options = [GeneveOptions(classid=AWS_OPTION_CLASS, type=opt_type,
                             data=value.to_bytes(size, "big"))
               for opt_type, value, size in ((1, META.eni_id, 8), (2, META.attachment_id, 8),
                                             (3, META.cookie, 4))]
    options.append(GeneveOptions(classid=0xFFF0, type=0x80, data=b""))
    packet = bytes(GENEVE(vni=7, critical=1, options=options) / inner)
    header, raw, inner_bytes = split(packet)
    assert inner_bytes == bytes(inner)
    assert header.encode() == raw == packet[:44]
    assert _our_fields(header) == _scapy_fields(GENEVE(packet))
    assert header.protocol == (PROTO_IPV4 if IP in inner else PROTO_IPV6)
    assert AwsMetadata.from_header(header) == META
    assert header.options[-1].critical and header.critical and header.vni == 7


def test_real_gwlbtun_capture() -> None:
    """gwlbtun v3.0: 14 requests, 12 replies echoing the header; version 1 and OptLen 63 dropped.

    The cookie sent with its critical bit set (type 0x83) is a different option type for RFC 8926,
    so that request, like the one without a cookie, has no complete AWS metadata.
    """
    packets = [p for p in rdpcap(str(PCAP)) if UDP in p and p[UDP].dport == GENEVE_PORT]
    assert len(packets) == 26
    decoded, errors = [], []
    for packet in packets:
        payload = bytes(packet[UDP].payload)
        try:
            header, raw, inner = split(payload)
        except GeneveError as error:
            errors.append(str(error))
            continue
        assert header.encode() == raw and raw + inner == payload
        assert _our_fields(header) == _scapy_fields(GENEVE(payload))
        decoded.append((packet[IP].src, header, raw))
    assert errors == ["GENEVE version at offset 0: expected 0, found 1",
                      "GENEVE OptLen at offset 0: 63 words (252 bytes) overrun the 104-byte packet "
                      "(at most 24 fit)"]
    assert len(decoded) == 24

    pairs = list(zip(decoded[0::2], decoded[1::2]))
    assert all(req[0] == "192.168.100.1" and rep[0] == "192.168.100.11" for req, rep in pairs)
    assert all(rep[2] == req[2] for req, rep in pairs)
    complete, incomplete = [], []
    for req, rep in pairs:
        try:
            meta = AwsMetadata.from_header(req[1])
        except GeneveError as error:
            incomplete.append(str(error))
            continue
        assert AwsMetadata.from_header(rep[1]) == meta
        assert (meta.eni_id, meta.attachment_id) == (META.eni_id, META.attachment_id)
        complete.append(meta.cookie)
    assert incomplete == [
        "AWS flow cookie option (class 0x0108, type 3): expected in the header, found none"] * 2
    assert complete == [0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555, 0x66666666,
                        0x77777777, 0x99999999, 0x99999999, 0x00000001]
    assert decoded[14][1].option(AWS_OPTION_CLASS, 0x83).critical
    assert [h.protocol for _, h, _ in decoded[::2]].count(PROTO_IPV6) == 1
    assert sum(h.critical for _, h, _ in decoded) == 4
    assert sum(any(o.opt_class == 0xFFF0 for o in h.options) for _, h, _ in decoded) == 4
