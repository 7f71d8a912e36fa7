"""The CLI on inputs a hostile-input review found mishandled (round 13): each exits with one line
naming the mistake, never a traceback, a silent misreading or a file written where none should be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_support import run_cli
from migsched.cli.run_cmds import _later_arrivals
from migsched.compare import mig_change_note
from migsched.core.source import TraceSource
from migsched.estimators.history import HistoryStore
from migsched.errors import JobFileError
from migsched.jobs import load_jobs_dict


def _model_job(tmp_path: Path) -> Path:
    p = tmp_path / "ok.yaml"
    p.write_text(yaml.safe_dump({"version": 1, "jobs": [
        {"name": "a", "class": "scientific", "model": {"runtime_s": 10, "peak_gib": 5}}]}))
    return p


def _task_file(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "tasks.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


# ---- layouts, policies, outputs ------------------------------------------------------------------
@pytest.mark.parametrize("layout, gpus", [(";", 1), (" ; ", 1), ("2× ", 2)])
def test_a_static_layout_with_no_instance_is_refused(capsys, tmp_path, layout, gpus):
    code, _out, err = run_cli(capsys, "simulate", str(_model_job(tmp_path)), "--gpu", "A100-80GB", "--gpus",
                              str(gpus), "--policy", "static", "--layout", layout)
    assert code == 2 and "has no instance on any GPU" in err


def test_the_layout_count_error_says_one_for_all(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "simulate", str(_model_job(tmp_path)), "--gpu", "A100-80GB", "--gpus", "2",
                              "--layout", "3× 7g.80gb@0")
    assert code == 2 and "give one layout for all of them, or exactly 2" in err


def test_run_refuses_the_clairvoyant_policy_and_leaves_no_state(capsys, tmp_path):
    db = tmp_path / "o.db"
    code, _out, err = run_cli(capsys, "run", str(_model_job(tmp_path)), "--backend", "sim", "--policy", "optimal",
                              "--state", str(db))
    assert code == 2 and "migsched simulate JOBS --policy optimal" in err
    assert not db.exists()


def test_json_and_schedule_on_one_file_are_refused(capsys, tmp_path):
    out = tmp_path / "x.json"
    code, _o, err = run_cli(capsys, "simulate", str(_model_job(tmp_path)), "--gpu", "A100-80GB",
                            "--json", str(out), "--schedule", str(tmp_path / "." / "x.json"))
    assert code == 2 and "name the same file" in err and not out.exists()


def test_an_output_folder_that_takes_no_file_is_refused_before_any_work(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        probe = ro / "p"
        try:  # root writes anyway: then /proc stands for a folder whose permission bits lie
            probe.write_text("")
            probe.unlink()
            target = Path("/proc/migsched-test.json")
        except OSError:
            target = ro / "x.json"
        code, _o, err = run_cli(capsys, "simulate", str(_model_job(tmp_path)), "--gpu", "A100-80GB", "--json",
                                str(target))
        assert code == 2 and "cannot write --json" in err
    finally:
        ro.chmod(0o700)


# ---- run: the state file and --resume ------------------------------------------------------------
def test_a_state_file_in_a_missing_folder_is_refused_and_no_folder_made(capsys, tmp_path):
    state = tmp_path / "nope" / "x.db"
    code, _o, err = run_cli(capsys, "run", str(_task_file(tmp_path, "true")), "--state", str(state))
    assert code == 2 and "does not exist (create it first)" in err
    assert not state.parent.exists()


def test_resume_refuses_options_that_differ_and_a_finished_run(capsys, tmp_path):
    state = tmp_path / "r.db"
    tasks = _task_file(tmp_path, "true")
    assert run_cli(capsys, "run", str(tasks), "--state", str(state), "-q")[0] == 0
    tasks.write_text("true\ntrue\n")  # one more line: a new job to resume for
    code, _o, err = run_cli(capsys, "run", str(tasks), "--resume", "--state", str(state), "--policy", "greedy",
                            "--gpus", "3", "--gpu", "H100-80GB")
    assert code == 2
    for part in ("--gpu H100-80GB was given, the run has A100-40GB", "--gpus 3 was given, the run has 1",
                 "--policy greedy was given, the run has migm"):
        assert part in err
    # the same options as the run's are fine
    code, _o, err = run_cli(capsys, "run", str(tasks), "--resume", "--state", str(state), "--policy", "migm",
                            "--gpu", "A100-40GB", "--backend", "local", "-q")
    assert code == 0, err
    # now every job is done and the file adds none: nothing to resume
    code, _o, err = run_cli(capsys, "run", "--resume", "--state", str(state))
    assert code == 2 and "has finished (2 done, 0 failed)" in err


@pytest.mark.parametrize("n, words", [(1, "job 'j0' has no command"),
                                      (7, "jobs 'j0', 'j1', 'j2', 'j3', 'j4' and 2 more have no command")])
def test_jobs_without_a_command_are_named_in_english(capsys, tmp_path, n, words):
    jobs = tmp_path / "j.yaml"
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": [
        {"name": f"j{i}", "class": "scientific", "model": {"runtime_s": 1, "peak_gib": 1}} for i in range(n)]}))
    code, _o, err = run_cli(capsys, "run", str(jobs), "--state", str(tmp_path / "s.db"))
    assert code == 2 and words in err


class _Clock:
    def __init__(self, now_s: float) -> None:
        self._now = now_s

    def now_s(self) -> float:
        return self._now


class _Caps:
    mig = "emulated"


class _Backend:
    capabilities = _Caps()
    clock = _Clock(0.0)


class _Session:
    def __init__(self, source) -> None:
        self.source = source
        self.backend = _Backend()


def test_a_run_says_when_its_jobs_arrive_later():
    jobs = load_jobs_dict({"version": 1, "jobs": [
        {"name": "now", "class": "scientific", "command": ["true"]},
        {"name": "late", "class": "scientific", "command": ["true"], "arrival_s": 100_000},
        {"name": "later", "class": "scientific", "command": ["true"], "arrival_s": 200_000}]})
    line = _later_arrivals(_Session(TraceSource(j.spec for j in jobs)))
    assert line.startswith("2 job(s) arrive later") and "the first in 27.78 h" in line and "55.56 h" in line
    soon = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "command": ["true"],
                                                  "arrival_s": 5}]})
    assert _later_arrivals(_Session(TraceSource(j.spec for j in soon))) == ""  # seconds away: no line


# ---- job files the OS would refuse at launch -------------------------------------------------------
@pytest.mark.parametrize("entry, field", [
    ({"env": {"A=B": "x"}}, "env"),
    ({"env": {"A": "x\0y"}}, "env"),
    ({"command": ["tr\0ue"]}, "command"),
    ({"cwd": "/tmp\0x"}, "cwd"),
])
def test_values_execve_refuses_are_refused_when_the_file_is_read(entry, field):
    doc = {"version": 1, "jobs": [{"name": "a", "class": "scientific", "command": ["true"], **entry}]}
    with pytest.raises(JobFileError, match=f"field {field}"):
        load_jobs_dict(doc)


def test_the_mig_change_note_counts_jobs_not_attempts():
    class _Run:
        def __init__(self, profile):
            self.profile = profile

    class _Job:
        runs = [_Run("whole")] * 10  # ten launches of one job on a whole GPU

    class _Res:
        policy = "migm"
        mig_mode_changes = 10
        jobs = [_Job()]

    assert "to run 1 job on a whole GPU" in mig_change_note(_Res())


# ---- the history viewer writes nothing -------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "[]", "{}", "NaN", "version: 1\njobs: []\n"])
def test_the_history_viewer_refuses_what_is_no_history_file_and_writes_nothing(capsys, tmp_path, text):
    f = tmp_path / "h.json"
    f.write_text(text)
    code, _o, err = run_cli(capsys, "history", str(f))
    assert code == 2 and "is not a readable migsched history file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json"]


@pytest.mark.parametrize("peak", [-1.0, 1e308])
def test_a_history_record_no_run_can_have_is_an_unreadable_file(tmp_path, peak):
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"version": 1, "jobs": {"k": [{"profile": "1g.10gb", "peak_mib": peak, "ok": True}]}}))
    with pytest.warns(UserWarning, match="peak_mib must be in"):
        store = HistoryStore(f, autosave=False)
    assert store.families() == [] and (tmp_path / "h.json.unreadable").exists()  # a run sets it aside


# ---- narrow terminals and pipes --------------------------------------------------------------------
def test_gpus_at_80_columns_keeps_profile_names_whole(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "gpus", "A100-80GB")
    assert code == 0 and "…" not in out
    assert max(len(line) for line in out.splitlines() if line.startswith(("┃", "│", "┏"))) <= 80
    assert "│ 1g.10gb+me │" in out and "0,1,2,3,4,5,6" in out  # dropped: the NVML enum names


def test_validate_at_80_columns_shows_the_models_that_fit_and_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "validate", str(_model_job(tmp_path)))
    assert code == 0 and "…" not in out
    assert "more GPU models" in out and "--gpu" in out
    code, out, _ = run_cli(capsys, "validate", str(_model_job(tmp_path)), "--gpu", "A100-80GB", "--gpu", "H100-80GB")
    assert "more GPU models" not in out and "H100-80GB" in out


def test_a_reader_that_leaves_the_pipe_early_gives_141_not_1():
    """`validate` exits 1 for "an entry fits nowhere"; a closed pipe must not look like that. The
    pipe's reading end is closed before the child starts, so the first write fails for certain."""
    import os
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "migsched.cli.main", "gpus"], stdout=w, stderr=subprocess.PIPE,
                           timeout=60, check=False)
    finally:
        os.close(w)
    assert p.returncode == 141, p.stderr
    assert b"Traceback" not in p.stderr


@pytest.mark.parametrize("argv", [["validate", "{jobs}", "--class", "foo"],
                                  ["run", "{jobs}", "--class", "foo", "--state", "{state}"],
                                  ["run", "{jobs}", "--node-backend", "foo", "--state", "{state}"]])
def test_an_option_that_does_not_apply_is_still_checked(capsys, tmp_path, argv):
    jobs, state = str(_model_job(tmp_path)), str(tmp_path / "s.db")
    code, _o, err = run_cli(capsys, *(a.format(jobs=jobs, state=state) for a in argv))
    assert code == 2 and "unknown" in err and "foo" in err
    assert not (tmp_path / "s.db").exists()


def test_resume_compares_each_option_with_what_the_backend_stored():
    from migsched.live.session import _clashes
    ray = {"backend": "ray", "gpus": ["A100-40GB"] * 4,
           "backend_options": {"gpus_per_node": 2, "gpu": "A100-40GB", "nodes": 2, "node_backend": "local"}}
    assert _clashes(ray, {"--gpus": 2, "--gpu": "A100-40GB", "--nodes": 2}) == []  # its own command line
    assert _clashes(ray, {"--gpus": 3}) == ["--gpus 3 was given, the run has 2"]  # per node, not in all
    nvml = {"backend": "nvml", "gpus": ["H100-80GB"], "backend_options": {"manage_existing": False}}
    assert _clashes(nvml, {"--gpus": 1, "--gpu": "A100-40GB", "--manage-existing": True}) == [
        "--manage-existing True was given, the run has False"]  # --gpu/--gpus: nvml discovers its GPUs
    local = {"backend": "local", "gpus": ["A100-40GB"], "backend_options": {}, "mib_per_gib": 16}
    assert _clashes(local, {"--address": "x", "--nodes": 5, "--mib-per-gib": 16.0}) == []  # not for local


@pytest.mark.parametrize("cols", ["60", "80"])
def test_a_piped_comparison_fits_the_columns_the_user_set(capsys, monkeypatch, tmp_path, cols):
    monkeypatch.setenv("COLUMNS", cols)
    code, out, _ = run_cli(capsys, "simulate", str(_model_job(tmp_path)), "--gpu", "A100-80GB", "--wide")
    assert code == 0 and "…" not in out
    table = [line for line in out.splitlines() if "×" in line or "policy" in line]
    assert table and max(len(line) for line in table) <= int(cols)
    assert "the --wide table does not fit" in out
    code, out, _ = run_cli(capsys, "policies")  # a table that does not adapt ignores COLUMNS: never cut
    assert code == 0 and "…" not in out


def test_mix_list_refuses_a_name_it_would_ignore(capsys):
    code, _o, err = run_cli(capsys, "mix", "--list", "nope")
    assert code == 2 and "takes no NAME" in err
    assert run_cli(capsys, "mix", "--list")[0] == 0
