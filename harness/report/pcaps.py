"""Per-check captures cut out of the run's one GWLB-side capture.

The testbed records the whole run (`pcaps/gwlb.pcap`, written by tcpdump); a reader of a failure
wants only the packets of that check. The plugin knows when each check (and the wider-scoped
fixtures it used, which may have sent its traffic) ran, so the cut is by timestamp: one streaming
pass over the capture writes every packet into each output whose time windows contain it. Packets
are copied as bytes with the capture's own link type, so Wireshark/tshark dissect them as in the
original (GENEVE, with the profile's option class, e.g. AWS's 0x0108).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import PcapWriter, RawPcapNgReader, RawPcapReader

from harness.errors import HarnessError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


class CaptureError(HarnessError):
    """The run's capture could not be read."""


@dataclass(frozen=True)
class Window:
    """A wall-clock interval in seconds since the epoch, start included, end excluded."""

    start: float
    end: float

    def widened(self, seconds: float) -> Window:
        return Window(self.start - seconds, self.end + seconds)


def pcap_name(nodeid: str) -> str:
    """A file name for a check's capture, e.g. `test_mtu.test_boundary_sizes-1500.pcap`."""
    path, _, name = nodeid.partition("::")
    stem = Path(path).stem if name else ""
    readable = ".".join(part for part in (stem, name.replace("::", ".")) if part)
    return _UNSAFE.sub("-", readable.replace("[", "-").replace("]", "")).strip("-.") + ".pcap"


def cut(source: Path, outputs: Mapping[Path, Sequence[Window]]) -> dict[Path, int]:
    """Copy the packets of `source` that fall into each output's windows; count them per output.

    Outputs that would hold no packet are not created. A capture still being written (tcpdump
    -U) is fine: reading stops at the last complete record. Packets reach tcpdump in blocks, up
    to a second late unless it runs with --immediate-mode: the caller waits for that first.
    """
    counts = dict.fromkeys(outputs, 0)
    if not outputs:
        return counts
    try:
        reader = RawPcapReader(str(source))
    except (OSError, Scapy_Exception) as error:
        raise CaptureError(f"cannot read the capture {source}: {error}") from None
    if isinstance(reader, RawPcapNgReader):
        reader.close()
        raise CaptureError(f"{source}: expected a pcap file as tcpdump -w writes, found pcapng")
    boundaries, covering = _segments(outputs)
    with reader, ExitStack() as stack:
        writers: dict[Path, PcapWriter] = {}
        scale = 1e-9 if reader.nano else 1e-6
        for data, meta in reader:
            segment = bisect_right(boundaries, meta.sec + meta.usec * scale) - 1
            if not 0 <= segment < len(covering):
                continue
            for path in covering[segment]:
                if path not in writers:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writers[path] = stack.enter_context(
                        PcapWriter(str(path), linktype=reader.linktype, nano=reader.nano,
                                   snaplen=reader.snaplen)
                    )
                    writers[path].write_header(None)
                writers[path].write_packet(data, sec=meta.sec, usec=meta.usec,
                                           caplen=len(data), wirelen=meta.wirelen)
                counts[path] += 1
    return counts


def _segments(outputs: Mapping[Path, Sequence[Window]]) -> tuple[list[float], list[tuple[Path, ...]]]:
    """Split time at every window edge; each segment [b[i], b[i+1]) lists the outputs covering it.

    A packet then finds its outputs with one bisection, however many checks failed.
    """
    boundaries = sorted({edge for windows in outputs.values() for w in windows for edge in (w.start, w.end)})
    covering = [
        tuple(path for path, windows in outputs.items()
              if any(w.start <= start and end <= w.end for w in windows))
        for start, end in zip(boundaries, boundaries[1:])
    ]
    return boundaries, covering
