"""Outputs as operators expect them (issue 11): paths checked first, `--json -`, exit codes, help."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from cli_support import run_cli as run
import migsched.compare as cmpmod


def _jobs(tmp_path, extra=()):
    doc = {"version": 1, "jobs": [
        {"name": "sci", "class": "scientific", "count": 4, "hint_gib": 4,
         "model": {"runtime_s": 200, "peak_gib": 3, "speedup": {1: 0.4, 7: 1.0}, "startup_s": 1}},
        {"name": "train", "class": "ml-train", "count": 2, "hint_gib": 8,
         "model": {"runtime_s": 400, "peak_gib": 14, "memory": "ramp", "speedup": {1: 0.2, 7: 1.0}, "startup_s": 2}},
        *extra,
    ]}
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def job_file(tmp_path):
    return _jobs(tmp_path)


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if any simulation starts."""
    def boom(*a, **k):
        raise AssertionError("a simulation ran before the mistake was reported")
    monkeypatch.setattr(cmpmod, "_sim", boom)


# ---- work is not thrown away: mistakes are found before the first simulation ------------------
@pytest.mark.parametrize("option,value,message", [
    ("--json", "{tmp}/no/such/dir/r.json", "does not exist"),
    ("--report", "{tmp}/no/such/dir", "does not exist"),
    ("--schedule", "{tmp}/s.txt", "must end in .json or .csv"),
    ("--schedule", "{tmp}/missing/s.csv", "does not exist"),
])
def test_bad_output_paths_fail_before_any_simulation(capsys, tmp_path, job_file, no_simulation, option, value,
                                                     message):
    target = value.format(tmp=tmp_path)
    code, _, err = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", option, target)
    assert code == 2
    assert target in err and message in err
    assert not (tmp_path / "no").exists()  # folders are never created on the way


def test_layout_without_static_is_an_error_not_ignored(capsys, job_file, no_simulation):
    code, _, err = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "greedy",
                       "--layout", "3g.20gb@0,3g.20gb@4")
    assert code == 2
    assert "'static'" in err and "greedy" in err and "--policy static" in err


def test_optimal_over_its_job_limit_fails_before_other_policies(monkeypatch):
    pytest.importorskip("ortools")
    from migsched.hardware import get_model
    from migsched.jobs import load_jobs_dict
    from migsched.policies.optimal_model import OptimalTooLargeError

    jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "count": 201,
                                                   "model": {"runtime_s": 10, "peak_gib": 1, "speedup": {1: 1.0}}}]},
                          require_model=True)
    ran = []
    monkeypatch.setattr(cmpmod, "_sim", lambda *a, **k: ran.append(a) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(OptimalTooLargeError, match="at most 200 jobs"):
        cmpmod.compare(jobs, get_model("A100-40GB"), policies=["serial", "greedy"], optimal_s=1.0)
    assert ran == []


def test_optimal_stopped_at_its_limit_gets_a_note():
    from dataclasses import replace

    from migsched.hardware import get_model
    from migsched.jobs import load_jobs_dict
    from migsched.run import simulate

    jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific",
                                                   "model": {"runtime_s": 10, "peak_gib": 1, "speedup": {1: 1.0}}}]},
                          require_model=True)
    res = simulate(jobs, get_model("A100-40GB"), policy="greedy")
    feasible = replace(res, policy_summary={"optimal": 0.0, "solver_bound_s": 100.0, "solver_makespan_s": 125.0})
    note = cmpmod._optimal_note(feasible, 2.0)
    assert note is not None and "not a proven optimum" in note and "25%" in note and "2 s" in note
    proven = replace(res, policy_summary={"optimal": 1.0, "solver_bound_s": 100.0, "solver_makespan_s": 100.0})
    assert cmpmod._optimal_note(proven, 2.0) is None


# ---- surprising outputs --------------------------------------------------------------------------
def test_json_dash_writes_pure_json_to_stdout(capsys, tmp_path, job_file):
    code, out, err = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "serial",
                         "--json", "-")
    assert code == 0
    doc = json.loads(out)  # nothing but the document on stdout
    assert doc["results"][0]["policy"] == "serial"
    assert "Policy comparison" in err  # the human output went to stderr
    assert not (tmp_path / "-").exists()


def test_reused_report_folder_loses_stale_pictures(capsys, tmp_path, job_file):
    report = tmp_path / "rep"
    report.mkdir()
    (report / "timeline-migm.png").write_bytes(b"old")
    (report / "notes.txt").write_text("mine")
    code, _, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "serial",
                     "--report", str(report))
    assert code == 0
    names = {p.name for p in report.iterdir()}
    assert "timeline-migm.png" not in names  # migm did not run this time
    assert {"timeline-serial.png", "cluster.png", "results.md", "notes.txt"} <= names


