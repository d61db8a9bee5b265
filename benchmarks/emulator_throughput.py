#!/usr/bin/env python3
"""Throughput through the emulated GWLB and the reference appliance, next to the kernel's own veth
forwarding between two namespaces measured in the same run.

    emulator:  c1 ─► gwlbe1 (tun) ─► emulator ─GENEVE─► a1/a2 ─GENEVE─► emulator ─► gwlbe1 ─► s1
    baseline:  bench<pid>a ──── veth, MTU 9001 ────► bench<pid>b

The testbed is the harness's own (the default topology, or `--profile`'s; the reference appliance;
accelerated timers), built and removed with `Testbed` as `gwlb-conformance run` does. For each
inner packet size (the IPv4 packet, headers included) a sender offers UDP at a fixed rate for a
trial of a few seconds, spread over four flows (source ports) so that both targets carry traffic;
it batches with sendmmsg(2) so that it costs the machine as little as possible. The receiving host
holds a bound socket that never reads (so the kernel sends no port unreachable), and a trial counts
what reached the receiver's interface (its rx counters, sampled in the steady part of the trial),
so no userspace receiver competes for the CPU. Gbps are inner-packet bits. Both paths use the same
sender, sink and counting.

Each figure is the best of a few trials at fixed offered rates (see `best`): first one above
what a sending core can produce, then, for a path that loses more than 5% of it, rates doubling
from what it delivered, since on a small machine a flooding sender takes the CPU the path needs.
Every trial is printed as a `#` comment line.

Root is needed. The sender and the sink are harness/loadgen.py's (`python -m harness.loadgen`), shared
with the PERF checks.

    .venv/bin/python benchmarks/emulator_throughput.py [--duration 2] [--sizes 64,512,1500,8500]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from harness import loadgen, runs
from harness.descriptor import load_descriptor
from harness.profiles import PROFILES
from harness.testbed import Testbed
from harness.timers import TimersMode
from harness.topology import default_topology_path, load_topology

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "appliance-images" / "reference" / "appliance.yaml"
SIZES = (64, 512, 1500, 8500)
OFFERED_PPS = {64: 1_000_000, 512: 1_000_000, 1500: 800_000, 8500: 400_000}
PORT = 9
FLOWS = 4
WARMUP_S = 0.5
SAMPLE_S = 0.05
QUIET_S = 0.3
MAX_LOSS = 0.05
MAX_TRIALS = 6
BASELINE_MTU = 9001
BASELINE_NET = ("10.254.0.1", "10.254.0.2")


@dataclass(frozen=True)
class Figure:
    path: str
    size: int
    offered_pps: float
    pps: float

    @property
    def gbps(self) -> float:
        return self.pps * self.size * 8 / 1e9

    @property
    def loss(self) -> float:
        return max(0.0, 1 - self.pps / self.offered_pps) if self.offered_pps else 0.0

    def line(self) -> str:
        return (f"{self.path} size={self.size} pps={self.pps:.0f} gbps={self.gbps:.3f} "
                f"offered_pps={self.offered_pps:.0f} loss={self.loss:.1%}")


def sender_args(dst: str, size: int, rate: float, duration: float) -> list[str]:
    return [sys.executable, "-m", "harness.loadgen", "send", "--dst", dst, "--port", str(PORT), "--size", str(size),
            "--rate", str(rate), "--duration", str(duration), "--flows", str(FLOWS), "--warmup", str(WARMUP_S)]


def measure(path: str, size: int, rate: float, duration: float, run_sender: Callable[[list[str]], str],
            received: Callable[[], int], dst: str) -> Figure:
    """Offer `rate` for `duration` and count arrivals in the steady part of the sending window.

    The counter is sampled while the sender runs; only samples from WARMUP_S after its first send
    to its last one count, so flow set-up, queues filling and the backlog draining afterwards are
    left out; the offered rate is the sender's over the same span (CLOCK_MONOTONIC is shared by all
    network namespaces, so the sender's times apply).
    """
    wait_quiet(received)
    samples = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sender = pool.submit(run_sender, sender_args(dst, size, rate, duration))
        while not sender.done():
            samples.append((time.monotonic(), received()))
            time.sleep(SAMPLE_S)
        report = json.loads(sender.result())
    window = [(t, count) for t, count in samples if report["steady_start"] <= t <= report["end"]]
    if len(window) < 2:
        raise RuntimeError(f"{path} {size} B: the sending window held {len(window)} counter samples; use a longer --duration")
    (t0, c0), (t1, c1) = window[0], window[-1]
    return Figure(path, size, report["steady_packets"] / (report["end"] - report["steady_start"]), (c1 - c0) / (t1 - t0))


def wait_quiet(received: Callable[[], int], timeout_s: float = 10.0) -> None:
    """Until the previous figure's backlog has drained (no arrivals for QUIET_S)."""
    if not loadgen.wait_quiet(received, QUIET_S, timeout_s):
        raise RuntimeError(f"packets still arriving {timeout_s:g} s after the previous figure ended")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def baseline_namespaces() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth (MTU 9001), removed on the way out whatever happens."""
    pair = (f"bench{os.getpid()}a", f"bench{os.getpid()}b")
    created = []
    try:
        for name in pair:
            _ip("netns", "add", name)
            created.append(name)
        _ip("-n", pair[0], "link", "add", "bench0", "type", "veth", "peer", "name", "bench1", "netns", pair[1])
        for name, intf, address in zip(pair, ("bench0", "bench1"), BASELINE_NET):
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "link", "set", intf, "mtu", str(BASELINE_MTU), "up")
            _ip("-n", name, "addr", "add", f"{address}/30", "dev", intf)
        yield pair
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Trial = Callable[[int, float], Figure]


@contextlib.contextmanager
def baseline_rig(duration: float) -> Iterator[Trial]:
    """The veth pair with a sink in one namespace; trials send from the other."""
    with baseline_namespaces() as (sender_ns, sink_ns):
        sink_process = subprocess.Popen(["ip", "netns", "exec", sink_ns, sys.executable, "-m", "harness.loadgen", "sink"],
                                        stdin=subprocess.DEVNULL)
        try:
            loadgen.wait_bound(sink_process.pid, PORT)

            def run_sender(args: list[str]) -> str:
                return subprocess.run(["ip", "netns", "exec", sender_ns, *args], check=True, capture_output=True,
                                      text=True, timeout=duration + 30).stdout

            def trial(size: int, rate: float) -> Figure:
                return measure("baseline", size, rate, duration, run_sender,
                               lambda: loadgen.rx_counter(sink_process.pid, "bench1"), BASELINE_NET[1])

            yield trial
        finally:
            stop(sink_process)


@contextlib.contextmanager
def emulator_rig(duration: float, out: Path, appliance: Path, profile: str | None) -> Iterator[Trial]:
    """The profile's default testbed with `appliance`; trials send from the first consumer to the
    first server of the first endpoint."""
    topology = load_topology(default_topology_path(profile), profile)
    descriptor = load_descriptor(appliance)
    endpoint = topology.endpoints[0]
    consumer, server = endpoint.consumers.hosts[0], endpoint.servers.hosts[0]
    run_id = runs.new_run_id()
    runs.reap_dead_runs()
    with runs.RunRecord.open(run_id, "benchmark", out, topology.name) as record:
        testbed = Testbed(topology, descriptor, TimersMode.ACCELERATED, out, run_id=run_id, record=record)
        try:
            started = time.monotonic()
            testbed.start()
            print(f"# testbed up in {time.monotonic() - started:.1f} s", flush=True)
            testbed.spawn(server, [sys.executable, "-m", "harness.loadgen", "sink"], "bench-sink.log")
            server_pid = testbed.node(server).pid
            loadgen.wait_bound(server_pid, PORT)

            def trial(size: int, rate: float) -> Figure:
                return measure("emulator", size, rate, duration,
                               lambda args: testbed.run(consumer, args, timeout_s=duration + 30),
                               lambda: loadgen.rx_counter(server_pid, f"{server}-eth0"), testbed.host_address(server))

            yield trial
        finally:
            testbed.stop()


def best(size: int, top: float, trial: Trial, search: bool) -> Figure:
    """The highest delivered rate over a few fixed offered rates.

    First `top` (above what one sending core produces, so the sender runs flat out). A path that
    loses more than MAX_LOSS of that is overloaded, and on a small machine the flooding sender then
    takes the CPU the path needs; so the offered rate starts again at twice what was delivered and
    doubles until the loss exceeds MAX_LOSS, with one last trial halfway back.
    """
    trials = [trial(size, top)]
    print(f"#   trial {trials[-1].line()}", flush=True)
    if search and trials[0].loss > MAX_LOSS and trials[0].pps > 0:
        good, bad, rate = trials[0].pps, None, trials[0].pps * 2
        while len(trials) < MAX_TRIALS and rate < top:
            trials.append(trial(size, rate))
            print(f"#   trial {trials[-1].line()}", flush=True)
            if trials[-1].loss > MAX_LOSS:
                bad = rate
                break
            good, rate = rate, rate * 2
        if bad is not None and len(trials) < MAX_TRIALS:
            trials.append(trial(size, (good + bad) / 2))
            print(f"#   trial {trials[-1].line()}", flush=True)
    return max(trials, key=lambda figure: figure.pps)


def measure_all(rig: contextlib.AbstractContextManager[Trial], sizes: tuple[int, ...], rates: dict[int, float],
                search: bool) -> list[Figure]:
    figures = []
    with rig as trial:
        for size in sizes:
            figures.append(best(size, rates[size], trial, search))
            print(figures[-1].line(), flush=True)
    return figures


def _rates(texts: list[str]) -> dict[int, float]:
    rates = dict(OFFERED_PPS)
    for text in texts:
        size, _, pps = text.partition("=")
        rates[int(size)] = float(pps)
    return rates


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="inner IPv4 packet sizes in bytes")
    parser.add_argument("--rate", action="append", default=[], metavar="SIZE=PPS",
                        help=f"first offered rate for a size (default {OFFERED_PPS})")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per trial")
    parser.add_argument("--single", action="store_true", help="one trial per figure, at the --rate offered rate")
    parser.add_argument("--appliance", type=Path, default=REFERENCE)
    parser.add_argument("--profile", choices=list(PROFILES), default=None,
                        help="GWLB profile, on its default topology (default: aws on topologies/default.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="keep the testbed's logs and pcaps here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("emulator_throughput: needs root (network namespaces, tun devices, raw sockets)", file=sys.stderr)
        return 2
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rates = _rates(args.rate)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')} {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}, {args.duration:g} s per trial, {FLOWS} flows", flush=True)
    started = time.monotonic()
    baseline = measure_all(baseline_rig(args.duration), sizes, rates, not args.single)
    with contextlib.ExitStack() as stack:
        out = args.out.resolve() if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gwlb-bench-")))
        out.mkdir(parents=True, exist_ok=True)
        emulator = measure_all(emulator_rig(args.duration, out, args.appliance, args.profile), sizes, rates, not args.single)
    for base, emu in zip(baseline, emulator):
        print(f"ratio size={base.size} pps={emu.pps / base.pps if base.pps else 0:.3f} "
              f"gbps={emu.gbps / base.gbps if base.gbps else 0:.3f}")
    print(f"# total {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
