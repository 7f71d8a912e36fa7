"""Smoke test of bench/evaluate.py: one tiny configuration runs and every output is written."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "evaluate.py"


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("migsched_bench_evaluate", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up while building the class
    spec.loader.exec_module(mod)
    return mod


def test_plan_covers_every_mix_and_gpu(ev):
    keys = {c.key for c in ev.plan(quick=True, optimal_s=None)}
    for gpu in ev.GPUS:
        for mix in ev.MIXES:
            assert f"{mix}/{gpu}/s1" in keys
    assert any(k.startswith("online/") for k in keys)


def test_the_16_job_batches_run_without_the_optimal_reference_too(ev):
    """A same-schedule check runs `--optimal-s 0`: the 16-job batches must be in it."""
    keys = {c.key: c for c in ev.plan(quick=False, optimal_s=None)}
    for mix in ev.MIXES:
        cfg = keys[f"{mix}/A100-80GB/s1/{ev.OPTIMAL_JOBS}j"]
        assert cfg.optimal_s is None


def test_tiny_configuration_writes_json_markdown_and_pictures(ev, tmp_path):
    cfg = ev.Config("scientific", "A100-80GB", jobs=6, policies=("serial", "greedy"))
    lines: list[str] = []
    doc = ev.evaluate([cfg], tmp_path / "out", tmp_path / "img", ["--smoke"], log=lines.append)
    data = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    rec = data["records"][0]
    assert [r["label"] for r in rec["results"]] == ["serial", "greedy"]
    assert all(r["jobs_completed"] + r["jobs_failed"] == 6 for r in rec["results"])
    assert rec["results"][0]["throughput_gain"] == pytest.approx(1.0)
    for key in ("command", "date", "platform", "cpu", "cores", "python"):
        assert data["provenance"][key]
    md = (tmp_path / "out" / "evaluation.md").read_text()
    assert "scientific/A100-80GB/s1" in md and "machine:" in md
    assert (tmp_path / "img" / "gains.png").stat().st_size > 0
    assert doc["checks"] == [{}]  # no migm in this run: nothing to check
    assert any("command:" in line for line in lines)


def test_target_and_early_restart_checks(ev):
    def row(label, ms, en, wasted=0.0, failed=(), early=0, oom=0):
        return {"label": label, "makespan_s": ms, "energy_j": en, "lower_bound_ratio": ms / 100,
                "optimal_ratio": None, "wasted_gpu_s": wasted, "early_restarts": early, "oom_restarts": oom,
                "jobs_completed": 2 - len(failed), "jobs_failed": len(failed),
                "failures": [{"job_id": j} for j in failed]}
    rec = {"key": "k", "_job_ids": ["a", "b"], "results": [
        row("serial", 200, 200), row("static", 150, 150), row("greedy", 140, 160),
        row("migm", 110, 120, wasted=10, early=1), row("migm-no-early-restart", 120, 125, wasted=40, oom=2)]}
    c = ev.check_targets(rec)
    assert c["beats_all"] and c["lb_ok"] and c["jobs_lost"] == []
    assert c["makespan_vs_best_other"] == pytest.approx(110 / 140)
    (e,) = ev.early_restart_check(rec)
    assert e["ratio"] == pytest.approx(0.25) and e["ok"]
    # Waste without any OOM or early restart (e.g. tail restarts) says nothing: no verdict.
    rec["results"][3] = row("migm", 110, 120, wasted=10)
    rec["results"][4] = row("migm-no-early-restart", 120, 125, wasted=10)
    (e,) = ev.early_restart_check(rec)
    assert e["ratio"] is None and e["ok"] is None
    rec["results"][3] = row("migm", 150, 120, failed=("a",))
    c = ev.check_targets(rec)
    assert not c["beats_all"] and not c["lb_ok"] and c["jobs_lost"] == ["a"]


def test_heldout_batches_are_seeded_perturbed_and_disjoint_from_tuning(ev):
    import heldout  # bench/ is on sys.path once evaluate.py is loaded

    cfgs = ev.heldout_plan(None)
    assert cfgs and all(c.group == "heldout" and c.key.startswith("heldout/") for c in cfgs)
    assert not {c.seed for c in cfgs} & {0, 1, 2, 3, 4, 5}  # the seeds tune_migm/evaluate tune on
    assert all(20 <= c.jobs <= 56 for c in cfgs)
    b = heldout.heldout_batches()[0]
    doc, again = heldout.heldout_doc(b), heldout.heldout_doc(b)
    assert doc == again  # the same seed gives the same batch
    entries = doc["jobs"]
    assert len(entries) == b.jobs
    assert any("hint_gib" not in e for e in entries)  # some hints missing
    assert all("model" in e for e in entries)          # ground truth untouched
