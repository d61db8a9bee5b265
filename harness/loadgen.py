"""Offered load for measurements: the PERF checks (conformance/test_perf.py) and
benchmarks/emulator_throughput.py share it, so both count the same way.

- `send`: UDP at a fixed offered rate over a few flows, batched with sendmmsg(2) through ctypes so
  that the sender costs the machine as little as possible (on a small machine a flooding sender
  takes the CPU the measured path needs).
- `send_new_flows`: one packet per new flow (a fresh source/destination port pair each) from a raw
  socket, paced; what a GWLB and an appliance pay per new flow.
- `round_trips`: timestamped UDP request/response against an echo server, one at a time.
- `sink`: holds UDP ports without reading, so the receiving kernel answers nothing and no
  userspace receiver competes for the CPU; arrivals are counted from the receiving interface's
  rx counter (`rx_counter`), readable from any namespace through /proc/PID/net/dev.

Every sender takes `netns` (e.g. /proc/PID/ns/net): its sockets are created there and keep
sending from there, so a check sends from a testbed node without starting a process. The module
is also a command (`python -m harness.loadgen send|sink`) for the benchmark's namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import netns as namespaces
from harness.inet import build_ipv4_udp

BATCH = 64
IP_UDP_HEADERS = 28
SINK_PORT = 9
BULK_PORTS = range(6200, 6216)
"""Destination ports of PERF's bulk traffic, which the run's capture leaves out (`capture_filter`)."""
SEND_BUFFER = 4 << 20
_SO_RCVBUF_MIN = 4096


def capture_filter() -> str:
    """The GWLB capture's BPF filter: GENEVE and ICMP, except PERF's bulk traffic (inner IPv4 UDP
    to `BULK_PORTS` under a 40-byte GWLB header), which would grow the pcap by ~50 MB per run
    and gigabytes with faithful timers while telling nothing a failing check needs."""
    bulk = (f"udp[8] & 0x3f = 8 and udp[48] = 0x45 and udp[57] = 17 and "
            f"udp[70:2] >= {BULK_PORTS.start} and udp[70:2] < {BULK_PORTS.stop}")
    return f"(udp port 6081 and not ({bulk})) or icmp"


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


@dataclass(frozen=True)
class Sent:
    """What a sender offered: every packet handed to the kernel counts (a batch the kernel refuses
    is the path's loss), over the whole trial and over its steady part (from `warmup_s` on).
    Times are CLOCK_MONOTONIC, shared by all network namespaces."""

    packets: int
    start: float
    end: float
    steady_packets: int
    steady_start: float

    @property
    def rate(self) -> float:
        """Offered packets/s over the whole trial (what the sender really achieved)."""
        return self.packets / (self.end - self.start) if self.end > self.start else 0.0


@contextlib.contextmanager
def _inside(netns: str | None) -> Iterator[None]:
    if netns is None:
        yield
    else:
        with namespaces.entered(netns):
            yield


def _pace(rate: float, duration: float, warmup_s: float, burst: Callable[[int, int], int]) -> Sent:
    """Call `burst(offered so far, due)` (which sends up to `due` packets and returns how many it
    offered) so that `rate` packets/s go out for `duration` s."""
    offered = 0
    start = time.monotonic()
    steady_start, steady_from = start + duration, -1
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        if elapsed >= warmup_s and steady_from < 0:
            steady_start, steady_from = start + elapsed, offered
        due = min(BATCH, int(rate * elapsed) + 1 - offered)
        if due <= 0:
            time.sleep(max(0.0, min((offered + 1) / rate - elapsed, duration - elapsed)))
            continue
        sent = burst(offered, due)
        if sent <= 0:
            break
        offered += sent
    end = time.monotonic()
    steady = offered - steady_from if steady_from >= 0 else 0
    return Sent(offered, start, end, steady, steady_start)


def send(dst: str, port: int, size: int, rate: float, duration: float, flows: int = 4,
         warmup_s: float = 0.0, netns: str | None = None) -> Sent:
    """Offer `rate` packets/s of `size`-byte IPv4 UDP packets (headers included) to `dst`:`port`
    for `duration` s, round-robin over `flows` sockets (source ports)."""
    if size < IP_UDP_HEADERS:
        raise ValueError(f"an IPv4 UDP packet has at least {IP_UDP_HEADERS} bytes, not {size}")
    libc = ctypes.CDLL(None, use_errno=True)
    length = size - IP_UDP_HEADERS
    payload = ctypes.create_string_buffer(b"\x5a" * length, max(length, 1))
    iovec = _Iovec(ctypes.cast(payload, ctypes.c_void_p), length)
    messages = (_Mmsghdr * BATCH)()
    for message in messages:
        message.msg_hdr.msg_iov = ctypes.pointer(iovec)
        message.msg_hdr.msg_iovlen = 1
    with _inside(netns):
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.connect((dst, port))
    turn = [0]

    def burst(_: int, due: int) -> int:
        libc.sendmmsg(sockets[turn[0]].fileno(), messages, due, 0)
        turn[0] = (turn[0] + 1) % flows
        return due

    try:
        return _pace(rate, duration, warmup_s, burst)
    finally:
        for sock in sockets:
            sock.close()


def flow_ports(first_source: int, last_source: int, destinations: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(source, destination) port pairs, each once: every source port towards the first
    destination port, then towards the next, ..."""
    for destination in destinations:
        for source in range(first_source, last_source + 1):
            yield source, destination


def send_new_flows(src: str, dst: str, ports: Iterator[tuple[int, int]], count: int, rate: float, size: int = 64,
                   netns: str | None = None) -> Sent:
    """Offer `count` new UDP flows at `rate` flows/s, one `size`-byte packet each, from a raw
    socket (so a flow costs one system call, not a socket). StopIteration if `ports` runs out."""
    source, destination = socket.inet_aton(src), socket.inet_aton(dst)
    payload = b"\x5a" * (size - IP_UDP_HEADERS)
    packets = [build_ipv4_udp(source, destination, sport, dport, payload) for sport, dport in
               (next(ports) for _ in range(count))]
    with _inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    def burst(offered: int, due: int) -> int:
        batch = packets[offered:offered + due]
        for packet in batch:
            try:
                sock.sendto(packet, (dst, 0))
            except OSError:
                pass
        return len(batch)

    try:
        return _pace(rate, count / rate + 1.0, 0.0, burst)
    finally:
        sock.close()


@dataclass(frozen=True)
class RoundTrips:
    """Round-trip times in microseconds of the requests that came back, and how many did not."""

    rtt_us: tuple[float, ...]
    lost: int


def round_trips(dst: str, port: int, size: int, count: int, timeout_s: float, netns: str | None = None) -> RoundTrips:
    """Send `count` UDP requests of `size` bytes (IPv4 packet) one at a time to an echo server and
    time each until its echo comes back (at most `timeout_s` each)."""
    with _inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((dst, port))
    sock.settimeout(timeout_s)
    length = max(size - IP_UDP_HEADERS, 8)
    rtts, lost = [], 0
    try:
        for seq in range(count):
            request = seq.to_bytes(8, "big") + b"\x5a" * (length - 8)
            started = time.perf_counter_ns()
            sock.send(request)
            deadline = started + int(timeout_s * 1e9)
            while True:
                try:
                    reply = sock.recv(65536)
                except (TimeoutError, ConnectionRefusedError):
                    lost += 1
                    break
                if reply[:8] == request[:8]:
                    rtts.append((time.perf_counter_ns() - started) / 1000)
                    break
                left = (deadline - time.perf_counter_ns()) / 1e9
                if left <= 0:
                    lost += 1
                    break
                sock.settimeout(left)
            sock.settimeout(timeout_s)
    finally:
        sock.close()
    return RoundTrips(tuple(rtts), lost)


def sink(ports: Iterable[int]) -> None:
    """Hold UDP `ports` without reading, until killed: datagrams die in the full socket buffers."""
    held = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SO_RCVBUF_MIN)
        sock.bind(("0.0.0.0", port))
        held.append(sock)
    while True:
        signal.pause()


