"""The run store (migsched.store): file checks, permissions, durability under SIGKILL, the attempt
and instance lifecycles, stale calls, the JobSpec codec and the status views."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from migsched.jobs.model import Describe, JobClass, JobSpec
from migsched.store import (
    SCHEMA_VERSION,
    AttemptError,
    RunStore,
    SchemaVersionError,
    StoreError,
    spec_from_dict,
    spec_to_dict,
)
from migsched.store.status import render_status, restarts, status_dict

META = {"backend": "local", "gpus": ["A100-80GB"], "policy": "migm", "options": {"early_restart": True},
        "job_file": "/data/sweep.txt", "started_wall": "2026-01-02T03:04:05Z"}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "run.db"


@pytest.fixture
def store(path):
    with RunStore.create(path, META) as s:
        s.add_jobs([("a", 0, {"job_id": "a"}), ("b", 1, {"job_id": "b"})])
        yield s


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# ---- creating and opening -----------------------------------------------------------------
def test_create_then_open_keeps_meta_and_set_meta_replaces(path):
    RunStore.create(path, META).close()
    with RunStore.open(path) as s:
        assert s.meta() == {**META, "schema_version": SCHEMA_VERSION}
        s.set_meta("policy", "greedy")
        s.set_meta("resumed", 1)
    with RunStore.open(path) as s:
        assert s.meta()["policy"] == "greedy" and s.meta()["resumed"] == 1


@pytest.mark.parametrize("key, value, fragment", [("schema_version", 2, "schema_version"),
                                                  ("x", float("nan"), "'x'"), ("y", object(), "'y'")])
def test_meta_rejects_reserved_keys_and_non_json_values(store, path, key, value, fragment):
    with pytest.raises(StoreError, match=fragment):
        store.set_meta(key, value)
    with pytest.raises(StoreError, match=fragment):
        RunStore.create(path.with_name("other.db"), {key: value})


def test_create_refuses_an_existing_file_and_leaves_it_alone(path):
    path.write_text("precious")
    with pytest.raises(StoreError, match="exists") as exc:
        RunStore.create(path, META)
    assert str(path) in str(exc.value)
    assert path.read_text() == "precious"


def test_create_in_a_missing_folder_names_the_path(tmp_path):
    with pytest.raises(StoreError, match="cannot create run store .*nowhere.*No such file"):
        RunStore.create(tmp_path / "nowhere" / "run.db", META)


def test_create_refuses_a_leftover_wal_of_an_earlier_store(path):
    (path.parent / (path.name + "-wal")).write_bytes(b"old frames")
    with pytest.raises(StoreError, match="leftover"):
        RunStore.create(path, META)
    assert not path.exists()


def test_open_a_missing_file_fails_and_creates_nothing(path):
    with pytest.raises(StoreError, match="no such file") as exc:
        RunStore.open(path)
    assert str(path) in str(exc.value) and not path.exists()


@pytest.mark.parametrize("content, fragment", [(b"version: 1\njobs: []\n" * 100, "not an SQLite database"),
                                               (b"", "interrupted")])
def test_open_a_file_that_is_no_store_says_so(path, content, fragment):
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"not a migsched run store.*{fragment}"):
        RunStore.open(path)


def test_open_another_programs_database_fails_without_changing_it(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        RunStore.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    conn.close()


@pytest.mark.parametrize("found, fragment", [(SCHEMA_VERSION + 1, "newer migsched"), (0, "does not migrate")])
def test_open_checks_the_schema_version(path, found, fragment):
    RunStore.create(path, META).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(found),))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match=fragment) as exc:
        RunStore.open(path)
    msg = str(exc.value)
    assert str(path) in msg and f"version {found}" in msg and f"supports version {SCHEMA_VERSION}" in msg


def test_wal_and_synchronous_full_on_create_and_open(path):
    for s in (RunStore.create(path, META), RunStore.open(path)):
        with s:
            assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_are_owner_only_including_the_wal_after_a_write(path, loose_umask):
    with RunStore.create(path, META) as s:
        assert mode(path) == 0o600
        s.add_jobs([("a", 0, {})])
        for suffix in ("-wal", "-shm"):
            sibling = path.parent / (path.name + suffix)
            assert sibling.exists() and mode(sibling) == 0o600, suffix
    assert os.umask(0o022) == 0o022  # the umask was restored


def test_open_tightens_a_store_made_readable_to_others(path, loose_umask):
    RunStore.create(path, META).close()
    os.chmod(path, 0o644)
    with RunStore.open(path) as s:
        s.log(0.0, "resume")
        assert mode(path) == 0o600 and mode(path.parent / (path.name + "-wal")) == 0o600


def test_a_closed_store_says_so(store):
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.counts()


# ---- jobs and attempts ----------------------------------------------------------------------
def test_add_jobs_is_all_or_nothing_and_names_the_duplicate(store):
    with pytest.raises(StoreError, match="job id 'c'"):
        store.add_jobs([("c", 5, {}), ("d", 6, {}), ("c", 7, {})])
    with pytest.raises(StoreError, match=r"seq 1 \(of job 'b'\)"):
        store.add_jobs([("e", 1, {})])
    assert [j.job_id for j in store.jobs()] == ["a", "b"]


def test_jobs_come_back_in_seq_order_with_their_specs(path):
    with RunStore.create(path, META) as s:
        s.add_jobs([("late", 9, {"n": 9}), ("early", 2, {"n": [2]})])
        assert [(j.job_id, j.seq, j.spec) for j in s.jobs()] == [("early", 2, {"n": [2]}), ("late", 9, {"n": 9})]


def test_a_full_attempt_lifecycle_is_visible_to_another_reader_after_each_call(store, path):
    reader = RunStore.open(path)  # a second connection sees only committed writes

    def row():
        return {j.job_id: j for j in reader.jobs()}["a"]

    assert store.begin_attempt("a", 1, gpu=0, start=6, profile="1g.10gb", time_s=1.0)
    r = row()
    assert (r.state, r.attempt, r.gpu, r.start, r.profile, r.begun_s, r.pid) == ("launching", 1, 0, 6, "1g.10gb", 1.0, None)
    assert store.attempt_started("a", 1, pid=4242, create_time=1234.5, time_s=1.5)
    r = row()
    assert (r.state, r.pid, r.pid_create_time, r.launched_s) == ("running", 4242, 1234.5, 1.5)
    assert store.attempt_ended("a", 1, "oom", "queued", 9.0, failure="out of memory on 1g.10gb", peak_mib=10240.0)
    r = row()
    assert (r.state, r.attempt, r.outcomes, r.gpu, r.pid, r.launched_s, r.failure, r.peak_mib) == \
        ("queued", 1, ("oom",), None, None, None, None, 10240.0)
    assert store.begin_attempt("a", 2, gpu=0, start=0, profile="3g.40gb", time_s=10.0)
    assert store.attempt_started("a", 2, pid=4300, create_time=1300.0, time_s=10.5)
    assert store.attempt_ended("a", 2, "ok", "done", 60.0, peak_mib=5000.0)
    r = row()
    assert (r.state, r.attempt, r.outcomes, r.gpu, r.start, r.profile, r.finished_s, r.peak_mib) == \
        ("done", 2, ("oom", "ok"), 0, 0, "3g.40gb", 60.0, 10240.0)
    hist = reader.attempts("a")
    assert [(h.attempt, h.profile, h.pid, h.outcome, h.failure, h.peak_mib) for h in hist] == [
        (1, "1g.10gb", 4242, "oom", "out of memory on 1g.10gb", 10240.0), (2, "3g.40gb", 4300, "ok", None, 5000.0)]
    assert reader.counts() == {"queued": 1, "launching": 0, "running": 0, "done": 1, "failed": 0}
    reader.close()


def test_an_attempt_may_end_while_launching_and_fail_the_job(store):
    store.begin_attempt("a", 1, 0, 0, "7g.80gb", 0.0)
    assert store.attempt_ended("a", 1, "failed", "failed", 1.0, failure="exec: no such file")
    j = store.jobs()[0]
    assert (j.state, j.failure, j.finished_s, j.outcomes) == ("failed", "exec: no such file", 1.0, ("failed",))


def test_stale_calls_change_nothing_and_return_false(store):
    store.begin_attempt("a", 1, 0, 0, "1g.10gb", 0.0)
    store.attempt_started("a", 1, 11, 1.0, 0.5)
    store.attempt_ended("a", 1, "killed:early-restart", "queued", 2.0)
    store.begin_attempt("a", 2, 0, 4, "2g.20gb", 3.0)
    before = store.jobs()
    assert store.begin_attempt("a", 2, 1, 0, "7g.80gb", 4.0) is False  # replayed intent
    assert store.begin_attempt("a", 1, 1, 0, "7g.80gb", 4.0) is False  # an older attempt
    assert store.attempt_started("a", 1, 99, 9.0, 4.0) is False
    assert store.attempt_ended("a", 1, "ok", "done", 4.0) is False  # old process exits late
    store.attempt_started("a", 2, 12, 3.0, 3.5)
    assert store.attempt_started("a", 2, 13, 3.1, 3.6) is False  # already started
    after = store.jobs()
    assert [j for j in after if j.job_id == "b"] == [j for j in before if j.job_id == "b"]
    a = after[0]
    assert (a.state, a.attempt, a.pid, a.start, a.outcomes) == ("running", 2, 12, 4, ("killed:early-restart",))
    store.attempt_ended("a", 2, "ok", "done", 5.0)
    assert store.attempt_ended("a", 2, "oom", "queued", 6.0) is False  # already ended
    assert store.jobs()[0].state == "done"


@pytest.mark.parametrize("call, fragment", [
    (lambda s: s.begin_attempt("a", 2, 0, 0, "1g.10gb", 0.0), "next one is 1, not 2"),
    (lambda s: s.begin_attempt("a", 0, 0, 0, "1g.10gb", 0.0), "attempts count from 1"),
    (lambda s: s.begin_attempt("zz", 1, 0, 0, "1g.10gb", 0.0), "'zz' is not in the store"),
    (lambda s: s.attempt_started("a", 1, 1, 0.0, 0.0), "never begun"),
    (lambda s: s.attempt_ended("a", 1, "ok", "done", 0.0), "never begun"),
    (lambda s: s.attempt_ended("a", 1, "boom", "queued", 0.0), "'boom' is not valid.*killed:<reason>"),
    (lambda s: s.attempt_ended("a", 1, "killed:", "queued", 0.0), "'killed:' is not valid"),
    (lambda s: s.attempt_ended("a", 1, "oom", "running", 0.0), "new_state 'running'"),
    (lambda s: s.attempt_ended("a", 1, "oom", "done", 0.0), "done exactly when"),
    (lambda s: s.attempt_ended("a", 1, "ok", "queued", 0.0), "done exactly when"),
])
def test_impossible_attempt_calls_raise_naming_the_problem(store, call, fragment):
    with pytest.raises(AttemptError, match=fragment):
        call(store)
    assert store.counts()["queued"] == 2


def test_begin_on_a_job_that_is_not_queued_raises(store):
    store.begin_attempt("a", 1, 0, 0, "1g.10gb", 0.0)
    store.attempt_ended("a", 1, "ok", "done", 1.0)
    with pytest.raises(AttemptError, match="'a' is done, not queued"):
        store.begin_attempt("a", 2, 0, 0, "1g.10gb", 2.0)


def test_job_failed_fails_a_queued_job_once_and_refuses_a_running_one(store):
    assert store.job_failed("a", "needs 90 GiB; the largest instance has 80 GiB", 3.0)
    assert store.job_failed("a", "again", 4.0) is False
    a = store.jobs()[0]
    assert (a.state, a.failure, a.finished_s, a.attempt) == ("failed", "needs 90 GiB; the largest instance has 80 GiB", 3.0, 0)
    store.begin_attempt("b", 1, 0, 0, "1g.10gb", 0.0)
    with pytest.raises(AttemptError, match="'b' is launching"):
        store.job_failed("b", "x", 5.0)


def test_a_write_that_fails_half_way_leaves_nothing_behind(store):
    store.begin_attempt("a", 1, 0, 0, "1g.10gb", 0.0)
    # attempt_ended updates the attempt row, then the job row: make the second statement fail
    store._conn.execute("CREATE TEMP TRIGGER boom BEFORE UPDATE ON jobs BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(StoreError, match="boom"):
        store.attempt_ended("a", 1, "oom", "queued", 1.0)
    store._conn.execute("DROP TRIGGER boom")
    assert store.attempts("a")[0].outcome is None
    assert store.jobs()[0].state == "launching"
    assert store.attempt_ended("a", 1, "oom", "queued", 1.0)  # the store is still usable


# ---- instances and the event log ----------------------------------------------------------
def test_instance_lifecycle_replays_and_conflicts(store):
    assert store.instance_intent(1, 4, "3g.40gb") and store.instance_intent(0, 0, "7g.80gb")
    assert store.instance_intent(1, 4, "3g.40gb") is False  # a replayed intent
    with pytest.raises(StoreError, match="gpu 1 slot 4 already holds 3g.40gb"):
        store.instance_intent(1, 4, "4g.40gb")
    assert store.instance_up(1, 4) and store.instance_up(1, 4) is False
    assert [(i.gpu, i.start, i.profile, i.state) for i in store.instances()] == [
        (0, 0, "7g.80gb", "creating"), (1, 4, "3g.40gb", "up")]
    with pytest.raises(StoreError, match="not recorded"):
        store.instance_up(2, 0)
    assert store.instance_destroying(0, 0)  # an abandoned creation
    with pytest.raises(StoreError, match="is destroying; it can become up only from creating"):
        store.instance_up(0, 0)
    assert store.instance_gone(0, 0) and store.instance_gone(0, 0) is False
    assert store.instance_intent(0, 0, "1g.10gb")  # the slot is free again
    assert [(i.start, i.profile) for i in store.instances() if i.gpu == 0] == [(0, "1g.10gb")]


def test_recent_returns_the_last_events_oldest_first(store):
    for k in range(5):
        store.log(float(k), "launch", job_id=f"j{k}", detail=f"#{k}")
    store.log(9.0, "resume")
    events = store.recent(3)
    assert [(e.time_s, e.kind, e.job_id, e.detail) for e in events] == [
        (3.0, "launch", "j3", "#3"), (4.0, "launch", "j4", "#4"), (9.0, "resume", None, "")]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert len(store.recent(100)) == 6 and store.recent(0) == []


# ---- SIGKILL at any point -------------------------------------------------------------------
# The child advances every job through the same 7 steps, printing one line after each call
# returns: what was printed must be in the file after the kill, whole.
STEPS = {("queued", 0): 1, ("launching", 1): 2, ("running", 1): 3, ("queued", 1): 4,
         ("launching", 2): 5, ("running", 2): 6, ("done", 2): 7}
CHILD = textwrap.dedent("""
    import sys
    from migsched.store import RunStore
    store = RunStore.open(sys.argv[1])
    rows = {r.job_id: r for r in store.jobs()}
    def ack(step, job):
        print(step, job, flush=True)
    def advance(r):
        j, i = r.job_id, r.seq
        key = (r.state, r.attempt)
        if key == ("queued", 0):
            store.begin_attempt(j, 1, i % 2, i % 8, "1g.10gb", float(i)); ack(2, j)
        elif key[0] == "launching":
            store.attempt_started(j, r.attempt, 1000 + i, 1.0, float(i)); ack(3 if r.attempt == 1 else 6, j)
        elif key == ("running", 1):
            store.attempt_ended(j, 1, "oom", "queued", float(i), failure="oom", peak_mib=10240.0); ack(4, j)
        elif key == ("queued", 1):
            store.begin_attempt(j, 2, i % 2, 0, "7g.80gb", float(i)); ack(5, j)
        elif key == ("running", 2):
            store.attempt_ended(j, 2, "ok", "done", float(i), peak_mib=20000.0); ack(7, j)
        store.log(float(i), "step", j, key[0]); ack("log", j)
    def row(j):
        return next(r for r in store.jobs() if r.job_id == j)
    for r in rows.values():  # resume: finish what the last child left half done
        while r.state != "done":
            advance(r)
            r = row(r.job_id)
    i = len(rows)
    while True:
        j = f"j{i:05d}"
        store.add_jobs([(j, i, {"job_id": j})]); ack(1, j)
        r = row(j)
        while r.state != "done":
            advance(r)
            r = row(j)
        i += 1
