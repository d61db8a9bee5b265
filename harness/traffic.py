"""Traffic endpoints that run inside testbed nodes: echo servers and clients that verify payloads.

Each client prints one JSON object (what it sent, what came back intact, its local port) so a
check can say exactly what went wrong. Payloads are deterministic per sequence number, so
truncation, corruption, duplication and loss are all told apart.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import threading
import time
from typing import Any

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3
ROUTE_MTU = 8500
WINDOW = 50
SO_RCVBUFFORCE = 33
SERVER_BUFFER = 8 * 1024 * 1024
IPV4_UDP_OVERHEAD = 28
IPV6_UDP_OVERHEAD = 48
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_DO = 2
IPV6_PMTUDISC_PROBE = 3


def payload(seq: int, size: int, tag: str = "") -> bytes:
    stamp = f"{tag}{seq:08d}".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def _sequence(data: bytes, tag: str) -> int:
    """The sequence number a payload carries, or -1 when it is not one of ours with this tag."""
    prefix, digits = data[: len(tag)], data[len(tag) : len(tag) + 8]
    return int(digits) if prefix == tag.encode() and digits.isdigit() else -1


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _overhead(host: str) -> int:
    return IPV6_UDP_OVERHEAD if ":" in host else IPV4_UDP_OVERHEAD


def _no_fragments(sock: socket.socket, beyond_route_mtu: bool = False) -> None:
    """DF on every datagram; `beyond_route_mtu` lets it exceed the hosts' 8500-byte route MTU."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE if beyond_route_mtu else IPV6_PMTUDISC_DO)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE if beyond_route_mtu else IP_PMTUDISC_DO)


def tcp_server(port: int) -> None:
    listener = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, reuse_port=True)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def udp_server(port: int) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    _no_fragments(sock)
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SERVER_BUFFER)
    sock.bind(("::", port))
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(data, peer)


def tcp_client(host: str, port: int, size: int, source_port: int, timeout: float, reset: bool) -> dict[str, Any]:
    data = payload(0, size)
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(timeout)
    result: dict[str, Any] = {"sent": size, "received": 0, "intact": False}
    try:
        sock.bind(("::" if ":" in host else "0.0.0.0", source_port))
        sock.connect((host, port))
        result["local_port"] = sock.getsockname()[1]
        sock.sendall(data)
        received = bytearray()
        while len(received) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        result["received"] = len(received)
        result["intact"] = bytes(received) == data
    except OSError as error:
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    return result


def udp_client(
    host: str, port: int, size: int, count: int, timeout: float, source_port: int = 0, tag: str = "", start_at: float = 0.0
) -> dict[str, Any]:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    _no_fragments(sock, beyond_route_mtu=size > ROUTE_MTU)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::" if ":" in host else "0.0.0.0", source_port))
    sock.connect((host, port))
    length = size - _overhead(host)
    intact, damaged = set(), 0
    result: dict[str, Any] = {"inner_size": size, "sent": count, "local_port": sock.getsockname()[1]}
    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + timeout
    for seq in range(count):
        try:
            sock.send(payload(seq, length, tag))
        except OSError as error:
            result["error"] = f"{type(error).__name__}: {error}"
            break
        deadline = min(end, time.monotonic() + timeout / count) if seq < count - 1 else end
        while seq not in intact and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionRefusedError:
                result["refused"] = True
                break
            got = _sequence(data, tag)
            if got >= 0 and data == payload(got, length, tag):
                intact.add(got)
            else:
                damaged += 1
    sock.close()
    result.update(received_intact=len(intact), damaged=damaged)
    return result


def udp_many(
    host: str, port: int, flows: int, rounds: int, timeout: float, first_port: int = 0, duration: float = 0.0
) -> dict[str, Any]:
    """`flows` concurrent UDP flows (one socket each), `rounds` echoes per flow, or as many rounds
    as fit in `duration` seconds when it is given.

    All flows stay open throughout; packets go out in windows of WINDOW so that the check
    measures concurrency, not how deep the appliance's queues are. `first_port` pins the source
    ports (first_port, first_port + 1, ...), so a check can be sure its flows are new to the GWLB.
    """
    sockets = []
    for index in range(flows):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if first_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", first_port + index))
        sock.connect((host, port))
        sockets.append(sock)
    if duration:
        rounds = 1_000_000
    stop_at = time.monotonic() + duration
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, index)
    intact = [0] * flows
    damaged = 0
    for round_ in range(rounds):
        if duration and time.monotonic() >= stop_at:
            rounds = round_
            break
        deadline = time.monotonic() + timeout
        for start in range(0, flows, WINDOW):
            window = range(start, min(start + WINDOW, flows))
            for index in window:
                sockets[index].send(payload(index * rounds + round_, 64))
            while any(intact[i] <= round_ for i in window) and (left := deadline - time.monotonic()) > 0:
                damaged += _collect(selector, intact, rounds, round_, left)
    for sock in sockets:
        sock.close()
    return {
        "flows": flows,
        "rounds": rounds,
        "complete_flows": sum(1 for n in intact if n == rounds),
        "echoes_intact": sum(intact),
        "damaged": damaged,
    }


def _collect(selector: selectors.BaseSelector, intact: list[int], rounds: int, round_: int, timeout: float) -> int:
    """Read the echoes that are ready; returns how many were damaged."""
    damaged = 0
    for key, _ in selector.select(timeout):
        index = key.data
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            continue
        if data == payload(index * rounds + round_, 64):
            intact[index] += 1
        else:
            damaged += 1
    return damaged


def tcp_stream(
    host: str, port: int, duration: float, interval: float, chunk: int, timeout: float, source_port: int = 0
) -> dict[str, Any]:
    """One long-lived connection echoing a chunk every `interval` s for `duration` s.

    Reports whether it survived and the longest gap between two echoes, so a check can tell a
    failover pause from a broken connection.
    """
    result: dict[str, Any] = {"survived": False, "echoes": 0, "max_gap_s": 0.0}
    try:
        sock = socket.create_connection((host, port), timeout=timeout, source_address=("", source_port))
    except OSError as error:
        result["error"] = f"connect: {type(error).__name__}: {error}"
        return result
    result["local_port"] = sock.getsockname()[1]
    end = time.monotonic() + duration
    last = time.monotonic()
    seq = 0
    try:
        while time.monotonic() < end:
            data = payload(seq, chunk)
            sock.sendall(data)
            received = b""
            while len(received) < chunk:
                part = sock.recv(chunk - len(received))
                if not part:
                    raise ConnectionError("closed by peer")
                received += part
            if received != data:
                raise ValueError(f"echo {seq} damaged")
            now = time.monotonic()
            result["max_gap_s"] = max(result["max_gap_s"], round(now - last, 3))
            result["echoes"], last, seq = result["echoes"] + 1, now, seq + 1
            time.sleep(interval)
        result["survived"] = True
    except (OSError, ValueError) as error:
        result["error"] = f"{type(error).__name__}: {error} after {result['echoes']} echoes"
    finally:
        sock.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.traffic")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("tcp-server", "udp-server"):
        sub.add_parser(name).add_argument("--port", type=int, required=True)
    tcp = sub.add_parser("tcp-client")
    udp = sub.add_parser("udp-client")
    for client in (tcp, udp):
        client.add_argument("--host", required=True)
        client.add_argument("--port", type=int, required=True)
        client.add_argument("--size", type=int, required=True)
        client.add_argument("--timeout", type=float, default=2.0,
                            help="seconds for the whole exchange; each echo waits at most its share")
    tcp.add_argument("--source-port", type=int, default=0)
    tcp.add_argument("--reset", action="store_true", help="close with RST (no TIME_WAIT)")
    udp.add_argument("--count", type=int, default=5)
    udp.add_argument("--source-port", type=int, default=0)
    udp.add_argument("--tag", default="", help="prefix of every payload, to tell senders apart")
    udp.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start at, to run senders together")
    many = sub.add_parser("udp-many")
    many.add_argument("--host", required=True)
    many.add_argument("--port", type=int, required=True)
    many.add_argument("--flows", type=int, default=1000)
    many.add_argument("--rounds", type=int, default=2)
    many.add_argument("--timeout", type=float, default=5.0, help="seconds per round")
    many.add_argument("--first-port", type=int, default=0, help="bind the flows to consecutive source ports from here")
    many.add_argument("--duration", type=float, default=0.0, help="repeat rounds for this many seconds")
    stream = sub.add_parser("tcp-stream")
    stream.add_argument("--host", required=True)
    stream.add_argument("--port", type=int, required=True)
    stream.add_argument("--duration", type=float, required=True)
    stream.add_argument("--interval", type=float, default=0.05)
    stream.add_argument("--chunk", type=int, default=512)
    stream.add_argument("--timeout", type=float, default=15.0, help="longest wait for one echo")
    stream.add_argument("--source-port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "tcp-server":
        tcp_server(args.port)
    elif args.command == "udp-server":
        udp_server(args.port)
    elif args.command == "tcp-client":
        print(json.dumps(tcp_client(args.host, args.port, args.size, args.source_port, args.timeout, args.reset)))
    elif args.command == "tcp-stream":
        print(json.dumps(tcp_stream(args.host, args.port, args.duration, args.interval, args.chunk, args.timeout,
                                    args.source_port)))
    elif args.command == "udp-many":
        print(json.dumps(udp_many(args.host, args.port, args.flows, args.rounds, args.timeout, args.first_port, args.duration)))
    else:
        print(json.dumps(udp_client(args.host, args.port, args.size, args.count, args.timeout, args.source_port, args.tag, args.start_at)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
