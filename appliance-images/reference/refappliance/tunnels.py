"""One pair of tun devices per GWLB endpoint, and the hook that routes between them.

Inner packets are written to the ingress tun (`gwi-…`); the kernel routes them according to what
the create hook set up, and the appliance reads them back from the egress tun (`gwo-…`). The hook
uses gwlbtun's calling convention: `HOOK CREATE|DESTROY <ingress> <egress> <vpce-id>`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAME_DIGITS = 11
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
IFF_UP = 0x1
IFREQ_SIZE = 40
HOOK_TIMEOUT_S = 30


def encode_eni(eni: int) -> str:
    """The 64-bit ENI in base62, 11 characters: short enough for a 15-character interface name."""
    if not 0 <= eni < 1 << 64:
        raise ValueError(f"ENI {eni} is not a 64-bit unsigned value")
    digits = []
    for _ in range(NAME_DIGITS):
        eni, digit = divmod(eni, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def tun_names(eni: int) -> tuple[str, str]:
    """(ingress, egress) tun names of an endpoint."""
    code = encode_eni(eni)
    return f"gwi-{code}", f"gwo-{code}"


def endpoint_label(eni: int) -> str:
    """The endpoint as the hook receives it (gwlbtun's format)."""
    return f"vpce-{eni:017x}"


def _ifreq(name: str, fmt: str, value: int) -> bytes:
    return struct.pack(f"16s{fmt}", name.encode(), value).ljust(IFREQ_SIZE, b"\0")


def open_tun(name: str, mtu: int) -> int:
    """Create a tun device (IFF_TUN|IFF_NO_PI) with `mtu`, bring it up and return its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", IFF_TUN | IFF_NO_PI))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
            fcntl.ioctl(ctl, SIOCSIFMTU, _ifreq(name, "i", mtu))
            flags = struct.unpack_from("16sH", fcntl.ioctl(ctl, SIOCGIFFLAGS, _ifreq(name, "H", 0)))[1]
            fcntl.ioctl(ctl, SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))
    except OSError as error:
        os.close(fd)
        raise OSError(error.errno, f"cannot create tun {name} (MTU {mtu}): {error.strerror}") from error
    return fd


def run_hook(hook: Path | None, action: str, ingress: str, egress: str, eni: int) -> None:
    """Run the hook; a failing hook is logged with its output, it does not stop the appliance."""
    if hook is None:
        return
    command = [str(hook), action, ingress, egress, endpoint_label(eni)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("hook %s failed: %s", " ".join(command), error)
        return
    if result.returncode:
        log.error("hook %s exited %d: %s", " ".join(command), result.returncode, result.stderr.strip())


@dataclass(frozen=True)
class TunPair:
    eni: int
    ingress: str
    egress: str
    ingress_fd: int
    egress_fd: int

    @classmethod
    def create(cls, eni: int, *, mtu: int, hook: Path | None) -> TunPair:
        ingress, egress = tun_names(eni)
        ingress_fd = open_tun(ingress, mtu)
        try:
            egress_fd = open_tun(egress, mtu)
        except OSError:
            os.close(ingress_fd)
            raise
        run_hook(hook, "CREATE", ingress, egress, eni)
        log.info("tunnel for %s: ingress %s, egress %s, MTU %d", endpoint_label(eni), ingress, egress, mtu)
        return cls(eni, ingress, egress, ingress_fd, egress_fd)

    def close(self, hook: Path | None) -> None:
        """Run the DESTROY hook, then close the fds, which removes the devices."""
        run_hook(hook, "DESTROY", self.ingress, self.egress, self.eni)
        os.close(self.ingress_fd)
        os.close(self.egress_fd)

    def describe(self) -> dict[str, str]:
        return {"eni": endpoint_label(self.eni), "ingress": self.ingress, "egress": self.egress}
