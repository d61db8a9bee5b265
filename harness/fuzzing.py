"""Mutation fuzzing of the emulator's parsers and of its return-path validation.

The emulator reads bytes written by appliances under test, which may be buggy or hostile, so no
input may make it raise: `Gwlb.from_target` must always return a Delivery or a DropReason and
`Gwlb.from_endpoint` an Encapsulated or a DropReason; the GENEVE codec (`geneve.split`, which runs
`GeneveHeader.decode`) may only raise GeneveError and the packet parsers (`inet.parse_inner`,
`inet.parse_ipv4_udp`) only PacketError. A decoded GENEVE header must also encode back to the bytes
it came from, as harness.geneve promises.

Split of concerns: `Corpus` holds the seeds (scapy builds and reads them once, at set-up; scapy is
never used per iteration), `Mutator` turns a seed into a variant (bit flips, interesting bytes,
OptLen and option-length edits, truncation, extension, option insertion and removal, splicing,
grafting a live flow's cookie), and `Fuzzer` drives three `Gwlb` instances seeded with real flows,
counts every outcome and keeps a reproducer of each distinct escaped exception. Everything is
deterministic for a given seed. Nothing here prints or exits: benchmarks/fuzz_emulator.py runs a
million iterations and reports, tests/test_fuzz.py runs a short budget.
"""

from __future__ import annotations

import ipaddress
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import geneve
from harness.emulator.core import Delivery, DropReason, Encapsulated, Gwlb
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Timeouts
from harness.inet import PacketError, build_ipv4_udp, parse_inner, parse_ipv4_udp
from harness.topology import Stickiness

INTERESTING_BYTES = (0x00, 0xFF, 0x80, 0x7F, 0x01, 0x3F, 0x40, 0x1F, 0x20, 0xC0, 0x08)
EPOCH = 2048
MAX_CRASHES_KEPT = 20

ENDPOINTS = (
    EndpointSpec("e-a", eni_id=0x02B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, zone="a"),
    EndpointSpec("e-b", eni_id=0x0AAAABBBBCCCCDDDD, attachment_id=0x8877665544332211, zone="b"),
)
TARGETS = (
    TargetSpec("t-a1", "192.168.100.11", "a"),
    TargetSpec("t-a2", "10.0.1.11", "a"),
    TargetSpec("t-b1", "10.0.2.10", "b"),
)
TIMEOUTS = Timeouts(tcp_idle_s=350, other_idle_s=120)
VARIANTS = (
    Settings(Stickiness.FIVE_TUPLE, TIMEOUTS),
    Settings(Stickiness.THREE_TUPLE, TIMEOUTS, cross_zone=True, strict=True),
    Settings(Stickiness.TWO_TUPLE, TIMEOUTS, strict=True, rebalance=True),
)


@dataclass(frozen=True)
class Corpus:
    """Seeds: GENEVE UDP payloads, bare inner IP packets, and outer IPv4/UDP packets."""

    payloads: tuple[bytes, ...]
    inners: tuple[bytes, ...]
    outers: tuple[bytes, ...]

    def __add__(self, other: Corpus) -> Corpus:
        return Corpus(self.payloads + other.payloads, self.inners + other.inners, self.outers + other.outers)