""")


def check_consistent(path, acked: dict[str, int], logs: int) -> dict[str, int]:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with RunStore.open(path) as s:
        positions = {}
        for r in s.jobs():
            pos = STEPS[(r.state, r.attempt)]
            assert acked.get(r.job_id, 0) <= pos <= acked.get(r.job_id, 0) + 1, r  # no acked write lost
            assert r.outcomes == (("oom",) if 4 <= pos <= 6 else ("oom", "ok") if pos == 7 else ()), r
            assert (r.gpu is None) == (r.state == "queued"), r
            assert (r.pid is not None) == (r.state in ("running",)) or r.state == "done", r
            assert len(s.attempts(r.job_id)) == r.attempt, r
            positions[r.job_id] = pos
        assert set(acked) <= set(positions)
        assert logs <= len(s.recent(10**9)) <= logs + 1
    return positions


def test_sigkill_mid_write_loses_no_acknowledged_write_and_tears_none(path, tmp_path):
    RunStore.create(path, META).close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(7)
    acked: dict[str, int] = {}
    logs = 0
    for _ in range(4):
        child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        want, lines = rng.randint(40, 250), []
        for line in child.stdout:
            lines.append(line)
            if len(lines) >= want:
                break
        os.kill(child.pid, signal.SIGKILL)
        rest, err = child.communicate()  # lines printed before the kill are acknowledged writes too
        assert child.returncode == -signal.SIGKILL, err
        for ln in [*lines, *rest.splitlines()]:
            step, job = ln.split()
            if step == "log":
                logs += 1
            else:
                acked[job] = max(acked.get(job, 0), int(step))
        check_consistent(path, acked, logs)
    assert len(acked) > 10  # the rounds did real work
    with RunStore.open(path) as s:  # a resumed store still takes writes
        s.log(0.0, "resumed")


# ---- codec ----------------------------------------------------------------------------------
opt_pos = st.none() | st.floats(min_value=1e-6, max_value=1e6)
opt_int = st.none() | st.integers(min_value=0, max_value=10**9)
describes = st.builds(Describe, params_m=opt_pos, dtype=st.none() | st.sampled_from(["fp32", "bf16", "int4"]),
                      optimizer=st.none() | st.sampled_from(["none", "adamw"]), batch_size=opt_int, layers=opt_int,
                      kv_heads=opt_int, head_dim=opt_int, context_tokens=opt_int, generated_tokens=opt_int)
argvs = st.lists(st.text(max_size=8), min_size=1, max_size=4).map(tuple)


@st.composite
def job_specs(draw):
    argv = draw(st.none() | argvs)
    # JobSpec splits `command` when argv is None, so a free-text command needs an argv beside it
    command = draw(st.none() | st.text(max_size=20)) if argv is not None else None
    return JobSpec(job_id=draw(st.text(min_size=1, max_size=12)), name=draw(st.text(min_size=1, max_size=12)),
                   job_class=draw(st.sampled_from(list(JobClass))), arrival_s=draw(st.floats(0, 1e9)),
                   hint_gib=draw(opt_pos), reports_progress=draw(st.booleans()), command=command,
                   env=tuple(draw(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3))),
                   cwd=draw(st.none() | st.text(max_size=10)), describe=draw(describes),
                   family=draw(st.text(max_size=8)), argv=argv)


@settings(max_examples=150, deadline=None)
@given(job_specs())
def test_codec_round_trips_every_spec_through_json(spec):
    d = spec_to_dict(spec)
    assert spec_from_dict(json.loads(json.dumps(d, allow_nan=False))) == spec


def test_specs_round_trip_through_the_store(path):
    spec = JobSpec(job_id="t#1", name="t", job_class=JobClass.ML_TRAIN, hint_gib=9.5, argv=("python", "t.py", "a b"),
                   env=(("Z", "1"), ("A", "2")), describe=Describe(params_m=125.0, dtype="bf16"), family="fam")
    with RunStore.create(path, META) as s:
        s.add_jobs([(spec.job_id, 0, spec_to_dict(spec))])
    with RunStore.open(path) as s:
        assert spec_from_dict(s.jobs()[0].spec) == spec


@pytest.mark.parametrize("field", ["arrival_s", "hint_gib"])
def test_codec_refuses_numbers_json_cannot_hold(field):
    spec = JobSpec(job_id="a", name="a", job_class=JobClass.LLM, **{field: math.inf})
    with pytest.raises(StoreError, match=field):
        spec_to_dict(spec)


def test_codec_decode_errors_name_the_field_and_value():
    good = spec_to_dict(JobSpec(job_id="a", name="a", job_class=JobClass.LLM))
    with pytest.raises(StoreError, match=r"field class: .*'quantum'.*field extra: Extra inputs"):
        spec_from_dict({**good, "class": "quantum", "extra": 1})
    with pytest.raises(StoreError, match=r"field argv: .*'python x'"):
        spec_from_dict({**good, "argv": "python x"})


# ---- status -------------------------------------------------------------------------------
def busy_store(path, n_failed=2) -> RunStore:
    s = RunStore.create(path, META)
    s.add_jobs([(f"task-{k:04d}", k, {}) for k in range(1, 6 + n_failed)])
    s.begin_attempt("task-0001", 1, 0, 0, "3g.40gb", 1.0)
    s.attempt_started("task-0001", 1, 777, 5.0, 2.0)
    s.begin_attempt("task-0002", 1, 0, 4, "1g.10gb", 1.0)
    s.attempt_ended("task-0002", 1, "oom", "queued", 3.0)
    s.begin_attempt("task-0002", 2, 1, 0, "2g.20gb", 4.0)
    s.attempt_ended("task-0002", 2, "killed:early-restart", "queued", 5.0)
    s.begin_attempt("task-0002", 3, 1, 0, "7g.80gb", 6.0)
    s.attempt_ended("task-0002", 3, "ok", "done", 9.0)
    for k in range(6, 6 + n_failed):
        job = f"task-{k:04d}"
        s.begin_attempt(job, 1, 1, 2, "1g.10gb", 1.0)
        s.attempt_ended(job, 1, "oom", "queued", 2.0)
        s.begin_attempt(job, 2, 1, 0, "7g.80gb", 3.0)
        s.attempt_ended(job, 2, "oom", "failed", 4.0, failure=f"out of memory on the largest instance (job {k})")
    s.instance_intent(0, 0, "3g.40gb")
    s.instance_up(0, 0)
    s.instance_intent(1, 4, "4g.40gb")
    s.log(2.0, "launch", "task-0001", "gpu0 3g.40gb@0")
    return s


def test_restarts_count_retried_attempts_by_cause(path):
    with busy_store(path) as s:
        # task-0002: oom + killed then ok; each failed job: one retried oom (its final oom was not retried)
        assert restarts(s.jobs()) == {"killed:early-restart": 1, "oom": 3}


def test_status_dict_is_json_and_holds_jobs_instances_and_events(path):
    with busy_store(path) as s:
        d = json.loads(json.dumps(status_dict(s), allow_nan=False))
    assert d["meta"]["policy"] == "migm" and d["counts"]["failed"] == 2 and d["counts"]["running"] == 1
    jobs = {j["job_id"]: j for j in d["jobs"]}
    assert jobs["task-0002"] == {"job_id": "task-0002", "state": "done", "attempts": 3,
                                 "outcomes": ["oom", "killed:early-restart", "ok"], "gpu": 1, "start": 0,
                                 "profile": "7g.80gb", "failure": None}
    assert jobs["task-0006"]["failure"] == "out of memory on the largest instance (job 6)"
    assert d["instances"] == [{"gpu": 0, "instances": [{"start": 0, "profile": "3g.40gb", "state": "up"}]},
                              {"gpu": 1, "instances": [{"start": 4, "profile": "4g.40gb", "state": "creating"}]}]
    assert [(e["kind"], e["job_id"]) for e in d["recent"]] == [("launch", "task-0001")]
    assert d["restarts"] == {"killed:early-restart": 1, "oom": 3}


def render(store, width=100) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_status(store))
    return console.export_text()


def test_render_status_fits_100_columns_and_shows_what_matters(path):
    with busy_store(path) as s:
        text = render(s)
    assert max(len(line) for line in text.splitlines()) <= 100
    for fragment in ("queued 3", "running 1", "done 1", "failed 2", "gpu0", "3g.40gb@0", "4g.40gb@4 (creating)",
                     "oom 3", "killed:early-restart 1", "task-0001", "777", "task-0006",
                     "out of memory on the largest instance (job 6)", "policy migm"):
        assert fragment in text, fragment
    assert "task-0003" not in text  # a queued job is counted, not listed


def test_render_status_cuts_long_lists(path):
    with busy_store(path, n_failed=30) as s:
        text = render(s)
    assert "... and 10 more" in text and "task-0025" in text and "task-0026" not in text
