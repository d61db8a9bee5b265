"""PERF logic without the network: the throughput search, percentiles, the limiting side,
thresholds, the reflector's ruleset and the report's perf records."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import loadgen, perf, reflector
from harness.errors import ConfigError
from harness.report import plots, properties
from harness.report.model import CheckResult, Status
from harness.timers import TimersMode


def _path(capacity: float, duration: float = 1.0, collapse: float = 1.0):
    """A simulated path: carries up to `capacity`/s; overloaded, only `collapse` × capacity."""
    offered_rates: list[float] = []

    def run(rate: float) -> perf.Trial:
        offered_rates.append(rate)
        offered = round(rate * duration)
        carried = capacity if rate <= capacity else capacity * collapse
        return perf.Trial(offered, min(offered, round(carried * duration)), duration)

    return run, offered_rates


def test_trial_figures() -> None:
    trial = perf.Trial(offered=1000, received=990, duration_s=0.5)
    assert (trial.rate, trial.delivered_rate, trial.lost, trial.loss) == (2000, 1980, 10, 0.01)
    assert perf.Trial(100, 105, 1.0).lost == 0 and perf.Trial(0, 0, 0).rate == 0


def test_search_starts_below_what_the_overloaded_path_delivered_and_bisects() -> None:
    run, rates = _path(capacity=10_000)

    found = perf.search(run, top=100_000, steps=3)

    assert rates[:2] == [100_000, perf.SEED_START * 10_000]
    assert 8_500 <= found.no_drop <= 10_000 and found.within_tolerance == found.no_drop
    assert len(found.trials) == 4 and found.resolution > 0 and not found.capped


def test_search_finds_a_figure_even_when_overload_collapses_the_path() -> None:
    run, rates = _path(capacity=10_000, collapse=0.1)

    found = perf.search(run, top=100_000, steps=1)

    assert 0 < found.no_drop <= 10_000
    assert len(rates) <= 1 + 1 + perf.EXTRA_STEPS


def test_search_stops_at_the_top_when_the_path_keeps_up() -> None:
    run, rates = _path(capacity=1e9)
    found = perf.search(run, top=50_000, steps=4)
    assert rates == [50_000] and found.capped and found.no_drop == 50_000 and found.resolution == 0


def test_loss_free_and_tolerant_figures_come_from_the_same_trials() -> None:
    trials = (perf.Trial(1000, 998, 1.0), perf.Trial(800, 800, 1.0), perf.Trial(1200, 1100, 1.0))
    found = perf.Search(trials, tolerance=0.005, resolution=100)
    assert (found.no_drop, found.within_tolerance) == (800, 1000)
    assert perf.Search((perf.Trial(10, 1, 1.0),), 0.005, 0).no_drop == 0


@pytest.mark.parametrize(("q", "expected"), [(50, 50), (99, 99), (100, 100), (1, 1)])
def test_nearest_rank_percentile(q: float, expected: float) -> None:
    assert perf.percentile(list(range(100, 0, -1)), q) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        perf.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        perf.percentile([1.0], 0)


@pytest.mark.parametrize(
    ("appliance", "ceiling", "higher_is_better", "side"),
    [
        (90, 100, True, perf.Side.HARNESS),
        (80, 100, True, perf.Side.HARNESS),
        (79, 100, True, perf.Side.APPLIANCE),
        (5, 0, True, perf.Side.HARNESS),
        (120, 100, False, perf.Side.HARNESS),
        (126, 100, False, perf.Side.APPLIANCE),
    ],
)
def test_limiting_side(appliance: float, ceiling: float, higher_is_better: bool, side: perf.Side) -> None:
    assert perf.limiting_side(appliance, ceiling, higher_is_better) is side


def test_every_timers_mode_has_parameters_for_every_size() -> None:
    for mode in TimersMode:
        params = perf.params_for(mode)
        assert set(params.top_pps) == set(perf.SIZES) and params.describe()
    fast, faithful = perf.params_for(TimersMode.ACCELERATED), perf.params_for(TimersMode.FAITHFUL)
    assert fast.trial_s < faithful.trial_s and fast.search_steps <= faithful.search_steps


def test_default_thresholds_set_nothing() -> None:
    assert perf.load_thresholds(perf.default_thresholds_path(), "aws") == perf.Thresholds()
    assert perf.load_thresholds(perf.default_thresholds_path(), "no-such-profile") == perf.Thresholds()


def test_thresholds_turn_worse_figures_into_warnings(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("profiles:\n  aws:\n    no_drop_pps: {64: 10000}\n    no_drop_gbps: {8500: 1}\n"
                    "    added_latency_p99_us: 500\n    new_flows_per_s: 1000\n")
    thresholds = perf.load_thresholds(path, "aws")
    records = [{"size": 64, "criterion": "no-drop", "pps": 9000, "gbps": 0.005},
               {"size": 64, "criterion": "loss-0.5%", "pps": 1, "gbps": 0.0},
               {"size": 8500, "criterion": "no-drop", "pps": 20000, "gbps": 1.36}]
    (miss,) = perf.throughput_warnings(thresholds, records)
    assert "64 B is 9000 packets/s, below the threshold 10000" in miss
    assert perf.maximum_warning("p99", 600, thresholds.added_latency_p99_us) == ["p99 is 600, above the threshold 500"]
    assert perf.minimum_warning("new flows", 2000, thresholds.new_flows_per_s) == []
    assert perf.minimum_warning("concurrent", 1, thresholds.concurrent_flows) == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("profiles:\n  aws:\n    speed: 3\n", "profiles.aws.speed"),
        ("profiles:\n  aws:\n    no_drop_pps: {100: 3}\n", "profiles.aws.no_drop_pps.100"),
        ("profiles:\n  aws:\n    new_flows_per_s: -1\n", "profiles.aws.new_flows_per_s"),
        ("other: 1\n", "other"),
    ],
)
def test_bad_thresholds_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        perf.load_thresholds(path, "aws")
    assert raised.value.key == key


def test_gbps_counts_inner_packet_bits() -> None:
    assert perf.gbps(1_000_000, 1500) == 12.0


def test_flow_ports_never_repeat() -> None:
    pairs = list(loadgen.flow_ports(1000, 1002, (9, 10)))
    assert pairs == [(1000, 9), (1001, 9), (1002, 9), (1000, 10), (1001, 10), (1002, 10)]


def test_reflector_swaps_addresses_and_forwards_back_out() -> None:
    rules = reflector.ruleset("a1-eth0", "10.200.0.11", "aa:aa:aa:aa:aa:01", "10.200.0.1", "bb:bb:bb:bb:bb:01")
    assert f"table netdev {reflector.TABLE}" in rules and 'hook ingress device "a1-eth0"' in rules
    assert ("ip saddr 10.200.0.1 ip daddr 10.200.0.11 udp dport 6081 ether saddr set aa:aa:aa:aa:aa:01 "
            "ether daddr set bb:bb:bb:bb:bb:01 ip saddr set 10.200.0.11 ip daddr set 10.200.0.1 "
            'fwd to "a1-eth0"') in rules


RECORDS = [
    {"size": 64, "criterion": "no-drop", "pps": 5000, "gbps": 0.003, "ceiling_pps": 50000, "ceiling_gbps": 0.03,
     "limit": "appliance"},
    {"size": 1500, "criterion": "no-drop", "pps": 40000, "gbps": 0.48, "ceiling_pps": 45000, "ceiling_gbps": 0.54,
     "limit": "harness"},
]


@pytest.mark.parametrize("records", [
    RECORDS,
    [{"size": 64, "latency_p50_us": 400, "latency_p99_us": 900, "ceiling_latency_p50_us": 100,
      "ceiling_latency_p99_us": 200, "added_latency_p50_us": 300, "added_latency_p99_us": 700, "limit": "appliance"}],
    [{"size": 64, "new_flows_per_s": 3000, "ceiling_new_flows_per_s": 9000, "limit": "appliance"}],
    [{"size": 92, "concurrent_flows": 1000, "ceiling_concurrent_flows": 1000, "limit": "harness"}],
])
def test_perf_records_plot_the_appliance_next_to_the_ceiling(records: list[dict]) -> None:
    check = CheckResult("t.py::test_x", ("PERF-THROUGHPUT",), Status.PASS, 0.1,
                        data=(("perf", properties.decode("perf", records)),))
    (plot,) = plots.check_plots(check)
    assert "ceiling" in plot.svg and "limit: " in plot.svg


def test_perf_limit_must_name_a_side() -> None:
    with pytest.raises(properties.PropertyError, match=r"perf\[0\].limit: expected one of appliance, harness"):
        properties.decode("perf", [{"size": 64, "limit": "network"}])


def test_capture_filter_leaves_out_only_perf_bulk_traffic(tmp_path: Path) -> None:
    """tcpdump itself applies the filter to GENEVE packets both ways, to bulk and to other ports."""
    import shutil
    import subprocess

    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    from harness import geneve

    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    header = geneve.aws_header(geneve.PROTO_IPV4, geneve.AwsMetadata(1, 2, 3)).encode()

    def outer(src: str, dst: str, dport: int) -> Ether:
        inner = IP(src="10.0.1.10", dst="10.0.2.10") / UDP(sport=20000, dport=dport) / Raw(bytes(64))
        return Ether() / IP(src=src, dst=dst) / UDP(sport=40000, dport=6081) / Raw(header + bytes(inner))

    packets = [outer("10.1.0.1", "10.1.0.11", 6200), outer("10.1.0.11", "10.1.0.1", 6215),
               outer("10.1.0.1", "10.1.0.11", 6216), outer("10.1.0.1", "10.1.0.11", 5002),
               Ether() / IP(src="10.1.0.11", dst="10.1.0.1") / ICMP(type=3, code=3)]
    wrpcap(str(tmp_path / "in.pcap"), packets)
    out = subprocess.run(["tcpdump", "-n", "-r", str(tmp_path / "in.pcap"), loadgen.capture_filter()],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 3, out
