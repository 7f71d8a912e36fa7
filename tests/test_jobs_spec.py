"""The version-1 job file (docs/job-file.md): validation errors, YAML/JSON, `count`, speedup
interpolation and memory curves."""

from __future__ import annotations

import json

import pytest

from migsched.errors import JobFileError
from migsched.jobs import DEFAULT_STARTUP_S, JobClass, interpolate_speedup, load_jobs, load_jobs_dict
from migsched.jobs.model import TruthModel


def entry(**over):
    """A valid job entry named 'bfs'; keyword arguments replace or add fields."""
    e = {"name": "bfs", "class": "scientific", "model": {"runtime_s": 10, "peak_gib": 2}}
    e.update(over)
    return e


def model(**over):
    m = {"runtime_s": 10, "peak_gib": 2}
    m.update(over)
    return m


def doc(*entries, version=1):
    return {"version": version, "jobs": list(entries)}


def error_of(data, **kw) -> str:
    with pytest.raises(JobFileError) as exc:
        load_jobs_dict(data, **kw)
    return str(exc.value)


# ---- bad files: every message names the job, the field and the bad value --------------------
BAD = [
    # (id, document, fragments the message must contain)
    ("class-unknown", doc(entry(**{"class": "quantum"})), ["'bfs'", "class", "'quantum'", "scientific"]),
    ("class-wrong-type", doc(entry(**{"class": 3})), ["'bfs'", "class", "3"]),
    ("runtime-negative", doc(entry(model=model(runtime_s=-3))), ["'bfs'", "model.runtime_s", "-3"]),
    ("runtime-zero", doc(entry(model=model(runtime_s=0))), ["'bfs'", "model.runtime_s", "0"]),
    ("runtime-string", doc(entry(model=model(runtime_s="fast"))), ["'bfs'", "model.runtime_s", "'fast'"]),
    ("runtime-infinite", doc(entry(model=model(runtime_s=float("inf")))), ["'bfs'", "model.runtime_s", "inf"]),
    ("speedup-key-5", doc(entry(model=model(speedup={5: 0.5}))), ["'bfs'", "model.speedup", "5", "1, 2, 3, 4, 7"]),
    ("speedup-key-7-not-1", doc(entry(model=model(speedup={1: 0.3, 7: 0.9}))), ["'bfs'", "model.speedup", "0.9", "1.0"]),
    ("speedup-key-text", doc(entry(model=model(speedup={"two": 0.4}))), ["'bfs'", "model.speedup", "'two'"]),
    ("speedup-key-fraction", doc(entry(model=model(speedup={1.5: 0.3}))), ["'bfs'", "model.speedup", "1.5"]),
    ("speedup-key-bool", doc(entry(model=model(speedup={True: 0.3}))), ["'bfs'", "model.speedup", "True"]),
    ("speedup-value-too-big", doc(entry(model=model(speedup={1: 3}))), ["'bfs'", "model.speedup", "3"]),
    ("speedup-value-zero", doc(entry(model=model(speedup={2: 0}))), ["'bfs'", "model.speedup", "0"]),
    ("speedup-value-bool", doc(entry(model=model(speedup={1: True}))), ["'bfs'", "model.speedup", "True"]),
    ("speedup-not-mapping", doc(entry(model=model(speedup=[1, 2]))), ["'bfs'", "model.speedup", "[1, 2]"]),
    ("hint-string", doc(entry(hint_gib="lots")), ["'bfs'", "hint_gib", "'lots'"]),
    ("hint-negative", doc(entry(hint_gib=-1)), ["'bfs'", "hint_gib", "-1"]),
    ("arrival-negative", doc(entry(arrival_s=-5)), ["'bfs'", "arrival_s", "-5"]),
    ("count-zero", doc(entry(count=0)), ["'bfs'", "count", "0"]),
    ("count-fraction", doc(entry(count=1.5)), ["'bfs'", "count", "1.5"]),
    ("progress-not-bool", doc(entry(reports_progress="maybe")), ["'bfs'", "reports_progress", "'maybe'"]),
    ("unknown-field", doc(entry(colour="red")), ["'bfs'", "colour", "'red'"]),
    ("dtype-unknown", doc(entry(describe={"dtype": "fp8x"})), ["'bfs'", "describe.dtype", "'fp8x'"]),
    ("memory-shape-unknown", doc(entry(model=model(memory="spiky"))), ["'bfs'", "model.memory", "'spiky'"]),
    ("memory-negative-gib", doc(entry(model=model(memory=[[0, 1], [0.5, -2]]))), ["'bfs'", "model.memory", "-2"]),
    ("memory-fraction-falls", doc(entry(model=model(memory=[[0.5, 1], [0.2, 2]]))), ["'bfs'", "model.memory", "[0.2, 2]"]),
    ("memory-fraction-above-1", doc(entry(model=model(memory=[[0, 1], [2, 2]]))), ["'bfs'", "model.memory", "[2, 2]"]),
    ("memory-point-3-values", doc(entry(model=model(memory=[[0.5, 1, 3]]))), ["'bfs'", "model.memory", "[0.5, 1, 3]"]),
    ("memory-point-none", doc(entry(model=model(memory=[[None, 1]]))), ["'bfs'", "model.memory", "None"]),
    ("memory-point-text", doc(entry(model=model(memory=[["a", 1]]))), ["'bfs'", "model.memory", "'a'"]),
    ("memory-point-nan", doc(entry(model=model(memory=[[0, float("nan")]]))), ["'bfs'", "model.memory", "nan"]),
    ("memory-empty", doc(entry(model=model(memory=[]))), ["'bfs'", "model.memory", "empty"]),
    ("ramp-without-peak", doc(entry(model={"runtime_s": 10, "memory": "ramp"})), ["'bfs'", "peak_gib", "ramp"]),
    ("power-negative", doc(entry(model=model(power_w=-1))), ["'bfs'", "model.power_w", "-1"]),
]


