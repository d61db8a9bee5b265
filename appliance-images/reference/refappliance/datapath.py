"""The single-threaded data path: one selector over the GENEVE socket and every egress tun.

From the GWLB: parse, cache the header for the inner flow, write the inner packet to the endpoint's
ingress tun. From an egress tun: look the flow up, rebuild the outer IPv4/UDP header (addresses
swapped, the GWLB's source port kept, destination 6081), echo the cached GENEVE header and send it
through a raw socket. Faults hook in at the points named in `faults.Point`.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from . import geneve
from .faults import FaultSet, Point, Reaction
from .flows import FlowCache, FlowEntry, flow_key, sender
from .stats import Drop, PacketDropped, Stats
from .tunnels import TunPair, endpoint_label

log = logging.getLogger(__name__)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
RECV_SIZE = 65535
BATCH = 64
STALL_S = 0.005
TICK_S = 0.5
SOCKET_BUFFER = 4 << 20


@dataclass(frozen=True)
class Config:
    tun_mtu: int = 8500
    flow_timeout: float = 350.0
    create_hook: Path | None = None
    destroy_hook: Path | None = None
    port: int = geneve.PORT


def _local_address(ancdata: list[tuple[int, int, bytes]]) -> str:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntoa(data[8:12])
    raise RuntimeError("IP_PKTINFO missing from a received datagram")


class Datapath:
    def __init__(self, config: Config, faults: FaultSet) -> None:
        self.config = config
        self.faults = faults
        self.stats = Stats()
        self.flows = FlowCache(config.flow_timeout)
        self.tunnels: dict[int, TunPair] = {}
        self._running = True
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self.udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.udp.bind(("0.0.0.0", config.port))
        self.udp.setblocking(False)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.udp, selectors.EVENT_READ)

    def snapshot(self) -> dict[str, object]:
        return {
            **self.stats.snapshot(),
            "flows": len(self.flows),
            "tunnels": [tunnel.describe() for tunnel in list(self.tunnels.values())],
            "faults": list(self.faults.names),
        }

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        while self._running:
            for key, _ in self.selector.select(TICK_S):
                if key.data is None:
                    self._from_gwlb()
                else:
                    self._from_egress(key.data)
            self.flows.expire()

    def close(self) -> None:
        for tunnel in self.tunnels.values():
            self.selector.unregister(tunnel.egress_fd)
            tunnel.close(self.config.destroy_hook)
        self.tunnels.clear()
        self.selector.close()
        self.udp.close()
        self.raw.close()

    def _drop(self, reason: Drop, detail: object = "") -> None:
        self.stats.dropped(reason)
        log.debug("drop %s %s", reason, detail)

    def _tunnel(self, eni: int) -> TunPair:
        tunnel = self.tunnels.get(eni)
        if tunnel is None:
            if not self.faults.apply(Point.NEW_TUNNEL, True):
                raise PacketDropped(Drop.FAULT, f"no tunnel for {endpoint_label(eni)}, an endpoint first seen late")
            try:
                tunnel = TunPair.create(eni, mtu=self.config.tun_mtu, hook=self.config.create_hook)
            except OSError as error:
                raise PacketDropped(Drop.TUNNEL_ERROR, str(error)) from error
            self.selector.register(tunnel.egress_fd, selectors.EVENT_READ, tunnel)
            self.tunnels[eni] = tunnel
        return tunnel

    def _from_gwlb(self) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, flags, gwlb = self.udp.recvmsg(RECV_SIZE, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return
            self.stats.received(len(data))
            try:
                if flags & socket.MSG_TRUNC:
                    raise PacketDropped(Drop.TRUNCATED, "datagram larger than the receive buffer")
                packet = geneve.parse(data)
                key = self.faults.apply(Point.FLOW_KEY, flow_key(packet.eni, packet.payload))
                inner = self.faults.apply(Point.INGRESS, packet.payload)
                if inner is None:
                    raise PacketDropped(Drop.FAULT, "ingress")
                tunnel = self._tunnel(packet.eni)
                origin = self.faults.apply(Point.SENDER, sender(packet.payload))
                entry = FlowEntry(packet.header, gwlb, _local_address(ancdata), origin)
                self.flows.update(key, entry, refresh=self.faults.apply(Point.REFRESH, True))
                try:
                    os.write(tunnel.ingress_fd, inner)
                except OSError as error:
                    raise PacketDropped(Drop.TUN_WRITE_ERROR, str(error)) from error
                log.debug("in %s:%d %s %d bytes -> %s", *gwlb, key, len(inner), tunnel.ingress)
            except PacketDropped as drop:
                self._drop(drop.reason, f"from {gwlb[0]}:{gwlb[1]}: {drop}")
                self._misbehave(self.faults.apply(Point.MALFORMED, Reaction.DROP), data, gwlb)

    def _misbehave(self, reaction: Reaction, data: bytes, gwlb: tuple[str, int]) -> None:
        """What a faulty appliance does with a packet it could not accept (a correct one: nothing)."""
        if reaction is Reaction.CRASH:
            log.error("crashing on a malformed packet (fault)")
            os._exit(70)
        elif reaction is Reaction.ECHO:
            self.udp.sendto(data, gwlb)
        elif reaction is Reaction.STALL:
            time.sleep(STALL_S)

    def _from_egress(self, tunnel: TunPair) -> None:
        for _ in range(BATCH):
            try:
                inner = os.read(tunnel.egress_fd, RECV_SIZE)
            except BlockingIOError:
                return
            try:
                self._reply(tunnel, inner)
            except PacketDropped as drop:
                self._drop(drop.reason, f"from {tunnel.egress}: {drop}")

    def _reply(self, tunnel: TunPair, inner: bytes) -> None:
        key = self.faults.apply(Point.FLOW_KEY, flow_key(tunnel.eni, inner))
        entry = self.flows.get(key, self.faults.apply(Point.SENDER, sender(inner)))
        if entry is None:
            raise PacketDropped(Drop.NO_FLOW, key)
        header = self.faults.apply(Point.HEADER, entry.header)
        sport, dport = self.faults.apply(Point.PORTS, (entry.gwlb[1], self.config.port))
        outer = geneve.outer_header(src=entry.local, dst=entry.gwlb[0], sport=sport, dport=dport,
                                    payload_len=len(header) + len(inner))
        packet = self.faults.apply(Point.EGRESS, outer + header + inner)
        if packet is None:
            raise PacketDropped(Drop.FAULT, "egress")
        try:
            self.raw.sendto(packet, (entry.gwlb[0], 0))
        except OSError as error:
            raise PacketDropped(Drop.SEND_ERROR, f"{len(packet)} bytes to {entry.gwlb[0]}: {error}") from error
        self.stats.sent(len(packet))
        log.debug("out %s %d bytes -> %s:%d", key, len(inner), entry.gwlb[0], dport)
