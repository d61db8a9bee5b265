"""harness.fuzzing: a short budget of the emulator fuzz run, and the fuzzer's own machinery.

    seeds (gwlbtun capture + synthetic flows) ─► Mutator ─► Gwlb.from_target / from_endpoint
                                                         ─► geneve.split, inet.parse_inner,
                                                            inet.parse_ipv4_udp

benchmarks/fuzz_emulator.py runs the same engine for a million iterations; here a few tens of
thousands must already pass, reach every validation step, and be deterministic. The tests that
feed packets run on both data paths (the pure-Python Gwlb and the CachedGwlb of the fast path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import fuzzing, geneve
from harness.emulator import fastpath
from harness.emulator.core import Delivery, DropReason, Encapsulated
from harness.fuzzing import Corpus, Fuzzer, capture_corpus, synthetic_corpus

CAPTURE = Path(__file__).parent / "data" / "gwlbtun-v3.0-route.pcap"
BUDGET = 50_000
REACHED = {
    "from_target delivered", "from_target malformed", "from_target missing_options", "from_target critical_option",
    "from_target unknown_cookie", "from_target stale_cookie", "from_target eni_mismatch",
    "from_target attachment_mismatch", "from_target wrong_target", "from_target source_port",
    "from_target dst_port", "from_target unknown_source", "from_target oversize", "from_target not_ip",
    "from_endpoint encapsulated", "from_endpoint not_ip", "from_endpoint fragment", "from_endpoint oversize",
    "from_endpoint rejected_tcp", "geneve.split ok", "geneve.split GeneveError", "parse_inner ok",
    "parse_inner PacketError", "parse_ipv4_udp ok", "parse_ipv4_udp PacketError",
}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return capture_corpus(CAPTURE) + synthetic_corpus()


@pytest.fixture(params=list(fastpath.Datapath), ids=lambda d: d.value)
def datapath(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> fastpath.Datapath:
    """The Fuzzer's Gwlbs are of this data path's class."""
    if request.param is fastpath.Datapath.FAST and not fastpath.AVAILABLE:
        pytest.skip(f"the compiled fast path is not built: {fastpath.IMPORT_ERROR}")
    monkeypatch.setattr(fuzzing, "Gwlb", fastpath.gwlb_for(request.param))
    return request.param


def describe(report: fuzzing.FuzzReport) -> str:
    return "\n".join(f"{c.target} at iteration {c.iteration}: {c.error}\n  {c.call}\n{c.traceback}"
                     for c in report.crashes)


def test_capture_seeds_are_its_geneve_packets() -> None:
    seeds = capture_corpus(CAPTURE)
    assert len(seeds.payloads) == len(seeds.outers) == 26
    assert all(outer.endswith(payload) for outer, payload in zip(seeds.outers, seeds.payloads))


def test_short_budget_lets_no_exception_escape(corpus: Corpus, datapath: fastpath.Datapath) -> None:
    report = Fuzzer(2024, corpus).run(BUDGET)
    assert report.crash_count == 0, describe(report)
    assert report.iterations == sum(report.outcomes.values()) == BUDGET
    assert REACHED <= set(report.outcomes), f"never reached: {sorted(REACHED - set(report.outcomes))}"


def test_every_outcome_is_a_delivery_or_a_drop_reason(corpus: Corpus, datapath: fastpath.Datapath) -> None:
    fuzzer = Fuzzer(5, corpus)
    mutator, rng = fuzzer.mutator, fuzzer.rng
    for _ in range(3000):
        sent = rng.choice(fuzzer.live)
        gwlb = fuzzer.gwlbs[sent.gwlb]
        result = gwlb.from_target(sent.address, sent.source_port, geneve.GENEVE_PORT, mutator.geneve(sent.payload))
        assert isinstance(result, (Delivery, DropReason)), result
        result = gwlb.from_endpoint(rng.randrange(2), mutator.inner(rng.choice(corpus.inners)))
        assert isinstance(result, (Encapsulated, DropReason)), result


def test_unmutated_returns_are_delivered(corpus: Corpus, datapath: fastpath.Datapath) -> None:
    fuzzer = Fuzzer(5, corpus)
    for sent in fuzzer.live:
        result = fuzzer.gwlbs[sent.gwlb].from_target(sent.address, sent.source_port, geneve.GENEVE_PORT, sent.payload)
        assert isinstance(result, Delivery), result


def test_same_seed_same_run(corpus: Corpus) -> None:
    first, again, other = (Fuzzer(seed, corpus).run(3000).outcomes for seed in (7, 7, 8))
    assert first == again
    assert first != other


def test_graft_gives_a_foreign_header_a_live_flows_identity(corpus: Corpus) -> None:
    fuzzer = Fuzzer(1, corpus)
    live = fuzzer.live[0].payload
    grafted = fuzzer.mutator.graft(corpus.payloads[0], live)
    assert geneve.AwsMetadata.from_header(geneve.GeneveHeader.decode(grafted)) == \
        geneve.AwsMetadata.from_header(geneve.GeneveHeader.decode(live))
    assert grafted[40:] == corpus.payloads[0][40:]


def test_an_escaped_exception_is_kept_with_its_reproducer(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    def fragile(packet: bytes) -> object:
        if len(packet) < 30:
            raise IndexError("index out of range")
        return None

    monkeypatch.setattr(fuzzing, "parse_inner", fragile)
    report = Fuzzer(3, corpus).run(2000)
    assert report.crash_count > 0
    (crash,) = report.crashes
    assert crash.target == "parse_inner" and crash.error.startswith("IndexError")
    assert crash.call.startswith("inet.parse_inner(bytes.fromhex('")
    packet = bytes.fromhex(crash.call.split("'")[1])
    assert len(packet) < 30
    assert "fragile" in crash.traceback


def test_a_wrong_return_type_is_a_crash(corpus: Corpus) -> None:
    fuzzer = Fuzzer(3, corpus)
    for gwlb in fuzzer.gwlbs:
        gwlb.from_target = lambda *args: None  # type: ignore[method-assign]
    report = fuzzer.run(500)
    key = "from_target CRASH returned None, expected one of ['Delivery', 'DropReason']"
    assert report.crash_count == report.outcomes[key] > 0
