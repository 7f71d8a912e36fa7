"""Issue 11 part A: every input has a bound, strict types, no traceback, plain wording.

Each test names one reported defect; it failed before the fix (hang, traceback, silent
acceptance or a wrong word) and passes now.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_support import run_cli as run
from migsched.errors import JobFileError, UnknownNameError, plural
from migsched.hardware import get_model
from migsched.jobs import load_jobs, load_jobs_dict
from migsched.jobs.taskfile import load_job_source
from migsched.limits import MAX_JOBS, MAX_TIME_S, check_range
from migsched.partition.parse import parse_layout_items
from migsched.workloads.mixes import MixParameterError, make_mix


def entry(**kw):
    base = {"name": "a", "class": "scientific", "model": {"runtime_s": 10, "peak_gib": 3}}
    base.update(kw)
    return base


def model(**kw):
    return entry(model={"runtime_s": 10, "peak_gib": 3, **kw})


def error_of(data) -> str:
    with pytest.raises(JobFileError) as info:
        load_jobs_dict(data)
    return str(info.value)


def write(tmp_path: Path, text: str | bytes, name: str = "jobs.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


# ---- 1. bounds ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["runtime_s", "startup_s"])
def test_time_beyond_a_year_is_rejected_with_the_bound(field):
    msg = error_of({"version": 1, "jobs": [model(**{field: 1e300})]})
    assert f"model.{field}" in msg and "31622400" in msg and "Limits" in msg


def test_a_time_at_the_bound_is_accepted():
    jobs = load_jobs_dict({"version": 1, "jobs": [model(runtime_s=MAX_TIME_S, startup_s=MAX_TIME_S)]})
    assert jobs[0].truth.runtime_s == MAX_TIME_S


def test_arrival_beyond_a_year_is_rejected():
    assert "arrival_s" in error_of({"version": 1, "jobs": [entry(arrival_s=1e12)]})


def test_a_huge_count_is_rejected_before_any_job_is_built(monkeypatch):
    import migsched.jobs.spec as spec

    def boom(*a, **k):  # expanding 10**9 jobs would build JobSpecs until memory runs out
        raise AssertionError("expanded before checking the bound")

    monkeypatch.setattr(spec, "JobSpec", boom)
    assert "count" in error_of({"version": 1, "jobs": [entry(count=10**9)]})


def test_counts_summed_over_entries_are_bounded():
    half = MAX_JOBS // 2 + 1
    msg = error_of({"version": 1, "jobs": [entry(name="a", count=half), entry(name="b", count=half)]})
    assert "expands to" in msg and f"{MAX_JOBS:,}" in msg and "'a'" in msg


@pytest.mark.parametrize("field", ["hint_gib"])
def test_memory_beyond_4_tib_is_rejected(field):
    assert field in error_of({"version": 1, "jobs": [entry(**{field: 1e9})]})


def test_memory_points_are_bounded():
    msg = error_of({"version": 1, "jobs": [entry(model={"runtime_s": 1, "memory": [[0, 1], [1, 1e9]]})]})
    assert "4096" in msg


def test_power_beyond_every_gpu_is_rejected_not_clamped():
    msg = error_of({"version": 1, "jobs": [model(power_w=1e9)]})
    assert "model.power_w" in msg and "valid range 0..880 W" in msg and "B200" in msg


def test_a_huge_integer_speed_is_an_error_not_an_overflow():
    assert "speed" in error_of({"version": 1, "jobs": [model(speedup={1: 10**400})]})


def test_gpus_above_the_bound_exit_2_naming_the_range(tmp_path, capsys):
    p = write(tmp_path, json.dumps({"version": 1, "jobs": [entry()]}), "j.json")
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB", "--gpus", "100000", "--policy", "serial")
    assert code == 2 and "--gpus" in err and "10000" in err


def test_demo_gpus_are_bounded(capsys):
    code, _, err = run(capsys, "demo", "--gpus", "100000")
    assert code == 2 and "--gpus" in err


def test_mix_jobs_are_bounded(capsys):
    code, _, err = run(capsys, "mix", "scientific", "--jobs", "1000000000")
    assert code == 2 and "--jobs" in err
    with pytest.raises(MixParameterError, match="1..10,000"):
        make_mix("scientific", jobs=10**9, seed=0)


@pytest.mark.parametrize("mean", [float("inf"), float("nan"), 1e300])
def test_mix_arrival_mean_is_finite_and_bounded(mean):
    with pytest.raises(MixParameterError, match="arrival_mean_s"):
        make_mix("online", jobs=4, seed=0, arrival_mean_s=mean)


def test_mix_arrivals_must_stay_within_the_arrival_bound():
    with pytest.raises(MixParameterError, match="last arrival"):
        make_mix("online", jobs=1000, seed=0, arrival_mean_s=MAX_TIME_S)


def test_check_layout_with_a_thousand_items_is_refused(capsys):
    code, out, err = run(capsys, "check-layout", "A100-80GB", ",".join(["1g.10gb@0"] * 1000))
    assert code == 2 and "at most 64" in err and out == ""


def test_check_layout_prints_overlaps_compactly(capsys):
    code, out, _ = run(capsys, "check-layout", "A100-80GB", ",".join(["1g.10gb@0"] * 64))
    assert code == 1
    listed = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(listed) == 20 and "and 1999 more violations" in out  # 2,016 pairs overlap
    code, out, _ = run(capsys, "check-layout", "A100-80GB", ",".join(["1g.10gb@0"] * 64), "--json")
    assert code == 1 and len(json.loads(out)["violations"]) > 2000  # JSON keeps them all


@pytest.mark.parametrize("start", ["10000000000", "99999999999999999999", "8", "9" * 5000],
                         ids=["1e10", "1e20", "8", "5000-digits"])
def test_a_start_that_is_no_memory_slot_exits_2(capsys, start):
    code, out, err = run(capsys, "check-layout", "A100-80GB", f"3g.40gb@{start}")
    assert code == 2 and "memory slot" in err and "0..7" in err
    assert len(err) < 300  # the number is not echoed in full


# ---- 2. tracebacks -----------------------------------------------------------------------------
def test_a_job_file_that_is_not_utf8_names_path_and_offset(tmp_path, capsys):
    p = write(tmp_path, b"version: 1\njobs:\n  - name: \xff\xfe\n    class: scientific\n")
    with pytest.raises(JobFileError, match=r"jobs.yaml.*not UTF-8.*0xff at offset 27"):
        load_jobs(p)
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB")
    assert code == 2 and "offset 27" in err


def test_layout_option_with_a_huge_start_exits_2(tmp_path, capsys):
    p = write(tmp_path, json.dumps({"version": 1, "jobs": [entry()]}), "j.json")
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB", "--policy", "static",
                       "--layout", "3g.40gb@99999999999999999999")
    assert code == 2 and "memory slot" in err


@pytest.mark.parametrize("text", ["3g.40gb@²", "3g.40gb@-1", "3g.40gb@4,,", ",3g.40gb@4"])
def test_layout_text_errors(text):
    from migsched.errors import InvalidLayoutError

    with pytest.raises(InvalidLayoutError):
        parse_layout_items(get_model("A100-80GB"), text)


def test_one_trailing_comma_is_allowed():
    assert len(parse_layout_items(get_model("A100-80GB"), "3g.40gb@4,")) == 1


@pytest.mark.parametrize("text", [
    "a: " + "9" * 5000,                       # int() refuses more than 4300 digits
    "[" * 5000,                               # the composer recurses per level
    "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(  # billion laughs: 10**9 values from 9 lines
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
])
def test_hostile_yaml_is_one_error(tmp_path, text):
    with pytest.raises(JobFileError, match="jobs.yaml"):
        load_jobs(write(tmp_path, text))


# ---- 3. CLI floats ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e300"])
def test_optimal_s_must_be_finite_and_bounded(tmp_path, capsys, value):
    p = write(tmp_path, json.dumps({"version": 1, "jobs": [entry()]}), "j.json")
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB", "--policy", "serial", "--optimal-s", value)
    assert code == 2 and "--optimal-s" in err and "0.1..86,400 s" in err
    assert "greater than or equal" not in err  # the old, misleading message for nan


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, True, "3"])
def test_check_range_rejects_what_is_not_a_finite_number_in_range(value):
    from migsched.errors import InputLimitError

    with pytest.raises(InputLimitError, match="--x"):
        check_range("--x", value, 0, 10)


# ---- 5. strict validation ------------------------------------------------------------------------
@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_version_must_be_the_integer_1(version):
    msg = error_of({"version": version, "jobs": [entry()]})
    assert "version must be 1" in msg and repr(version) in msg


@pytest.mark.parametrize("field,value", [("runtime_s", "10"), ("runtime_s", True), ("peak_gib", "3")])
def test_numbers_in_quotes_are_rejected(field, value):
    msg = error_of({"version": 1, "jobs": [model(**{field: value})]})
    assert f"model.{field}" in msg and "number" in msg


@pytest.mark.parametrize("field,value", [("count", 2.0), ("count", "2"), ("reports_progress", "yes"),
                                         ("reports_progress", 1), ("name", 5), ("class", True)])
def test_other_types_are_strict(field, value):
    assert field in error_of({"version": 1, "jobs": [entry(**{field: value})]})


def test_yaml_exponent_numbers_are_numbers(tmp_path):
    p = write(tmp_path, "version: 1\njobs:\n  - {name: a, class: scientific, model: {runtime_s: 1e3, peak_gib: 3}}\n")
    assert load_jobs(p)[0].truth.runtime_s == 1000.0


def test_a_duplicate_yaml_key_names_the_key_and_lines(tmp_path):
    p = write(tmp_path, "version: 1\njobs:\n  - name: a\n    class: scientific\n    name: b\n")
    with pytest.raises(JobFileError, match=r"jobs.yaml' line 5: key 'name' is given twice.*first on line 3"):
        load_jobs(p)


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path):
    p = write(tmp_path, "base: &b {class: scientific, name: x}\nversion: 1\njobs:\n  - <<: *b\n    name: a\n")
    with pytest.raises(JobFileError, match="base"):  # `base` is an unknown top-level field, not a duplicate
        load_jobs(p)


def test_a_duplicate_json_key_is_an_error(tmp_path):
    p = write(tmp_path, '{"version": 1, "version": 1, "jobs": []}', "j.json")
    with pytest.raises(JobFileError, match="'version' is given twice"):
        load_jobs(p)


def test_a_speedup_key_spelled_twice_is_an_error():
    assert "given twice" in error_of({"version": 1, "jobs": [model(speedup={1: 0.5, "1": 0.6})]})


def test_layout_with_empty_items_is_rejected_by_simulate(tmp_path, capsys):
    p = write(tmp_path, json.dumps({"version": 1, "jobs": [entry()]}), "j.json")
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB", "--policy", "static", "--layout", "3g.40gb@4,,")
    assert code == 2 and "empty" in err


def test_task_file_lines_are_bounded(tmp_path):
    p = write(tmp_path, "echo hi\n" * (MAX_JOBS + 1), "tasks.txt")
    with pytest.raises(JobFileError, match="limit is 100,000"):
        load_job_source(p)


# ---- 6. wording ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,expected", [("policy", "policies"), ("job class", "job classes"),
                                           ("family", "families"), ("mix", "mixes"), ("GPU model", "GPU models")])
def test_unknown_names_list_the_valid_ones_in_proper_plural(kind, expected):
    assert f"valid {expected}:" in str(UnknownNameError(kind, "x", ["a"]))


def test_plural_with_a_count():
    assert (plural("job", 1), plural("job", 2), plural("entry", 0)) == ("1 job", "2 jobs", "0 entries")


def test_unknown_policy_on_the_command_line(tmp_path, capsys):
    p = write(tmp_path, json.dumps({"version": 1, "jobs": [entry()]}), "j.json")
    code, _, err = run(capsys, "simulate", str(p), "--gpu", "A100-80GB", "--policy", "nope")
    assert code == 2 and "valid policies:" in err


def test_mix_of_one_job_says_1_job(tmp_path, capsys):
    code, _, err = run(capsys, "mix", "scientific", "--jobs", "1", "--out", str(tmp_path / "m.yaml"))
    assert code == 0 and "wrote 1 job (" in err


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "---\n"])
def test_an_empty_job_file_names_its_path(tmp_path, text):
    with pytest.raises(JobFileError) as info:
        load_jobs(write(tmp_path, text))
    assert "jobs.yaml" in str(info.value) and "empty" in str(info.value) and "NoneType" not in str(info.value)


def test_a_list_at_the_top_level_says_so_in_words():
    assert "got a list" in error_of([1, 2])
