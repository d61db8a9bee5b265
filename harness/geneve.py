"""GENEVE (RFC 8926) header codec and the Gateway Load Balancer option layout.

This module only turns bytes into frozen values and back; it knows nothing about sockets, flows or
policy. It runs per packet on the emulator's data path, so it is hand-written with ``struct``
(scapy's ``contrib.geneve`` is the independent reference the tests check it against).

Decoding is strict about structure (version, lengths) and lenient about meaning: unknown or critical
options are returned as they are, because whether to drop them is the caller's policy. Reserved bits
are kept in ``reserved_*`` fields rather than ignored, so ``decode(raw).encode() == raw`` for every
valid header and two decoded headers compare equal exactly when their bytes do.

AWS defined the option layout (ENI ID, attachment ID, flow cookie as types 1, 2, 3); other clouds
reuse it under their own option class, so the class travels in an `OptionLayout` whose default
is AWS's. What a cookie word means is the profile's business (`harness/profiles.py`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

GENEVE_PORT = 6081
AWS_OPTION_CLASS = 0x0108
AWS_ENI_TYPE, AWS_ATTACHMENT_TYPE, AWS_COOKIE_TYPE = 1, 2, 3
PROTO_IPV4, PROTO_IPV6 = 0x0800, 0x86DD

BASE_LENGTH = 8
MAX_OPTIONS_LENGTH = 63 * 4
MAX_OPTION_DATA = 31 * 4
CRITICAL_TYPE_BIT = 0x80
AWS_HEADER_LENGTH = BASE_LENGTH + 32
AWS_OVERHEAD = 20 + 8 + AWS_HEADER_LENGTH

_BASE = struct.Struct("!BBHI")
_OPTION = struct.Struct("!HBB")
_ENI_TEXT = re.compile(r"vpce-([0-9a-f]{17})")
_AWS_FIELDS = ((AWS_ENI_TYPE, "ENI ID", 8), (AWS_ATTACHMENT_TYPE, "attachment ID", 8),
               (AWS_COOKIE_TYPE, "flow cookie", 4))


@dataclass(frozen=True, slots=True)
class OptionLayout:
    """Whose options these are: the vendor (for messages) and the option class of its three TLVs."""

    vendor: str
    opt_class: int

    @property
    def types(self) -> frozenset[tuple[int, int]]:
        """(class, type) of the three options, critical bit clear."""
        return frozenset((self.opt_class, t) for t, _, _ in _AWS_FIELDS)


AWS_LAYOUT = OptionLayout("AWS", AWS_OPTION_CLASS)


class GeneveError(ValueError):
    """Bytes or values that are not a valid GENEVE header; says which field, where, and why."""


def _check_width(field: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise GeneveError(f"{field}: expected 0..{(1 << bits) - 1} ({bits} bits), found {value}")


@dataclass(frozen=True, slots=True)
class GeneveOption:
    """One option TLV: class, type (high bit = critical), data in 4-byte words."""

    opt_class: int
    opt_type: int
    data: bytes = b""
    reserved_bits: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        _check_width("GENEVE option class", self.opt_class, 16)
        _check_width("GENEVE option type", self.opt_type, 8)
        _check_width("GENEVE option reserved bits", self.reserved_bits, 3)
        if len(self.data) % 4 or len(self.data) > MAX_OPTION_DATA:
            raise GeneveError(
                f"GENEVE option data: expected a multiple of 4 bytes up to {MAX_OPTION_DATA}, "
                f"found {len(self.data)} bytes")

    @property
    def critical(self) -> bool:
        return bool(self.opt_type & CRITICAL_TYPE_BIT)

    def encode(self) -> bytes:
        return _OPTION.pack(self.opt_class, self.opt_type,
                            self.reserved_bits << 5 | len(self.data) // 4) + self.data


@dataclass(frozen=True, slots=True)
class GeneveHeader:
    """Base header plus options; OptLen is always computed from the options."""

    protocol: int
    vni: int = 0
    options: tuple[GeneveOption, ...] = ()
    oam: bool = False
    critical: bool = False
    version: int = 0
    reserved_bits: int = 0
    reserved_byte: int = 0

    def __post_init__(self) -> None:
        _check_width("GENEVE protocol type", self.protocol, 16)
        _check_width("GENEVE VNI", self.vni, 24)
        _check_width("GENEVE version", self.version, 2)
        _check_width("GENEVE reserved bits", self.reserved_bits, 6)
        _check_width("GENEVE reserved byte", self.reserved_byte, 8)
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))
        if self.length - BASE_LENGTH > MAX_OPTIONS_LENGTH:
            raise GeneveError(f"GENEVE options: expected at most {MAX_OPTIONS_LENGTH} bytes, "
                              f"found {self.length - BASE_LENGTH}")

    @classmethod
    def build(cls, protocol: int, *, vni: int = 0, options: tuple[GeneveOption, ...] = (),
              oam: bool = False) -> GeneveHeader:
        """A header whose C bit is set iff one of its options is critical (RFC 8926 3.4)."""
        return cls(protocol, vni, tuple(options), oam, any(o.critical for o in options))

    @property
    def length(self) -> int:
        return BASE_LENGTH + sum(4 + len(o.data) for o in self.options)

    def option(self, opt_class: int, opt_type: int) -> GeneveOption | None:
        """The first option with this class and type, or None when the header has none."""
        for opt in self.options:
            if opt.opt_class == opt_class and opt.opt_type == opt_type:
                return opt
        return None

    def encode(self) -> bytes:
        body = b"".join(o.encode() for o in self.options)
        return _BASE.pack(self.version << 6 | len(body) // 4,
                          self.oam << 7 | self.critical << 6 | self.reserved_bits,
                          self.protocol, self.vni << 8 | self.reserved_byte) + body

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> GeneveHeader:
        """Parse the header at the start of a UDP payload; the inner packet after it is ignored."""
        size = len(data)
        if size < BASE_LENGTH:
            raise GeneveError(f"GENEVE header at offset 0: expected at least {BASE_LENGTH} bytes, "
                              f"found {size}")
        first, flags, protocol, vni_word = _BASE.unpack_from(data)
        version = first >> 6
        if version:
            raise GeneveError(f"GENEVE version at offset 0: expected 0, found {version}")
        words = first & 0x3F
        end = BASE_LENGTH + words * 4
        if end > size:
            raise GeneveError(
                f"GENEVE OptLen at offset 0: {words} words ({words * 4} bytes) overrun "
                f"the {size}-byte packet (at most {(size - BASE_LENGTH) // 4} fit)")
        options = []
        offset = BASE_LENGTH
        while offset < end:
            opt_class, opt_type, length_byte = _OPTION.unpack_from(data, offset)
            data_end = offset + 4 + (length_byte & 0x1F) * 4
            if data_end > end:
                words = length_byte & 0x1F
                raise GeneveError(
                    f"GENEVE option {len(options) + 1} (class 0x{opt_class:04x}, "
                    f"type 0x{opt_type:02x}) length at offset {offset + 3}: {words} words "
                    f"({words * 4} bytes) overrun OptLen (options end at offset {end}, "
                    f"this one at {data_end})")
            options.append(GeneveOption(opt_class, opt_type, bytes(data[offset + 4:data_end]),
                                        length_byte >> 5))
            offset = data_end
        return cls(protocol, vni_word >> 8, tuple(options), bool(flags & 0x80), bool(flags & 0x40),
                   version, flags & 0x3F, vni_word & 0xFF)


def split(packet: bytes | bytearray | memoryview) -> tuple[GeneveHeader, bytes, bytes]:
    """UDP payload -> (header, raw header bytes exactly as received, inner packet)."""
    header = GeneveHeader.decode(packet)
    end = header.length
    return header, bytes(packet[:end]), bytes(packet[end:])


@dataclass(frozen=True, slots=True)
class AwsMetadata:
    """What a GWLB attaches to every packet: endpoint ENI, attachment and flow cookie."""

    eni_id: int
    attachment_id: int
    cookie: int

    def __post_init__(self) -> None:
        _check_width("AWS ENI ID", self.eni_id, 64)
        _check_width("AWS attachment ID", self.attachment_id, 64)
        _check_width("AWS flow cookie", self.cookie, 32)

    def options(self, layout: OptionLayout = AWS_LAYOUT) -> tuple[GeneveOption, GeneveOption, GeneveOption]:
        """The three options in the order a GWLB sends them (`cookie` is the whole 32-bit word)."""
        opt_class = layout.opt_class
        return (GeneveOption(opt_class, AWS_ENI_TYPE, self.eni_id.to_bytes(8, "big")),
                GeneveOption(opt_class, AWS_ATTACHMENT_TYPE, self.attachment_id.to_bytes(8, "big")),
                GeneveOption(opt_class, AWS_COOKIE_TYPE, self.cookie.to_bytes(4, "big")))

    @classmethod
    def from_header(cls, header: GeneveHeader, layout: OptionLayout = AWS_LAYOUT) -> AwsMetadata:
        """Read the three options of `layout` wherever they are; extra options are ignored."""
        values = []
        for opt_type, name, size in _AWS_FIELDS:
            opt = header.option(layout.opt_class, opt_type)
            where = f"{layout.vendor} {name} option (class 0x{layout.opt_class:04x}, type {opt_type})"
            if opt is None:
                raise GeneveError(f"{where}: expected in the header, found none")
            if len(opt.data) != size:
                raise GeneveError(f"{where}: expected {size} bytes of data, found {len(opt.data)}")
            values.append(int.from_bytes(opt.data, "big"))
        return cls(*values)


def aws_header(protocol: int, meta: AwsMetadata, layout: OptionLayout = AWS_LAYOUT) -> GeneveHeader:
    """The header a GWLB sends: VNI 0, no flags, the three options (OptLen 8, 40 bytes)."""
    return GeneveHeader(protocol, 0, meta.options(layout))


def format_eni(eni_id: int) -> str:
    """The endpoint ID as gwlbtun prints it, e.g. ``vpce-02b8ee1d4db0c51c4``."""
    _check_width("AWS ENI ID", eni_id, 64)
    return f"vpce-{eni_id:017x}"


def parse_eni(text: str) -> int:
    """The inverse of format_eni; anything else raises ValueError."""
    match = _ENI_TEXT.fullmatch(text)
    value = int(match.group(1), 16) if match else -1
    if not 0 <= value < 1 << 64:
        raise ValueError(f"ENI ID {text!r}: expected 'vpce-' and 17 lowercase hex digits "
                         f"of a 64-bit value, like 'vpce-02b8ee1d4db0c51c4'")
    return value


def hexdump_diff(expected: bytes, observed: bytes, *, width: int = 48) -> str:
    """Two aligned hex lines around the first difference; differing bytes are marked with '*'."""
    if expected == observed:
        return f"expected == observed ({len(expected)} bytes)"
    first = next((i for i, (a, b) in enumerate(zip(expected, observed)) if a != b),
                 min(len(expected), len(observed)))
    start = 0 if first < width else first - first % 16
    stop = start + width
    digits = len(str(max(len(expected), len(observed))))

    def line(label: str, mine: bytes, other: bytes) -> str:
        cells = []
        for i in range(start, min(stop, max(len(mine), len(other)))):
            mark = "*" if i >= len(mine) or i >= len(other) or mine[i] != other[i] else " "
            cells.append(mark + (f"{mine[i]:02x}" if i < len(mine) else "--"))
        more = " ..." if max(len(mine), len(other)) > stop else ""
        return f"{label} ({len(mine):>{digits}} B) @{start}:{''.join(cells)}{more}"

    return line("expected", expected, observed) + "\n" + line("observed", observed, expected)
