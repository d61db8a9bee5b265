"""Attaching to a tun device (IFF_TUN | IFF_NO_PI: bare IP packets, no Ethernet)."""

from __future__ import annotations

import fcntl
import os
import struct

from harness import netns

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str, namespace: str | None = None) -> int:
    """A non-blocking fd of tun `name`, created if absent, in `namespace` if one is given."""
    if namespace is None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    else:
        with netns.entered(namespace):
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd
