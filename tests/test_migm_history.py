"""migm across batches: durations by family in the history file, recalled by the next batch.

What a second batch of the same workload may use (issue 9: "the job's history"): the compute
time each family took per instance size, kept beside the memory peaks in `HistoryStore`, read
by `RunTimes.recall` before a run of the family completed here, and written when the run ends
(`Policy.close`, called by `drive`).
"""

from __future__ import annotations

import json
import warnings

import pytest

from cli_support import run_cli
from migm_support import A100, batch, job
from migsched.estimators import DurationRecord, HistoryStore
from migsched.policies.migm.restarts import RunTimes
from migsched.policies.registry import create_policy
from migsched.run import simulate


# ---- the store ------------------------------------------------------------------------------
def test_durations_round_trip_and_median_per_size(tmp_path):
    path = tmp_path / "h.json"
    h = HistoryStore(path)
    for work in (100.0, 300.0, 200.0):
        h.record_duration("bfs", DurationRecord(1, work, 2.0))
    h.record_duration("bfs", DurationRecord(7, 40.0))
    again = HistoryStore(path)
    assert again.durations("bfs") == {1: (200.0, 2.0), 7: (40.0, 0.0)}
    assert again.durations("nw") == {}


def test_a_file_from_before_durations_loads_with_none(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"version": 1, "jobs": {"a": [{"profile": "1g.10gb", "peak_mib": 900.0, "ok": True}]}}))
    h = HistoryStore(path)
    assert h.peak_mib("a") == 900.0 and h.durations("a") == {}


@pytest.mark.parametrize("bad", [{"compute_slices": 0, "work_s": 10.0}, {"compute_slices": 1, "work_s": -1.0},
                                 {"compute_slices": 1, "work_s": float("nan")}, {"work_s": 10.0}])
def test_an_impossible_duration_record_makes_the_file_unreadable_with_a_warning(tmp_path, bad):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": 1, "jobs": {}, "durations": {"f": [bad]}}).replace("NaN", '"nan"'))
    with pytest.warns(UserWarning, match="ignoring unreadable"):
        h = HistoryStore(path)
    assert h.durations("f") == {}


def test_saves_are_spaced_and_flush_writes_the_rest(tmp_path):
    path = tmp_path / "h.json"
    h = HistoryStore(path, save_interval_s=3600.0)
    h.record_duration("f", DurationRecord(1, 10.0))  # the first record saves at once
    h.record_duration("f", DurationRecord(1, 20.0))  # within the interval: not yet
    assert len(json.loads(path.read_text())["durations"]["f"]) == 1
    h.flush()
    assert len(json.loads(path.read_text())["durations"]["f"]) == 2


# ---- recall -----------------------------------------------------------------------------------
def test_recall_takes_the_family_durations_only_before_it_is_known():
    h = HistoryStore.in_memory()
    h.record_duration("long", DurationRecord(1, 900.0, 3.0))
    times = RunTimes(history=h)
    assert times.recall("long") and times.compute_s("long", "scientific", 1) == 900.0
    assert times.fam_startup["long"] == 3.0
    assert not times.recall("short")  # nothing recorded
    times.compute["long"] = {1: 50.0}  # learned in this batch since: the batch wins
    assert not times.recall("long") and times.compute_s("long", "scientific", 1) == 50.0


def _order_batch():
    """Six short whole-GPU jobs submitted before one long one: with nothing learned the first
    short one starts first (FIFO); knowing the long one is long starts it first."""
    return batch(job("short", count=6, hint=70.0, peak=60.0, runtime=100.0),
                 job("long", hint=70.0, peak=60.0, runtime=1000.0))


def _long_start(res) -> float:
    return next(j.runs[0].launched_s for j in res.jobs if j.name.startswith("long"))


def test_a_family_long_in_an_earlier_batch_starts_first_in_the_next():
    cold = simulate(_order_batch(), A100, 1, policy="migm", seed=0)
    assert _long_start(cold) >= 100.0  # behind a short one at least
    h = HistoryStore.in_memory()
    simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=h), seed=0)
    warm = simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=h), seed=0)
    assert _long_start(warm) < 5.0
    assert warm.jobs_failed == 0


def test_the_history_file_holds_every_run_when_the_run_ends(tmp_path):
    """Saves are spaced during the run (`HISTORY_SAVE_S`); `close` writes the rest."""
    path = tmp_path / "h.json"
    store = HistoryStore(path, save_interval_s=3600.0)
    simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=store), seed=0)
    doc = json.loads(path.read_text())
    assert sum(len(v) for v in doc["durations"].values()) == 7
    assert sum(len(v) for v in doc["jobs"].values()) == 7