def capture_corpus(path: Path) -> Corpus:
    """The UDP/6081 packets of a capture: their payloads, outer IPv4 packets and inner packets."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    payloads, inners, outers = [], [], []
    for packet in rdpcap(str(path)):
        if IP not in packet or UDP not in packet or geneve.GENEVE_PORT not in (packet[UDP].sport, packet[UDP].dport):
            continue
        payload = bytes(packet[UDP].payload)
        payloads.append(payload)
        outers.append(bytes(packet[IP]))
        try:
            inners.append(geneve.split(payload)[2])
        except geneve.GeneveError:
            continue
    if not payloads:
        raise ValueError(f"{path}: expected UDP/{geneve.GENEVE_PORT} packets, found none")
    return Corpus(tuple(payloads), tuple(inners), tuple(outers))


def synthetic_corpus() -> Corpus:
    """Inner packets of every kind the flow logic distinguishes, and their AWS encapsulation."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
    from scapy.layers.inet6 import (
        ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    )
    from scapy.packet import Raw

    client, server = "192.0.2.10", "198.51.100.20"
    client6, server6 = "2001:db8::10", "2001:db8:1::20"
    quoted = IP(src=client, dst=server) / UDP(sport=40000, dport=53)
    quoted6 = IPv6(src=client6, dst=server6) / UDP(sport=40000, dport=53)
    packets = [
        IP(src=client, dst=server) / UDP(sport=40000, dport=53),
        IP(src=client, dst=server) / UDP(sport=40001, dport=53) / Raw(bytes(36)),
        IP(src=client, dst=server) / UDP(sport=40002, dport=53) / Raw(bytes(1472)),
        IP(src=client, dst=server) / UDP(sport=40003, dport=53) / Raw(bytes(8472)),
        IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="S"),
        IP(src=server, dst=client) / TCP(sport=443, dport=40000, flags="SA"),
        IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="A"),
        IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n"),
        IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="FA"),
        IP(src=client, dst=server) / TCP(sport=40010, dport=443, flags="S"),
        IP(src=client, dst=server) / TCP(sport=40010, dport=443, flags="R"),
        IP(src=client, dst=server) / ICMP(type=8, id=1, seq=1) / Raw(bytes(56)),
        IP(src=server, dst=client) / ICMP(type=0, id=1, seq=1) / Raw(bytes(56)),
        IP(src=server, dst=client) / ICMP(type=3, code=3) / quoted,
        IP(src="203.0.113.1", dst=client) / ICMP(type=11, code=0) / quoted,
        IP(src=client, dst=server, options=[IPOption_NOP()] * 4) / UDP(sport=40004, dport=53),
        IP(src=client, dst=server, flags="MF") / UDP(sport=40005, dport=53) / Raw(bytes(64)),
        IP(src=client, dst=server, frag=8) / Raw(bytes(64)),
        IP(src=client, dst=server, proto=47) / Raw(bytes(24)),
        IPv6(src=client6, dst=server6) / UDP(sport=40000, dport=53) / Raw(bytes(16)),
        IPv6(src=client6, dst=server6) / TCP(sport=40000, dport=443, flags="S"),
        IPv6(src=client6, dst=server6) / IPv6ExtHdrHopByHop() / UDP(sport=40006, dport=53),
        IPv6(src=client6, dst=server6) / IPv6ExtHdrFragment(m=1) / UDP(sport=40007, dport=53),
        IPv6(src=client6, dst=server6) / ICMPv6EchoRequest(id=1, seq=1),
        IPv6(src=server6, dst=client6) / ICMPv6DestUnreach(code=4) / quoted6,
    ]
    inners = tuple(bytes(p) for p in packets)
    meta = geneve.AwsMetadata(ENDPOINTS[0].eni_id, ENDPOINTS[0].attachment_id, 0x11111111)
    payloads = tuple(
        geneve.aws_header(geneve.PROTO_IPV4 if inner[0] >> 4 == 4 else geneve.PROTO_IPV6, meta).encode() + inner
        for inner in inners
    )
    source, gwlb = ipaddress.IPv4Address(TARGETS[0].address).packed, bytes([192, 168, 100, 1])
    outers = tuple(build_ipv4_udp(source, gwlb, 40001, geneve.GENEVE_PORT, payload) for payload in payloads)
    return Corpus(payloads, inners, outers)


