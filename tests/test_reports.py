"""Reports: lost runs by cause, the compact/wide table, progress, the cluster view, legends, labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from migsched.compare import compare
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.metrics import cause_of, lost_runs_by_cause
from migsched.report import comparison_dict, markdown_table, write_report
from migsched.report.table import COMPACT, columns, fit_table
from migsched.run import simulate

MODEL = get_model("A100-40GB")


def jobs(n_sci: int = 4, name: str = "sci"):
    """Small jobs plus two trainers whose 8 GiB hint is too small for their 14 GiB peak (OOMs)."""
    return load_jobs_dict({"version": 1, "jobs": [
        {"name": name, "class": "scientific", "count": n_sci, "hint_gib": 4,
         "model": {"runtime_s": 200, "peak_gib": 3, "speedup": {1: 0.4, 7: 1.0}, "startup_s": 1}},
        {"name": "train", "class": "ml-train", "count": 2, "hint_gib": 8,
         "model": {"runtime_s": 400, "peak_gib": 14, "memory": "ramp", "speedup": {1: 0.2, 7: 1.0}, "startup_s": 2}},
    ]}, require_model=True)


def test_causes_of_attempt_outcomes():
    assert cause_of("oom") == "oom"
    assert cause_of("killed:early-restart") == "early-restart"
    assert cause_of("killed:preempt") == "preempt"
    assert cause_of("killed:killed") == "external"
    assert cause_of("killed:move") == "move"  # a reason added later is its own cause
    assert cause_of("ok") is None and cause_of("failed") is None and cause_of("launch-failed") is None


@pytest.mark.parametrize("policy", ["greedy", "migm"])
def test_lost_runs_by_cause_add_up_to_the_wasted_gpu_seconds(policy):
    res = simulate(jobs(), MODEL, 1, policy=policy)
    lost = lost_runs_by_cause(res)
    assert sum(c.wasted_gpu_s for c in lost.values()) == pytest.approx(res.wasted_gpu_s)
    if policy == "greedy":
        assert lost["oom"].runs >= res.oom_restarts > 0


def test_json_has_restarts_and_their_causes():
    cmp = compare(jobs(), MODEL, policies=["serial", "greedy"])
    doc = {r["policy"]: r for r in comparison_dict(cmp)["results"]}
    g = doc["greedy"]
    assert g["restarts"] == sum(v["runs"] for v in g["lost_runs_by_cause"].values()) > 0
    assert sum(v["wasted_gpu_s"] for v in g["lost_runs_by_cause"].values()) == pytest.approx(g["wasted_gpu_s"])
    assert doc["serial"]["lost_runs_by_cause"] == {} and doc["serial"]["restarts"] == 0


def test_table_compact_wide_and_markdown():
    cmp = compare(jobs(), MODEL, policies=["serial", "greedy"])
    compact = [c.key for c in columns(cmp)]
    assert "restarts" in compact and not any(k.startswith("cause:") for k in compact)
    wide = [c.key for c in columns(cmp, wide=True)]
    assert {"cause:oom", "cause:early-restart", "slice_util", "mean_jct"} <= set(wide)
    md = markdown_table(cmp)
    assert "OOM runs / GPU·s" in md and "\n" not in md.splitlines()[0]
    oom = lost_runs_by_cause(cmp.row("greedy").result)["oom"]
    assert f"{oom.runs} / {oom.wasted_gpu_s:.0f}" in md


def test_fit_table_drops_columns_rather_than_cutting_cells():
    from rich.console import Console

    from migsched.report.table import table_width

    cmp = compare(jobs(), MODEL, policies=["serial", "greedy"])
    con = Console(width=1000)
    for width in (80, 70, 60):
        t = fit_table(cmp, width)
        assert table_width(con, t) <= width
    assert len(fit_table(cmp, 80).columns) == len(COMPACT)  # the compact table fits 80 columns whole
    assert len(fit_table(cmp, 60).columns) < len(COMPACT)


def test_progress_reports_jobs_ended_and_simulated_time_within_each_run():
    calls: list[tuple[int, int, float]] = []
    batch = jobs()
    compare(batch, MODEL, policies=["serial", "greedy"], on_jobs=lambda n, of, t: calls.append((n, of, t)))
    assert calls and all(of == len(batch) for _, of, _ in calls)
    finals = [k for k, (n, _, _) in enumerate(calls) if n == len(batch)]
    assert len(finals) == 2  # each run reaches every job ended
    first_run = calls[: finals[0] + 1]
    assert [n for n, _, _ in first_run] == sorted(n for n, _, _ in first_run)
    assert [t for _, _, t in first_run] == sorted(t for _, _, t in first_run) and first_run[-1][2] > 0


def test_cluster_series():
    from migsched.report.cluster_plot import busy_series, queue_series, total_slices

    res = simulate(jobs(n_sci=10), MODEL, 1, policy="serial")
    t, busy = busy_series(res)
    assert busy.max() <= total_slices(res) == 7 and busy.min() >= 0
    t, queue = queue_series(res)
    assert queue[0] == 12 - 1  # all arrive at 0, one runs on the whole GPU
    assert queue[-1] == 0 and queue.min() >= 0
    assert np.all(np.diff(t) >= 0)


@pytest.mark.parametrize("gpus", [1, 40])
def test_report_has_a_cluster_view_for_one_gpu_and_many(tmp_path, gpus):
    cmp = compare(jobs(), MODEL, gpus=gpus, policies=["serial", "greedy"])
    paths = write_report(cmp, tmp_path / "r")
    cluster = tmp_path / "r" / "cluster.png"
    assert cluster in paths and cluster.stat().st_size > 10_000
    assert "cluster.png" in (tmp_path / "r" / "results.md").read_text()


def test_legend_lists_only_what_appears():
    from migsched.report.plots import legend_labels

    serial = simulate(jobs(), MODEL, 1, policy="serial")
    labels = legend_labels(serial)
    assert not any("memory" in x or "killed" in x or "OOM" in x for x in labels)
    greedy = simulate(jobs(), MODEL, 1, policy="greedy")
    oom = lost_runs_by_cause(greedy)["oom"]
    labels = legend_labels(greedy)
    assert f"job run: out of memory (OOM: {oom.runs}, {oom.wasted_gpu_s:.0f} GPU·s)" in labels
    assert "OOM / kill end" in labels and not any("killed" in x for x in labels)


def test_unicode_job_names_draw_without_glyph_warnings(tmp_path):
    from migsched.report.plots import drawable

    assert drawable("résumé-1") == "résumé-1"  # the font has these
    assert drawable("作业") == "??"
    cmp = compare(jobs(name="作业"), MODEL, policies=["serial"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        write_report(cmp, tmp_path / "r")
    assert not [w for w in seen if "Glyph" in str(w.message)]


def test_heading_says_one_job_not_one_jobs():
    from migsched.report.table import heading

    one = load_jobs_dict({"version": 1, "jobs": [
        {"name": "solo", "class": "scientific", "hint_gib": 4,
         "model": {"runtime_s": 50, "peak_gib": 3, "speedup": {1: 0.4, 7: 1.0}}}]}, require_model=True)
    assert heading(compare(one, MODEL, policies=["serial"])).startswith("1 job on ")
    assert heading(compare(jobs(), MODEL, policies=["serial"])).startswith("6 jobs on ")