def test_migm_takes_a_path_and_writes_the_file(tmp_path):
    path = tmp_path / "sub" / "h.json"
    simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=str(path)), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HistoryStore(path).durations("long")[7][0] > 0


# ---- the CLI ----------------------------------------------------------------------------------
@pytest.fixture
def order_file(tmp_path):
    doc = {"version": 1, "jobs": [
        {"name": "short", "class": "scientific", "count": 6, "hint_gib": 70,
         "model": {"runtime_s": 100, "peak_gib": 60, "speedup": {1: 0.5}, "startup_s": 1}},
        {"name": "long", "class": "scientific", "hint_gib": 70,
         "model": {"runtime_s": 1000, "peak_gib": 60, "speedup": {1: 0.5}, "startup_s": 1}},
    ]}
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(doc))
    return path


def _mean_jct(capsys, *argv) -> float:
    code, out, _ = run_cli(capsys, *argv, "--json", "-", "-q")
    assert code == 0
    return next(r for r in json.loads(out)["results"] if r["policy"] == "migm")["mean_jct_s"]


def test_simulate_history_second_run_learns_from_the_first(capsys, tmp_path, order_file):
    hist = tmp_path / "h.json"
    args = ("simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm", "--policy", "greedy")
    first = _mean_jct(capsys, *args, "--history", str(hist))
    assert hist.exists()
    second = _mean_jct(capsys, *args, "--history", str(hist))
    assert _mean_jct(capsys, *args) == first  # without the file: as the first run
    assert second != first  # the long job moved to the front


def test_history_for_policies_that_keep_none_is_an_error(capsys, tmp_path, order_file):
    code, _, err = run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "greedy",
                           "--history", str(tmp_path / "h.json"))
    assert code == 2 and "keeps a history" in err and "migm" in err
    code, _, err = run_cli(capsys, "run", str(order_file), "--backend", "sim", "--policy", "greedy",
                           "--state", str(tmp_path / "s.db"), "--history", str(tmp_path / "h.json"))
    assert code == 2 and "keeps no history" in err and not (tmp_path / "s.db").exists()


def test_history_that_is_a_directory_is_an_error(capsys, tmp_path, order_file):
    code, _, err = run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm",
                           "--history", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_run_with_history_writes_the_file(capsys, tmp_path, order_file):
    hist = tmp_path / "h.json"
    code, out, err = run_cli(capsys, "run", str(order_file), "--backend", "sim", "--gpu", "A100-80GB",
                             "--state", str(tmp_path / "s.db"), "--history", str(hist))
    assert code == 0, err
    assert HistoryStore(hist).durations("long")
    assert "run times of 2 job families" in " ".join((out + err).split())


def test_a_failing_save_warns_once(tmp_path):
    (tmp_path / "f").write_text("a file where a folder should be")
    h = HistoryStore(tmp_path / "f" / "h.json")
    with pytest.warns(UserWarning, match="could not save the history file") as caught:
        h.record_duration("f", DurationRecord(1, 10.0))
        h.record_duration("f", DurationRecord(1, 20.0))
        h.flush()
    assert len([w for w in caught if "could not save" in str(w.message)]) == 1


def test_the_cli_prints_a_history_warning_as_one_line(capsys, tmp_path, order_file):
    bad = tmp_path / "h.json"
    bad.write_text("not json")
    code, _, err = run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm",
                           "--history", str(bad), "-q")
    assert code == 0
    assert "warning: migsched: ignoring unreadable history file" in err and "UserWarning" not in err
    assert HistoryStore(bad).durations("long")  # rewritten, readable again


def test_history_below_a_file_is_an_error(capsys, tmp_path, order_file):
    (tmp_path / "f").write_text("x")
    code, _, err = run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm",
                           "--history", str(tmp_path / "f" / "h.json"))
    assert code == 2 and "is a file, not a folder" in err


def test_history_command_shows_families_and_peaks(capsys, tmp_path, order_file):
    hist = tmp_path / "h.json"
    assert run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm",
                   "--history", str(hist), "-q")[0] == 0
    code, out, _ = run_cli(capsys, "history", str(hist))
    assert code == 0 and "long" in out and "short" in out and "run times by family (2)" in out
    code, out, _ = run_cli(capsys, "history", str(hist), "--json")
    doc = json.loads(out)
    assert doc["families"]["short"]["runs"] == 6 and doc["families"]["long"]["runs"] == 1
    (gpu, sizes), = doc["families"]["long"]["by_gpu"].items()
    (size, entry), = sizes.items()
    assert gpu == "A100-80GB" and int(size) >= 1 and entry["median_work_s"] > 0
    assert {p["name"] for p in doc["peaks"]} == {"long", "short"}