def rx_counter(pid: int, interface: str) -> int:
    """Packets received by `interface` in the network namespace of process `pid`."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, fields = line.partition(":")
        if name.strip() == interface:
            return int(fields.split()[1])
    raise KeyError(f"no interface {interface} in the network namespace of process {pid}")


def wait_bound(pid: int, port: int, timeout_s: float = 5.0) -> None:
    """Until a UDP socket in the namespace of process `pid` is bound to `port`."""
    deadline = time.monotonic() + timeout_s
    needle = f":{port:04X} "
    while needle not in Path(f"/proc/{pid}/net/udp").read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no UDP socket bound to port {port} within {timeout_s:g} s")
        time.sleep(0.02)


def wait_quiet(received: Callable[[], int], quiet_s: float, timeout_s: float) -> bool:
    """Until `received()` stops changing for `quiet_s` (a backlog has drained); False if it was
    still changing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last, since = received(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(0.01, quiet_s))
        now = received()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.loadgen", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    sender = roles.add_parser("send", help="offer UDP at a fixed rate; prints what was offered as JSON")
    sender.add_argument("--dst", required=True)
    sender.add_argument("--port", type=int, default=SINK_PORT)
    sender.add_argument("--size", type=int, required=True, help="IPv4 packet size, headers included")
    sender.add_argument("--rate", type=float, required=True, help="packets/s")
    sender.add_argument("--duration", type=float, required=True, help="seconds")
    sender.add_argument("--flows", type=int, default=4)
    sender.add_argument("--warmup", type=float, default=0.0, help="seconds before the steady part starts")
    holder = roles.add_parser("sink", help="hold UDP ports without reading them")
    holder.add_argument("--port", type=int, action="append", help=f"repeatable (default {SINK_PORT})")
    args = parser.parse_args(argv)
    if args.role == "send":
        sent = send(args.dst, args.port, args.size, args.rate, args.duration, args.flows, args.warmup)
        print(json.dumps(asdict(sent)))
    else:
        sink(args.port or [SINK_PORT])
    return 0


if __name__ == "__main__":
    sys.exit(main())
