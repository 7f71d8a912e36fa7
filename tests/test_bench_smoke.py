"""The simulator benchmark (bench/bench_simulator.py) keeps working: its generator and one tiny run.

No timing is asserted: the machine is shared and small.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "bench_simulator.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_simulator", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_is_seeded_and_within_its_ranges(bench):
    jobs = bench.make_jobs(500, seed=7)
    assert [j.spec for j in jobs] == [j.spec for j in bench.make_jobs(500, seed=7)]
    assert len({j.job_id for j in jobs}) == 500
    assert all(j.spec.arrival_s == 0.0 for j in jobs)
    peaks = [j.truth.peak_gib for j in jobs]
    assert min(peaks) >= 2.0 and max(peaks) <= 70.0
    assert all(30.0 <= j.truth.runtime_s <= 3000.0 for j in jobs)
    assert any(j.spec.hint_gib < j.truth.peak_gib for j in jobs)  # some hints are too low


def test_online_arrivals_rise(bench):
    jobs = bench.make_jobs(200, seed=1, online=True, gpus=8)
    times = [j.spec.arrival_s for j in jobs]
    assert times == sorted(times) and times[-1] > 0


@pytest.mark.parametrize("policy", ["greedy", "serial", "static"])
def test_one_tiny_configuration(bench, policy):
    r = bench.run_one(200, 8, policy, "offline")
    assert r["jobs"] == 200 and r["gpus"] == 8 and r["events"] > 0
    assert r["completed"] + r["failed"] == 200
    assert r["peak_rss_mib"] > 0
    json.dumps(r)


def test_markdown_table_lists_runs_and_skips(bench):
    rows = [bench.run_one(200, 8, "greedy", "online"),
            {"jobs": 100_000, "gpus": 1, "policy": "greedy", "arrivals": "offline", "skipped": "--quick"}]
    table = bench.markdown(rows).splitlines()
    assert len(table) == 4 and "skipped (--quick)" in table[-1]
    assert set(bench.machine()) == {"platform", "cpu", "cores", "python"}


def test_bench_history_runs_one_batch_from_another_seeds_history(monkeypatch):
    """bench/bench_history.py: the history comes from another held-out batch of the same mix."""
    bench_dir = str(_PATH.parent)
    monkeypatch.syspath_prepend(bench_dir)
    spec = importlib.util.spec_from_file_location("bench_history", _PATH.parent / "bench_history.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    b = next(x for x in mod.heldout_batches() if x.mix == "scientific" and x.seed == 303)
    assert mod.earlier(b).seed == 101 and mod.earlier(b).mix == "scientific"
    row = mod.run_batch(b)
    assert row["warm_failed"] == 0 and row["warm_makespan_s"] > 0 and row["cold_makespan_s"] > 0
    assert "| " + b.key in mod.markdown([row])
