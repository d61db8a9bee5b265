"""Sends garbage to the GWLB's GENEVE port from the appliance, bounded in rate and time.

Started beside the reference appliance by this folder's appliance.yaml, so the run sees an
appliance that floods the GWLB with packets it never asked for while serving correctly otherwise.
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gwlb", required=True, help="the GWLB's address")
    parser.add_argument("--pps", type=int, default=1000, help="packets per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long (default 60)")
    args = parser.parse_args()
    garbage = [os.urandom(size) for size in (8, 64, 300, 1400)]
    batch = max(1, args.pps // 100)
    end = time.monotonic() + args.seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() < end:
            tick = time.monotonic()
            for i in range(batch):
                try:
                    sock.sendto(garbage[i % len(garbage)], (args.gwlb, 6081))
                except OSError:
                    pass
            time.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))


if __name__ == "__main__":
    main()