@pytest.mark.parametrize("make", ["missing", "dir"])
def test_history_command_without_a_file_is_an_error(capsys, tmp_path, make):
    path = tmp_path / "h.json"
    if make == "dir":
        path.mkdir()
    code, _, err = run_cli(capsys, "history", str(path))
    assert code == 2 and ("no history file" in err or "is a directory" in err)


def test_simulate_says_what_the_history_holds_after_the_run(capsys, tmp_path, order_file):
    hist = tmp_path / "h.json"
    code, out, _ = run_cli(capsys, "simulate", str(order_file), "--gpu", "A100-80GB", "--policy", "migm",
                           "--history", str(hist))
    assert code == 0 and "run times of 2 job families" in " ".join(out.split())


# ---- hostile files and edges (review of round 8) ------------------------------------------
@pytest.mark.parametrize("slices", ["1e999", "10" + "0" * 400, "0", "2.5", "true"])
def test_a_compute_slice_count_no_instance_has_is_refused(tmp_path, slices):
    path = tmp_path / "h.json"
    path.write_text('{"version": 1, "jobs": {}, "durations": {"f": [{"compute_slices": %s, "work_s": 10}]}}' % slices)
    with pytest.warns(UserWarning, match="ignoring unreadable"):
        assert HistoryStore(path).durations("f") == {}


def test_an_unreadable_file_is_copied_aside_before_it_is_rewritten(tmp_path):
    path = tmp_path / "h.json"
    path.write_text('{"version": 2, "jobs": {"a": []}}')
    with pytest.warns(UserWarning, match="copied to"):
        h = HistoryStore(path)
    h.record_duration("f", DurationRecord(1, 10.0))
    assert (tmp_path / "h.json.unreadable").read_text() == '{"version": 2, "jobs": {"a": []}}'
    assert HistoryStore(path).durations("f") == {1: (10.0, 0.0)}


def test_durations_are_recalled_only_on_the_gpu_model_they_ran_on():
    h = HistoryStore.in_memory()
    h.record_duration("long", DurationRecord(7, 1000.0, 0.0, "H100-80GB"))
    warm = simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=h), seed=0)
    assert _long_start(warm) >= 100.0  # an H100's run time says nothing here: as without history
    h.record_duration("long", DurationRecord(7, 1000.0, 0.0, "A100-80GB"))
    warm = simulate(_order_batch(), A100, 1, policy=create_policy("migm", history=h), seed=0)
    assert _long_start(warm) < 5.0


def test_history_command_shows_names_as_they_are(capsys, tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"version": 1, "jobs": {"a[/]b": [{"profile": "", "peak_mib": 1.0, "ok": True}]},
                                "durations": {"exp[lr=0.1]": [{"compute_slices": 1, "work_s": 5.0}]}}))
    code, out, _ = run_cli(capsys, "history", str(path))
    assert code == 0 and "exp[lr=0.1]" in out and "a[/]b" in out


def test_a_policy_that_cannot_close_does_not_lose_the_run():
    class Failing(type(create_policy("greedy"))):
        def close(self) -> None:
            raise RuntimeError("disk on fire")

    with pytest.warns(UserWarning, match="could not close: disk on fire"):
        res = simulate(_order_batch(), A100, 1, policy=Failing(), seed=0)
    assert res.jobs_failed == 0 and len(res.jobs) == 7


def test_a_resumed_run_keeps_the_history_file_it_started_with(tmp_path):
    """The policy options are in the run store, so `--resume` (which refuses --history) reads
    and extends the same file, and drive's close() writes it."""
    import sys

    from migsched.live.session import resume_run, start_run
    from migsched.run import drive

    jobs = tmp_path / "tasks.txt"
    jobs.write_text(f"{sys.executable} -c pass\n")
    hist = tmp_path / "h.json"
    first = start_run(jobs, backend="local", gpu="A100-40GB", gpus=1, policy="migm", state=tmp_path / "r.db",
                      policy_options={"history": str(hist)})
    first.store.close()
    first.lock.release()  # the scheduler stopped before it ran anything
    again = resume_run(tmp_path / "r.db")
    try:
        assert again.core.policy.history.path == hist
        drive(again.core, again.backend, again.source, again.recorder)
    finally:
        again.backend.close()
        again.store.close()
        again.lock.release()
    assert HistoryStore(hist).families()  # the task's run time, written when the run ended