@pytest.mark.parametrize(("data", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_job_names_job_field_and_value(data, fragments):
    msg = error_of(data)
    assert msg.startswith("invalid job file:")
    for frag in fragments:
        assert frag in msg, f"{frag!r} missing from: {msg}"


def test_second_entry_is_named_by_name_and_index():
    msg = error_of(doc(entry(name="ok"), entry(name="sssp", model=model(speedup={6: 0.9}))))
    assert "job 'sssp' (jobs[1]) field model.speedup" in msg and "6" in msg
    assert "'ok'" not in msg


def test_missing_name_is_named_by_index():
    assert "jobs[0] field name" in error_of(doc({"class": "scientific"}))


def test_missing_class():
    msg = error_of(doc({"name": "x"}))
    assert "job 'x' (jobs[0]) field class" in msg and "required" in msg.lower()


def test_missing_model_when_simulating():
    data = doc({"name": "srv", "class": "ml-infer"})
    assert load_jobs_dict(data)[0].truth is None  # fine for a real run
    msg = error_of(data, require_model=True)
    assert "job 'srv' (jobs[0]) field model" in msg and "runtime_s" in msg


def test_missing_runtime():
    msg = error_of(doc(entry(model={"peak_gib": 2})))
    assert "'bfs'" in msg and "model.runtime_s" in msg


@pytest.mark.parametrize("version", [2, "1", 0])
def test_wrong_version(version):
    msg = error_of(doc(entry(), version=version))
    assert "version" in msg and "must be 1" in msg and repr(version) in msg


def test_missing_version_and_empty_jobs():
    assert "version" in error_of({"jobs": [entry()]})
    assert "jobs" in error_of(doc())


@pytest.mark.parametrize("top", [[1, 2], "jobs", None])
def test_top_level_not_a_mapping(top):
    assert "top level must be a mapping" in error_of(top)


def test_duplicate_names_name_the_job_the_field_and_both_places():
    msg = error_of(doc(entry(), entry(name="other"), entry(**{"class": "llm"})))
    assert "job 'bfs' (jobs[2]) field name" in msg
    assert "jobs[0]" in msg and "unique" in msg


def test_several_errors_are_all_reported():
    msg = error_of(doc(entry(hint_gib=-1), entry(name="b2", arrival_s=-1)))
    assert "job 'bfs' (jobs[0]) field hint_gib" in msg and "job 'b2' (jobs[1]) field arrival_s" in msg


# ---- good files ------------------------------------------------------------------------------
YAML = """\
version: 1
jobs:
  - name: train
    class: ml-train
    count: 3
    arrival_s: 12.5
    hint_gib: 9
    reports_progress: true
    command: python train.py
    env: {B: "2", A: "1"}
    cwd: /tmp
    describe: {params_m: 125, dtype: bf16, optimizer: adamw, batch_size: 32}
    model:
      runtime_s: 600
      speedup: {1: 0.25, 3: 0.6}
      peak_gib: 8
      memory: ramp
      ramp_fraction: 0.2
      start_gib: 1
      power_w: 180
      startup_s: 4
  - name: bfs
    class: scientific
    model: {runtime_s: 50, peak_gib: 3}
"""


def test_good_yaml(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text(YAML)
    jobs = load_jobs(path)
    assert [j.job_id for j in jobs] == ["train#0", "train#1", "train#2", "bfs"]
    spec = jobs[1].spec
    assert spec.name == "train" and spec.job_class is JobClass.ML_TRAIN
    assert spec.arrival_s == 12.5 and spec.hint_gib == 9 and spec.reports_progress
    assert spec.command == "python train.py" and spec.cwd == "/tmp"
    assert spec.env == (("A", "1"), ("B", "2"))
    assert spec.describe.params_m == 125 and spec.describe.dtype == "bf16" and spec.describe.batch_size == 32
    t = jobs[0].truth
    assert t.runtime_s == 600 and t.power_w == 180 and t.startup_s == 4
    assert t.memory_points == ((0.0, 1.0), (0.2, 8.0), (1.0, 8.0))
    # {1: 0.25, 3: 0.6} plus 7 -> 1.0: 2 is halfway 1..3, 4..6 rise 0.1 per slice from 0.6.
    assert t.speedup == pytest.approx((0.25, 0.425, 0.6, 0.7, 0.8, 0.9, 1.0))
    # defaults of the second entry
    b = jobs[3]
    assert b.spec.arrival_s == 0 and b.spec.hint_gib is None and not b.spec.reports_progress
    assert b.spec.env == () and b.spec.command is None
    assert b.truth.power_w == 100.0 and b.truth.startup_s == DEFAULT_STARTUP_S[JobClass.SCIENTIFIC]
    assert b.truth.speedup == pytest.approx(tuple(c / 7 for c in range(1, 8)))
    assert b.truth.memory_points == ((0.0, 3.0), (1.0, 3.0))


def test_good_json_with_string_keys(tmp_path):
    data = {"version": 1, "jobs": [{"name": "gen", "class": "llm", "hint_gib": 30,
                                    "model": {"runtime_s": 100, "speedup": {"1": 0.5, "7": 1.0},
                                              "memory": [[0, 10], [0.5, 20]]}}]}
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(data))
    (job,) = load_jobs(path, require_model=True)
    assert job.job_id == "gen" and job.spec.job_class is JobClass.LLM
    assert job.truth.speedup[0] == 0.5 and job.truth.speedup[6] == 1.0
    assert job.truth.memory_points == ((0.0, 10.0), (0.5, 20.0), (1.0, 20.0))
    assert job.truth.startup_s == DEFAULT_STARTUP_S[JobClass.LLM]


def test_yaml_and_json_give_the_same_jobs(tmp_path):
    y = tmp_path / "a.yml"
    y.write_text(YAML)
    j = tmp_path / "a.json"
    import yaml

    j.write_text(json.dumps(yaml.safe_load(YAML)))  # int keys become strings in JSON
    assert load_jobs(y) == load_jobs(j)


def test_unreadable_and_unparsable_files(tmp_path):
    with pytest.raises(JobFileError, match="cannot read job file"):
        load_jobs(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(JobFileError, match="not valid JSON"):
        load_jobs(bad)
    bad_y = tmp_path / "bad.yaml"
    bad_y.write_text("jobs: [unclosed")
    with pytest.raises(JobFileError, match="not valid YAML"):
        load_jobs(bad_y)


def test_count_expansion_shares_spec_and_truth():
    jobs = load_jobs_dict(doc(entry(count=4, hint_gib=3), entry(name="solo")))
    assert [j.job_id for j in jobs] == ["bfs#0", "bfs#1", "bfs#2", "bfs#3", "solo"]
    assert {j.spec.name for j in jobs[:4]} == {"bfs"}
    assert all(j.truth == jobs[0].truth and j.spec.hint_gib == 3 for j in jobs[:4])


# ---- speedup interpolation ------------------------------------------------------------------
def test_speedup_seven_alone_is_perfect_scaling():
    assert interpolate_speedup({7: 1.0}) == pytest.approx(tuple(c / 7 for c in range(1, 8)))
    assert interpolate_speedup({}) == pytest.approx(tuple(c / 7 for c in range(1, 8)))


def test_speedup_one_and_seven_equal_means_no_slowdown():
    assert interpolate_speedup({1: 1.0, 7: 1.0}) == (1.0,) * 7
    assert interpolate_speedup({1: 1.0}) == (1.0,) * 7  # 7 -> 1.0 is implied


def test_speedup_linear_between_keys():
    # keys 2 -> 0.4 and 4 -> 0.8: 3 is halfway; 5, 6 go from 0.8 to 1.0 in thirds; 1 is 0.4 * 1/2.
    s = interpolate_speedup({2: 0.4, 4: 0.8})
    assert s == pytest.approx((0.2, 0.4, 0.6, 0.8, 0.8 + 0.2 / 3, 0.8 + 0.4 / 3, 1.0))


def test_given_keys_are_kept_exactly():
    s = interpolate_speedup({1: 0.3, 2: 0.55, 3: 0.62, 4: 0.9, 7: 1.0})
    assert (s[0], s[1], s[2], s[3], s[6]) == (0.3, 0.55, 0.62, 0.9, 1.0)


def test_speed_lookup_clamps_compute_slices():
    t = TruthModel(10, interpolate_speedup({1: 0.5}), ((0.0, 1.0), (1.0, 1.0)), 100, 0)
    assert t.speed(1) == 0.5 and t.speed(0) == 0.5 and t.speed(7) == 1.0 and t.speed(9) == 1.0


# ---- memory curves ---------------------------------------------------------------------------
def truth_of(**m):
    (job,) = load_jobs_dict(doc(entry(model=model(**m))))
    return job.truth


def test_memory_constant():
    t = truth_of(peak_gib=4)
    assert t.memory_points == ((0.0, 4.0), (1.0, 4.0)) and t.peak_gib == 4
    assert t.memory_gib(0) == t.memory_gib(0.7) == 4


def test_memory_ramp():
    t = truth_of(memory="ramp", start_gib=1, peak_gib=5, ramp_fraction=0.25)
    assert t.memory_points == ((0.0, 1.0), (0.25, 5.0), (1.0, 5.0))
    assert t.memory_gib(0.125) == pytest.approx(3.0)  # halfway up the ramp
    assert t.memory_gib(0.6) == 5.0


def test_memory_ramp_default_starts_at_zero_and_reaches_peak_at_a_tenth():
    t = truth_of(memory="ramp", peak_gib=10)
    assert t.memory_points == ((0.0, 0.0), (0.1, 10.0), (1.0, 10.0))


def test_memory_linear():
    t = truth_of(memory="linear", start_gib=2, peak_gib=6)
    assert t.memory_points == ((0.0, 2.0), (1.0, 6.0))
    assert t.memory_gib(0.5) == pytest.approx(4.0)


def test_memory_start_above_peak_is_capped():
    t = truth_of(memory="linear", start_gib=9, peak_gib=6)
    assert t.memory_points == ((0.0, 6.0), (1.0, 6.0))


def test_memory_points_are_extended_to_cover_the_run():
    t = truth_of(memory=[[0.2, 3], [0.6, 7]])
    assert t.memory_points == ((0.0, 3.0), (0.2, 3.0), (0.6, 7.0), (1.0, 7.0))
    assert t.peak_gib == 7
    assert t.memory_gib(0.4) == pytest.approx(5.0)
    assert t.memory_gib(-1) == 3.0 and t.memory_gib(2) == 7.0


def test_memory_points_may_fall():
    t = truth_of(memory=[[0, 2], [0.5, 10], [1, 4]])
    assert t.peak_gib == 10 and t.memory_gib(0.75) == pytest.approx(7.0)


def test_oom_fraction():
    lin = truth_of(memory="linear", start_gib=2, peak_gib=6)
    assert lin.oom_fraction(5) == pytest.approx(0.75)  # 2 + 4 f = 5
    assert lin.oom_fraction(6) is None  # only exceeding the limit is out of memory
    assert lin.oom_fraction(1.5) == 0.0
    const = truth_of(peak_gib=4)
    assert const.oom_fraction(4) is None and const.oom_fraction(3.99) == 0.0
    ramp = truth_of(memory="ramp", start_gib=0, peak_gib=8, ramp_fraction=0.5)
    assert ramp.oom_fraction(2) == pytest.approx(0.125)  # 16 f = 2
    step = truth_of(memory=[[0, 1], [0.4, 1], [0.4, 9], [1, 9]])
    assert step.oom_fraction(4) == pytest.approx(0.4)
    late = truth_of(memory=[[0, 1], [0.5, 1], [1, 3]])
    assert late.oom_fraction(2) == pytest.approx(0.75)  # 1 + 4 (f - 0.5) = 2
