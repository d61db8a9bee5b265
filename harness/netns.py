"""Entering another network namespace for one call (Python 3.11 has no os.setns).

The emulator runs in the GWLB's namespace but must open each endpoint's tun device, which the
kernel binds to the namespace of the process that opens /dev/net/tun. Only the calling thread
moves, and it moves back before the context ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """Run the body in the network namespace at `netns_path` (e.g. /proc/PID/ns/net)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