def _option_offsets(data: bytearray) -> list[int]:
    """Where each option TLV starts, walking as far as the bytes allow (never raises)."""
    if len(data) < geneve.BASE_LENGTH:
        return []
    end = min(len(data), geneve.BASE_LENGTH + (data[0] & 0x3F) * 4)
    offsets, offset = [], geneve.BASE_LENGTH
    while offset + 4 <= end:
        offsets.append(offset)
        offset += 4 + (data[offset + 3] & 0x1F) * 4
    return offsets


def _header_end(data: bytearray) -> int:
    return min(len(data), geneve.BASE_LENGTH + (data[0] & 0x3F) * 4) if data else 0


class Mutator:
    """Variants of seeds; each public method returns new bytes and leaves its input alone."""

    def __init__(self, rng: random.Random, corpus: Corpus) -> None:
        self.rng = rng
        self.corpus = corpus
        self._geneve_ops: tuple[Callable[[bytearray], bytearray], ...] = (
            self._flip_bits, self._flip_bits, self._interesting_byte, self._interesting_byte,
            self._optlen, self._optlen, self._option_length, self._option_length,
            self._truncate, self._extend, self._insert_option, self._remove_option, self._swap_options,
            self._splice, self._first_bytes, self._mutate_inner,
        )
        self._inner_ops: tuple[Callable[[bytearray], bytearray], ...] = (
            self._flip_bits, self._interesting_byte, self._interesting_byte, self._ip_field,
            self._ip_field, self._truncate, self._extend, self._splice_inner,
        )
        self._outer_ops: tuple[Callable[[bytearray], bytearray], ...] = (
            self._flip_bits, self._interesting_byte, self._ip_field, self._udp_length,
            self._truncate, self._extend,
        )

    def random_bytes(self) -> bytes:
        rng = self.rng
        size = rng.randrange(9000) if rng.random() < 0.05 else rng.randrange(80)
        return rng.randbytes(size)

    def geneve(self, seed: bytes, rounds: int | None = None) -> bytes:
        return self._apply(seed, self._geneve_ops, rounds)

    def inner(self, seed: bytes, rounds: int | None = None) -> bytes:
        return self._apply(seed, self._inner_ops, rounds)

    def outer(self, seed: bytes, rounds: int | None = None) -> bytes:
        return self._apply(seed, self._outer_ops, rounds)

    def graft(self, seed: bytes, live: bytes) -> bytes:
        """`seed` with the AWS option values of `live` (an emulator-built header) written into its
        AWS options wherever they are, so foreign seeds reach the cookie and ID checks."""
        data = bytearray(seed)
        values = {geneve.AWS_ENI_TYPE: live[12:20], geneve.AWS_ATTACHMENT_TYPE: live[24:32],
                  geneve.AWS_COOKIE_TYPE: live[36:40]}
        for offset in _option_offsets(data):
            if data[offset] << 8 | data[offset + 1] == geneve.AWS_OPTION_CLASS and data[offset + 2] & 0x7F in values:
                value = values[data[offset + 2] & 0x7F]
                stop = min(len(data), offset + 4 + (data[offset + 3] & 0x1F) * 4, offset + 4 + len(value))
                data[offset + 4 : stop] = value[: stop - offset - 4]
        return bytes(data)

    def _apply(self, seed: bytes, ops: tuple[Callable[[bytearray], bytearray], ...], rounds: int | None) -> bytes:
        rng = self.rng
        data = bytearray(seed)
        count = rounds if rounds is not None else (1 if rng.random() < 0.6 else rng.randrange(2, 6))
        for _ in range(count):
            data = rng.choice(ops)(data)
        return bytes(data)

    def _position(self, data: bytearray) -> int:
        """A byte index, biased to the first 80 bytes where the headers are."""
        if self.rng.random() < 0.7:
            return self.rng.randrange(min(len(data), 80))
        return self.rng.randrange(len(data))

    def _flip_bits(self, data: bytearray) -> bytearray:
        if data:
            for _ in range(self.rng.choice((1, 1, 1, 2, 4, 8))):
                data[self._position(data)] ^= 1 << self.rng.randrange(8)
        return data

    def _interesting_byte(self, data: bytearray) -> bytearray:
        if data:
            data[self._position(data)] = self.rng.choice(INTERESTING_BYTES)
        return data

    def _first_bytes(self, data: bytearray) -> bytearray:
        """The version/OptLen and flags bytes: the fields a return's validity hangs on."""
        if len(data) >= 2:
            data[self.rng.randrange(2)] = self.rng.randrange(256)
        return data

    def _optlen(self, data: bytearray) -> bytearray:
        if data:
            words = data[0] & 0x3F
            new = self.rng.choice((0, 1, 2, 3, 5, 8, 13, 63, words - 1, words + 1, words + 2, self.rng.randrange(64)))
            data[0] = (data[0] & 0xC0) | (new & 0x3F)
        return data

    def _option_length(self, data: bytearray) -> bytearray:
        offsets = _option_offsets(data)
        if offsets:
            offset = self.rng.choice(offsets) + 3
            words = data[offset] & 0x1F
            new = self.rng.choice((0, 1, 2, 3, 31, words - 1, words + 1, self.rng.randrange(32)))
            reserved = data[offset] & 0xE0 if self.rng.random() < 0.8 else self.rng.randrange(8) << 5
            data[offset] = reserved | (new & 0x1F)
        return data

    def _truncate(self, data: bytearray) -> bytearray:
        if data:
            cut = self.rng.randrange(min(len(data), 64)) if self.rng.random() < 0.6 else self.rng.randrange(len(data))
            del data[cut:]
        return data

    def _extend(self, data: bytearray) -> bytearray:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            data += rng.randbytes(rng.randrange(1, 65))
        elif choice == 1:
            data += bytes(rng.choice((1, 4, 8, 60)))
        elif choice == 2:
            data += data[-rng.randrange(1, 65):] if data else b"\xff"
        else:
            data += rng.randbytes(rng.randrange(8400, 8700))
        return data

    def _new_option(self) -> bytes:
        rng = self.rng
        aws = geneve.AWS_OPTION_CLASS
        opt_class = rng.choice((aws, aws, 0xFFF0, 0x0000, 0xFFFF, rng.randrange(1 << 16)))
        opt_type = rng.choice((1, 2, 3, 0x81, 0x83, 0x7F, 0x80, rng.randrange(256)))
        words = rng.choice((0, 1, 2, 31, rng.randrange(32)))
        declared = words if rng.random() < 0.8 else rng.randrange(32)
        flags = rng.randrange(8) << 5 if rng.random() < 0.2 else 0
        return bytes((opt_class >> 8, opt_class & 0xFF, opt_type, flags | declared)) + rng.randbytes(words * 4)

    def _insert_option(self, data: bytearray) -> bytearray:
        if len(data) < geneve.BASE_LENGTH:
            return data
        offsets = _option_offsets(data) + [_header_end(data)]
        at = self.rng.choice(offsets)
        option = self._new_option()
        data[at:at] = option
        if self.rng.random() < 0.8:
            data[0] = (data[0] & 0xC0) | (((data[0] & 0x3F) + len(option) // 4) & 0x3F)
        return data

    def _remove_option(self, data: bytearray) -> bytearray:
        offsets = _option_offsets(data)
        if offsets:
            index = self.rng.randrange(len(offsets))
            start = offsets[index]
            declared_end = start + 4 + (data[start + 3] & 0x1F) * 4
            stop = min(len(data), offsets[index + 1] if index + 1 < len(offsets) else declared_end)
            del data[start:stop]
            if self.rng.random() < 0.8:
                data[0] = (data[0] & 0xC0) | (((data[0] & 0x3F) - (stop - start) // 4) & 0x3F)
        return data

    def _swap_options(self, data: bytearray) -> bytearray:
        """Duplicate or reorder whole option TLVs (OptLen is fixed up for a duplicate)."""
        offsets = _option_offsets(data)
        if not offsets:
            return data
        end = _header_end(data)
        bounds = list(zip(offsets, offsets[1:] + [end]))
        start, stop = self.rng.choice(bounds)
        option = bytes(data[start:stop])
        if self.rng.random() < 0.5 and len(bounds) > 1:
            del data[start:stop]
            other = self.rng.choice(_option_offsets(data) or [geneve.BASE_LENGTH])
            data[other:other] = option
        else:
            data[end:end] = option
            data[0] = (data[0] & 0xC0) | (((data[0] & 0x3F) + len(option) // 4) & 0x3F)
        return data

    def _splice(self, data: bytearray) -> bytearray:
        """Header of one packet with the rest of another, or a crossover at random points."""
        rng = self.rng
        other = rng.choice(self.corpus.payloads)
        if rng.random() < 0.5:
            end = _header_end(data)
            return data[:end] + bytearray(other[_header_end(bytearray(other)):])
        cut = rng.randrange(len(data) + 1)
        return data[:cut] + bytearray(other[rng.randrange(len(other) + 1):])

    def _splice_inner(self, data: bytearray) -> bytearray:
        rng = self.rng
        other = rng.choice(self.corpus.inners)
        return data[: rng.randrange(len(data) + 1)] + bytearray(other[rng.randrange(len(other) + 1):])

    def _mutate_inner(self, data: bytearray) -> bytearray:
        end = _header_end(data)
        return data[:end] + bytearray(self.inner(bytes(data[end:]), 1))

    def _ip_field(self, data: bytearray) -> bytearray:
        """Fields the IPv4/IPv6 parser branches on: version/IHL, flags/fragment, protocol, next
        header and extension header lengths, ICMP type."""
        if not data:
            return data
        rng = self.rng
        if data[0] >> 4 == 6:
            spots = (0, 6, 40, 41, 48, 49)
            values = (0, 6, 17, 43, 44, 58, 60, 59, 0xFF, 1, 128, 129)
        else:
            spots = (0, 0, 6, 7, 9, 20, 21)
            values = (0x45, 0x46, 0x4F, 0x40, 0x44, 0x60, 0x20, 0x3F, 0xFF, 1, 3, 6, 11, 17, 58)
        spot = rng.choice(spots)
        if spot < len(data):
            data[spot] = rng.choice(values) if rng.random() < 0.7 else rng.randrange(256)
        return data

    def _udp_length(self, data: bytearray) -> bytearray:
        if data:
            at = (data[0] & 0x0F) * 4 + 4
            if at + 2 <= len(data):
                value = self.rng.choice((0, 1, 7, 8, 9, 0xFFFF, len(data), self.rng.randrange(1 << 16)))
                data[at : at + 2] = value.to_bytes(2, "big")
        return data


@dataclass(frozen=True)
class Crash:
    """An exception that escaped a target (or a broken property), with what reproduces it."""

    iteration: int
    target: str
    call: str
    error: str
    traceback: str

    @property
    def signature(self) -> tuple[str, str, str]:
        lines = [line for line in self.traceback.splitlines() if line.strip().startswith("File ")]
        return self.target, self.error.split("(")[0], lines[-1].strip() if lines else ""


@dataclass
class FuzzReport:
    seed: int
    iterations: int = 0
    elapsed_s: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)
    crash_count: int = 0

    @property
    def rate(self) -> float:
        return self.iterations / self.elapsed_s if self.elapsed_s else 0.0


@dataclass(frozen=True)
class Sent:
    """A packet the emulator sent to a target, so a return of it (or of a variant) is plausible."""

    gwlb: int
    address: bytes
    source_port: int
    payload: bytes


def _hex(data: bytes) -> str:
    return f"bytes.fromhex('{data.hex()}')"


class Fuzzer:
    """Runs random targets on mutated seeds; `run` may be called repeatedly and continues."""

    def __init__(self, seed: int, corpus: Corpus) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.corpus = corpus
        self.mutator = Mutator(self.rng, corpus)
        self.now = 1000.0
        self.gwlbs = [
            Gwlb(list(ENDPOINTS), list(TARGETS), settings, self._clock, random.Random(seed * 31 + index))
            for index, settings in enumerate(VARIANTS)
        ]
        for gwlb in self.gwlbs:
            for target in range(len(TARGETS)):
                gwlb.set_health(target, True)
        self.addresses = [ipaddress.IPv4Address(t.address).packed for t in TARGETS]
        self.live: list[Sent] = []
        self.previous: list[Sent] = []
        self.iteration = 0
        self.report = FuzzReport(seed)
        self._seen: set[tuple[str, str, str]] = set()
        self._new_epoch()

    def _clock(self) -> float:
        return self.now

    def run(self, iterations: int) -> FuzzReport:
        rng = self.rng
        started = time.perf_counter()
        for _ in range(iterations):
            if self.iteration and self.iteration % EPOCH == 0:
                self._new_epoch()
            pick = rng.random()
            if pick < 0.55:
                self._from_target()
            elif pick < 0.7:
                self._from_endpoint()
            elif pick < 0.8:
                self._geneve()
            elif pick < 0.9:
                self._parse_inner()
            else:
                self._parse_ipv4_udp()
            self.iteration += 1
        self.report.iterations += iterations
        self.report.elapsed_s += time.perf_counter() - started
        return self.report

    def _new_epoch(self) -> None:
        """Time passes (sometimes past every idle timeout); the seeds' flows are sent again, so
        returns hit live cookies, and the previous epoch's packets may now carry stale ones."""
        self.now += 1.0
        if self.rng.random() < 0.25:
            self.now += TIMEOUTS.tcp_idle_s + 1
        self.previous = self.live
        self.live = []
        for index, gwlb in enumerate(self.gwlbs):
            gwlb.tick()
            for inner in self.corpus.inners:
                for endpoint in range(len(ENDPOINTS)):
                    sent = self._call("from_endpoint", lambda: gwlb.from_endpoint(endpoint, inner),
                                      lambda: f"fuzzer.gwlbs[{index}].from_endpoint({endpoint}, {_hex(inner)})",
                                      (Encapsulated, DropReason), count=False)
                    if isinstance(sent, Encapsulated):
                        self.live.append(Sent(index, self.addresses[sent.target], sent.source_port, sent.payload))
        if not self.live:
            raise RuntimeError("fuzzer set-up: no seed inner packet created a flow; the corpus has no usable ones")

    def _from_target(self) -> None:
        rng, mutator = self.rng, self.mutator
        pool = self.previous if self.previous and rng.random() < 0.1 else self.live
        live = rng.choice(pool)
        base = rng.random()
        if base < 0.7:
            payload = live.payload
        elif base < 0.9:
            payload = mutator.graft(rng.choice(self.corpus.payloads), live.payload)
        else:
            payload = mutator.random_bytes()
        if rng.random() < 0.9:
            payload = mutator.geneve(payload)
        if rng.random() < 0.3:
            payload = mutator.graft(payload, rng.choice(self.live).payload)
        source = live.address
        roll = rng.random()
        if roll < 0.05:
            source = rng.choice(self.addresses)
        elif roll < 0.08:
            source = rng.randbytes(4)
        source_port = live.source_port if rng.random() < 0.8 else rng.randrange(1 << 16)
        dest_port = geneve.GENEVE_PORT if rng.random() < 0.97 else rng.randrange(1 << 16)
        gwlb = self.gwlbs[live.gwlb]
        self._call(
            "from_target", lambda: gwlb.from_target(source, source_port, dest_port, payload),
            lambda: f"fuzzer.gwlbs[{live.gwlb}].from_target({_hex(source)}, {source_port}, {dest_port}, {_hex(payload)})",
            (Delivery, DropReason),
        )

    def _from_endpoint(self) -> None:
        rng = self.rng
        inner = self._variant(self.mutator.inner, self.corpus.inners)
        index = rng.randrange(len(self.gwlbs))
        endpoint = rng.randrange(len(ENDPOINTS))
        gwlb = self.gwlbs[index]
        self._call("from_endpoint", lambda: gwlb.from_endpoint(endpoint, inner),
                   lambda: f"fuzzer.gwlbs[{index}].from_endpoint({endpoint}, {_hex(inner)})", (Encapsulated, DropReason))

    def _geneve(self) -> None:
        rng = self.rng
        seed = rng.choice(self.corpus.payloads) if rng.random() < 0.5 else rng.choice(self.live).payload
        payload = self.mutator.geneve(seed) if rng.random() < 0.95 else self.mutator.random_bytes()
        self._call("geneve.split", lambda: _split_round_trip(payload), lambda: f"geneve.split({_hex(payload)})",
                   expected_error=geneve.GeneveError)

    def _parse_inner(self) -> None:
        inner = self._variant(self.mutator.inner, self.corpus.inners)
        self._call("parse_inner", lambda: parse_inner(inner), lambda: f"inet.parse_inner({_hex(inner)})",
                   expected_error=PacketError)

    def _parse_ipv4_udp(self) -> None:
        outer = self._variant(self.mutator.outer, self.corpus.outers)
        self._call("parse_ipv4_udp", lambda: parse_ipv4_udp(outer), lambda: f"inet.parse_ipv4_udp({_hex(outer)})",
                   expected_error=PacketError)

    def _variant(self, mutate: Callable[[bytes], bytes], seeds: tuple[bytes, ...]) -> bytes:
        """Usually a mutated seed, sometimes bytes with no structure at all."""
        if self.rng.random() < 0.95:
            return mutate(self.rng.choice(seeds))
        return self.mutator.random_bytes()

    def _call(
        self, target: str, call: Callable[[], object], describe: Callable[[], str],
        returns: tuple[type, ...] | None = None, expected_error: type[Exception] | None = None,
        count: bool = True,
    ) -> object:
        """Call one target; count its outcome (unless it is set-up) or record a crash."""
        try:
            result = call()
        except Exception as error:  # noqa: BLE001  (finding escaped exceptions is the point)
            if expected_error is not None and isinstance(error, expected_error):
                self.report.outcomes[f"{target} {type(error).__name__}"] += 1
                return None
            self._crash(target, describe(), repr(error), traceback.format_exc())
            return None
        if returns is not None and not isinstance(result, returns):
            self._crash(target, describe(), f"returned {result!r}, expected one of {[t.__name__ for t in returns]}", "")
            return None
        if count:
            self.report.outcomes[_outcome(target, result)] += 1
        return result

    def _crash(self, target: str, text: str, error: str, trace: str) -> None:
        self.report.crash_count += 1
        self.report.outcomes[f"{target} CRASH {error.split('(')[0]}"] += 1
        crash = Crash(self.iteration, target, text, error, trace)
        if crash.signature not in self._seen and len(self.report.crashes) < MAX_CRASHES_KEPT:
            self._seen.add(crash.signature)
            self.report.crashes.append(crash)


class RoundTripError(AssertionError):
    """A decoded GENEVE header did not encode back to the bytes it was decoded from."""


def _split_round_trip(payload: bytes) -> geneve.GeneveHeader:
    header, raw, inner = geneve.split(payload)
    if header.encode() != raw or raw + inner != payload:
        raise RoundTripError(f"decode/encode changed the header: {raw.hex()} -> {header.encode().hex()}")
    return header


def _outcome(target: str, result: object) -> str:
    if isinstance(result, DropReason):
        return f"{target} {result.value}"
    if isinstance(result, Delivery):
        return f"{target} delivered"
    if isinstance(result, Encapsulated):
        return f"{target} encapsulated"
    return f"{target} ok"