def test_job_that_fits_no_gpu_is_warned_up_front_and_exits_1(capsys, tmp_path):
    big = {"name": "huge", "class": "llm", "hint_gib": 60,
           "model": {"runtime_s": 100, "peak_gib": 55, "speedup": {7: 1.0}}}
    code, out, err = run(capsys, "simulate", str(_jobs(tmp_path, [big])), "--gpu", "A100-40GB",
                         "--policy", "serial", "--policy", "greedy")
    assert code == 1
    assert err.startswith("warning: 1 job(s) fit no instance of A100-40GB") and "huge (hint 60.0 GiB)" in err


def test_unplaceable_jobs_uses_the_hint_or_the_true_peak():
    from migsched.hardware import get_model
    from migsched.jobs import load_jobs_dict

    jobs = load_jobs_dict({"version": 1, "jobs": [
        {"name": "ok", "class": "scientific", "hint_gib": 4, "model": {"runtime_s": 1, "peak_gib": 3, "speedup": {1: 1}}},
        {"name": "lies", "class": "scientific", "hint_gib": 4, "model": {"runtime_s": 1, "peak_gib": 50, "speedup": {1: 1}}},
    ]}, require_model=True)
    bad = cmpmod.unplaceable_jobs(jobs, get_model("A100-40GB"))
    assert [(u.job_id, u.source, u.need_gib) for u in bad] == [("lies", "peak", 50.0)]
    assert bad[0].largest_gib == pytest.approx(40.0, abs=0.5)


def test_exit_codes_simulate_and_version_and_quiet(capsys, job_file):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("migsched ")
    code, out, err = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "serial", "--quiet")
    assert code == 0 and out == "" and err == ""
    code, out, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "static",
                       "--layout", "1g.5gb@0", "-q")
    assert code == 1 and out == ""


@pytest.mark.parametrize("argv", [["simulate", "--help"], ["layouts", "--help"], ["--help"], ["run", "--help"]])
def test_help_shows_no_bool_types_or_braces(capsys, monkeypatch, argv):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "<bool>" not in out and "{" not in usage
    if argv[0] == "simulate":
        assert "simulate [OPTIONS] JOBS" in usage
    if argv[0] == "layouts":  # a sentence of the help is not broken mid-line
        assert "any placement; the layout shown is one legal placement" in out


def test_piped_tables_cut_no_cell(capsys, job_file):
    code, out, _ = run(capsys, "workloads")
    assert code == 0 and "…" not in out and "HF+guess" in out
    code, out, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--wide")
    assert code == 0 and "…" not in out
    assert "OOM" in out and "early" in out  # the cause columns of --wide


def test_compact_table_fits_80_columns_and_wide_adds_causes(capsys, job_file):
    code, out, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--gpus", "2")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "restarts" in out and "runs / GPU·s" not in out
    _, wide, _ = run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--gpus", "2", "--wide")
    assert "runs / GPU·s" in wide and "slice" in wide


# ---- the schedule export ---------------------------------------------------------------------
def test_schedule_json_and_csv_list_every_attempt(capsys, tmp_path, job_file):
    sj, sc = tmp_path / "s.json", tmp_path / "s.csv"
    assert run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "greedy",
               "--schedule", str(sj))[0] == 0
    assert run(capsys, "simulate", str(job_file), "--gpu", "A100-40GB", "--policy", "greedy",
               "--schedule", str(sc))[0] == 0
    doc = json.loads(sj.read_text())
    rows = doc["rows"]
    with sc.open() as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows) and list(csv_rows[0]) == doc["fields"]
    assert {r["job_id"] for r in rows} == {f"sci#{k}" for k in range(4)} | {"train#0", "train#1"}
    ooms = [r for r in rows if r["outcome"] == "oom"]
    assert ooms, "the trainers' 8 GiB hints are too small for their 14 GiB peak"
    for r in ooms:
        assert r["profile"] and r["gpu"] == 0 and r["end_s"] > r["start_s"] and "out of memory" in r["why"]
    last = {r["job_id"]: r for r in rows}
    assert all(r["outcome"] == "ok" and r["why"] == "completed" for r in last.values())


def test_demo_and_run_write_the_schedule(capsys, tmp_path, job_file):
    code, _, _ = run(capsys, "run", str(job_file), "--backend", "sim", "--gpu", "A100-40GB",
                     "--state", str(tmp_path / "r.db"), "--schedule", str(tmp_path / "run.csv"), "-q")
    assert code == 0
    with (tmp_path / "run.csv").open() as f:
        assert {r["policy"] for r in csv.DictReader(f)} == {"migm"}
    code, _, _ = run(capsys, "demo", "--gpus", "1", "--report", str(tmp_path / "d"),
                     "--schedule", str(tmp_path / "demo.json"), "-q")
    assert code == 0
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert {"serial", "static", "greedy", "migm"} <= {r["policy"] for r in rows}


def test_run_checks_outputs_before_starting(capsys, tmp_path, job_file):
    state = tmp_path / "r.db"
    code, _, err = run(capsys, "run", str(job_file), "--backend", "sim", "--gpu", "A100-40GB",
                       "--state", str(state), "--json", str(tmp_path / "nope" / "r.json"))
    assert code == 2 and "does not exist" in err
    assert not state.exists()
