"""`migsched simulate`, `demo` and `policies` through the real entry point."""

from __future__ import annotations

import json

import pytest
import yaml

from cli_support import run_cli as run
import migsched.cli.simulate_cmds as simcmds

RESULT_KEYS = {
    "policy", "makespan_s", "energy_j", "throughput_gain", "energy_gain", "mean_jct_s", "jobs_completed",
    "jobs_failed", "oom_restarts", "early_restarts", "reconfigurations", "wasted_gpu_s",
}


@pytest.fixture
def job_file(tmp_path):
    """Eight jobs, two of them with a hint too small for their peak (OOM restarts under MIG)."""
    doc = {"version": 1, "jobs": [
        {"name": "sci", "class": "scientific", "count": 5, "hint_gib": 4,
         "model": {"runtime_s": 200, "peak_gib": 3, "speedup": {1: 0.4, 7: 1.0}, "startup_s": 1}},
        {"name": "train", "class": "ml-train", "count": 2, "hint_gib": 8,
         "model": {"runtime_s": 400, "peak_gib": 14, "memory": "ramp", "speedup": {1: 0.2, 7: 1.0}, "startup_s": 2}},
        {"name": "infer", "class": "ml-infer", "arrival_s": 50,
         "model": {"runtime_s": 100, "peak_gib": 6, "speedup": {1: 0.6, 7: 1.0}, "startup_s": 1}},
    ]}
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_simulate_json_and_report(capsys, tmp_path, job_file):
    out_json, report = tmp_path / "cmp.json", tmp_path / "report"
    code, out, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--gpus", "2",
                       "--json", str(out_json), "--report", str(report))
    assert code == 0
    assert "makespan" in out and "Lower bound on makespan" in out and "static layout (best of" in out
    doc = json.loads(out_json.read_text())
    assert (doc["gpu"], doc["gpus"], doc["jobs"]) == ("A100-40GB", 2, 8)
    assert doc["lower_bound_s"] > 0
    results = {r["policy"]: r for r in doc["results"]}
    assert {"serial", "static", "greedy"} <= set(results)
    for r in results.values():
        assert RESULT_KEYS <= set(r)
        assert r["jobs_completed"] + r["jobs_failed"] == 8
    serial = results["serial"]
    for r in results.values():
        if r["jobs_completed"] == serial["jobs_completed"]:
            assert r["throughput_gain"] == pytest.approx(serial["makespan_s"] / r["makespan_s"])
            assert r["energy_gain"] == pytest.approx(serial["energy_j"] / r["energy_j"])
        else:
            assert r["throughput_gain"] is None
    assert results["static"]["layout"] and results["static"]["layouts_tried"] > 1
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"power.png", "summary.png", "timeline-serial.png", "timeline-static.png", "timeline-greedy.png"} <= set(pngs)
    for name in pngs:
        assert (report / name).stat().st_size > 10_000, name
    md = (report / "results.md").read_text()
    assert "| policy | makespan |" in md and "Lower bound on makespan" in md and "power.png" in md


def test_simulate_selected_policies_and_layout(capsys, tmp_path, job_file):
    out_json = tmp_path / "cmp.json"
    code, _, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "greedy",
                     "--policy", "static", "--layout", "3g.20gb@0,3g.20gb@4", "--json", str(out_json))
    assert code == 0
    results = json.loads(out_json.read_text())["results"]
    assert [r["policy"] for r in results] == ["greedy", "static"]
    assert results[1]["layout"] == "3g.20gb@0,3g.20gb@4"
    assert all(r["throughput_gain"] is None for r in results)  # no serial run


def test_simulate_failed_jobs_are_listed_and_exit_1(capsys, job_file):
    # One 1g.5gb instance holds none of the 8 GiB-hinted trainers: static rejects them.
    code, out, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "static",
                       "--layout", "1g.5gb@0")
    assert code == 1
    assert "did not complete" in out and "train#0" in out


@pytest.mark.parametrize("argv,message", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--gpu", "Z100"], "unknown GPU model"),
    (["--layout", "9g@0"], "profile"),
])
def test_user_mistakes_exit_2(capsys, job_file, argv, message):
    base = ["simulate", str(job_file)] + ([] if "--gpu" in argv else ["--gpu", "A100-40GB"])
    code, _, err = run(capsys, *base, *argv)
    assert code == 2
    assert message in err


def test_missing_or_invalid_job_file_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "simulate", str(tmp_path / "missing.yaml"), "--gpu", "A100-40GB")
    assert code == 2 and "cannot read job file" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\njobs:\n  - {name: a, class: scientific}\n")
    code, _, err = run(capsys, "simulate", str(bad), "--gpu", "A100-40GB")
    assert code == 2 and "model" in err


def test_unwritable_json_exits_2(capsys, tmp_path, job_file):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "serial",
                       "--json", str(blocker / "cmp.json"))
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize("argv,limit", [([], None), (["--optimal"], 30.0), (["--optimal-s", "5"], 5.0)])
def test_optimal_options(capsys, monkeypatch, job_file, argv, limit):
    seen = {}
    real = simcmds.compare

    def spy(*args, **kwargs):
        seen.update(kwargs)
        # Do not run the solver here; only the parsing is under test.
        jobs, model, gpus, names = args
        kwargs["optimal_s"] = None
        return real(jobs, model, gpus, [n for n in names if n != "optimal"], **kwargs)

    monkeypatch.setattr(simcmds, "compare", spy)
    code, _, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "serial", *argv)
    assert code == 0
    assert seen["optimal_s"] == limit


def test_more_than_four_gpus_still_draws(capsys, tmp_path, job_file):
    report = tmp_path / "r"
    code, _, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--gpus", "5",
                     "--policy", "greedy", "--report", str(report))
    assert code == 0
    assert (report / "timeline-greedy.png").stat().st_size > 10_000


def test_policies_lists_registered(capsys):
    code, out, _ = run(capsys, "policies")
    assert code == 0
    for name in ("serial", "static", "greedy"):
        assert name in out
    assert "MIG off" in out


def test_demo_writes_report(capsys, tmp_path):
    report = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "--report", str(report), "--gpus", "1")
    assert code == 0
    assert "demo:" in out and "serial" in out
    assert (report / "results.md").exists()
    assert (report / "power.png").stat().st_size > 10_000
    assert len(list(report.glob("timeline-*.png"))) >= 3


def test_demo_batch_scales_with_the_gpus():
    from migsched.cli.simulate_cmds import demo_jobs

    one, _ = demo_jobs(1)
    two, source = demo_jobs(2)
    assert len(one) == 32 and len(two) == 64
    assert "64 jobs" in source


def test_narrow_terminals_get_the_transposed_table(job_file):
    from io import StringIO

    from rich.console import Console

    from migsched.compare import compare
    from migsched.hardware import get_model
    from migsched.jobs import load_jobs
    from migsched.report import markdown_table, rich_table

    cmp = compare(load_jobs(job_file, require_model=True), get_model("A100-40GB"), policies=["serial", "greedy"])
    buf = StringIO()
    Console(file=buf, width=80).print(rich_table(cmp, transposed=True))
    text = buf.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "thr gain" in text and "serial" in text and "greedy" in text
    md = markdown_table(cmp).splitlines()
    assert md[0].startswith("| policy | makespan |") and len(md) == 2 + 2
