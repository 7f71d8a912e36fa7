"""`migsched.compare`: every policy on one batch, the static sweep, gains against serial."""

from __future__ import annotations

import pytest

import migsched.compare as cmpmod
from migsched.compare import compare, planned_runs, resolve_policies
from migsched.errors import MigschedError, UnknownNameError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.metrics import lower_bound_s
from migsched.partition.search import maximal_layouts
from migsched.run import simulate

MODEL = get_model("A100-40GB")


def small_jobs(big: bool = False):
    """Six small scientific jobs and two 15 GiB trainers (plus a 30 GiB one if `big`)."""
    jobs = [
        {"name": "sci", "class": "scientific", "count": 6, "hint_gib": 4,
         "model": {"runtime_s": 300, "peak_gib": 3, "speedup": {1: 0.4, 7: 1.0}, "startup_s": 1}},
        {"name": "train", "class": "ml-train", "count": 2, "hint_gib": 15,
         "model": {"runtime_s": 600, "peak_gib": 14, "speedup": {1: 0.2, 3: 0.5, 7: 1.0}, "startup_s": 2}},
    ]
    if big:
        jobs.append({"name": "big", "class": "llm", "hint_gib": 30,
                     "model": {"runtime_s": 400, "peak_gib": 28, "speedup": {1: 0.2, 7: 1.0}, "startup_s": 3}})
    return load_jobs_dict({"version": 1, "jobs": jobs}, require_model=True)


def test_default_policies_are_the_registered_non_clairvoyant_ones():
    names = resolve_policies(None)
    assert names[:3] == ["serial", "static", "greedy"]
    assert "optimal" not in names
    assert resolve_policies(["Serial", "serial", "greedy"]) == ["serial", "greedy"]
    assert resolve_policies(["serial"], optimal_s=5)[-1] == "optimal"


def test_unknown_policy_raises_before_any_run():
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        compare(small_jobs(), MODEL, policies=["serial", "nope"])


def test_invalid_layout_raises():
    with pytest.raises(MigschedError):
        compare(small_jobs(), MODEL, policies=["static"], layout="9g.99gb@0")


def test_gains_are_against_serial_and_static_sweeps_maximal_layouts():
    jobs = small_jobs()
    calls: list[tuple[str, bool]] = []
    cmp = compare(jobs, MODEL, gpus=1, policies=["serial", "static", "greedy"],
                  progress=lambda label, finished: calls.append((label, finished)))
    steps = [label for label, finished in calls if finished]
    assert [label for label, finished in calls if not finished] == steps  # each start has its end
    assert calls[0] == ("serial", False) and calls[1] == ("serial", True)
    assert len(steps) == planned_runs(MODEL, ["serial", "static", "greedy"], None) == 2 + len(maximal_layouts(MODEL))
    assert (cmp.gpu, cmp.gpus, cmp.jobs) == ("A100-40GB", 1, len(jobs))
    assert cmp.lower_bound_s == pytest.approx(lower_bound_s(jobs, [MODEL]))
    serial = cmp.row("serial").result
    assert cmp.row("serial").throughput_gain == pytest.approx(1.0)
    for row in cmp.rows:
        r = row.result
        assert r.jobs_completed == len(jobs)
        assert row.throughput_gain == pytest.approx(serial.makespan_s / r.makespan_s)
        assert row.energy_gain == pytest.approx(serial.energy_j / r.energy_j)
        assert row.lower_bound_ratio == pytest.approx(r.makespan_s / cmp.lower_bound_s)
        assert row.lower_bound_ratio >= 1.0 - 1e-9
    # The sweep keeps the best layout by (completed desc, makespan asc).
    static = cmp.row("static")
    assert static.layouts_tried == len(maximal_layouts(MODEL))
    runs = {str(l): simulate(jobs, MODEL, 1, policy="static", layout=str(l)) for l in maximal_layouts(MODEL)}
    best = min(runs.values(), key=lambda r: (-r.jobs_completed, r.makespan_s))
    assert static.layout in runs
    assert static.result.makespan_s == pytest.approx(best.makespan_s)
    assert any("static: best of" in n for n in cmp.notes)


def test_user_layout_is_passed_through_and_gain_is_none_when_counts_differ():
    # On one 3g.20gb instance the 30 GiB job cannot run: static completes fewer jobs than serial.
    cmp = compare(small_jobs(big=True), MODEL, policies=["serial", "static"], layout="3g.20gb@0")
    static = cmp.row("static")
    assert static.layout == "3g.20gb@0" and static.layouts_tried == 1
    assert static.result.jobs_failed == 1
    assert static.throughput_gain is None and static.energy_gain is None


def test_gains_are_none_without_serial():
    cmp = compare(small_jobs(), MODEL, policies=["greedy"])
    assert cmp.row("greedy").throughput_gain is None
    assert cmp.row("greedy").energy_gain is None


@pytest.mark.parametrize("exc", [UnknownNameError("policy", "optimal", ["serial"]), ImportError("no ortools")])
def test_optimal_unavailable_is_skipped_with_a_note(monkeypatch, exc):
    real = cmpmod.create_policy

    def fake(name, **options):
        if name == "optimal":
            raise exc
        return real(name, **options)

    monkeypatch.setattr(cmpmod, "create_policy", fake)
    cmp = compare(small_jobs(), MODEL, policies=["serial"], optimal_s=1.0)
    assert [r.policy for r in cmp.rows] == ["serial"]
    assert any(n.startswith("optimal skipped") for n in cmp.notes)


def test_optimal_gets_jobs_and_time_limit(monkeypatch):
    seen = {}
    real = cmpmod.create_policy

    def fake(name, **options):
        if name == "optimal":
            seen.update(options)
            return real("serial")  # stands in for the solver; only the options matter here
        return real(name, **options)

    monkeypatch.setattr(cmpmod, "create_policy", fake)
    jobs = small_jobs()
    compare(jobs, MODEL, policies=["greedy"], optimal_s=7.5)
    assert seen["time_limit_s"] == 7.5 and len(seen["jobs"]) == len(jobs)


def test_default_policy_order_does_not_depend_on_import_order():
    """Importing migm before the registry loads the built-ins must not put it first."""
    import subprocess
    import sys

    code = ("import migsched.policies.migm\n"
            "from migsched.policies.registry import policy_names\n"
            "print(','.join(policy_names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",")[:4] == ["serial", "static", "greedy", "migm"]
