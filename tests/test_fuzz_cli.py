"""Fuzzing the command line (issue 11): generated job files, task files and argv never escape.

Hypothesis generates job-file documents (valid entries mutated with random keys, huge, negative,
NaN and infinite numbers, strings, booleans, nesting), raw bytes (non-UTF-8, NUL, YAML syntax),
task files and argv for `simulate`, `validate`, `check-layout` and `mix`, and runs
`migsched.cli.main.main(argv)` in-process. Each example must:

* return an exit status in {0, 1, 2} — no exception escapes, no traceback is printed;
* finish within `SECONDS_PER_EXAMPLE` (a SIGALRM turns a hang into a failure);
* grow the process's peak resident memory by at most `PEAK_MIB` (`ru_maxrss`; tracemalloc
  would be finer but triples the run time).

The default run is a few seconds; `MIGSCHED_FUZZ_EXAMPLES=2000 python -m pytest
tests/test_fuzz_cli.py` runs a long campaign.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import resource
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migsched.cli.main import main

EXAMPLES = int(os.environ.get("MIGSCHED_FUZZ_EXAMPLES", "12"))
SECONDS_PER_EXAMPLE = 30
PEAK_MIB = 256
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="MIGSCHED_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"an example ran longer than {SECONDS_PER_EXAMPLE} s")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_bounded(argv: list[str]) -> int:
    """`main(argv)` under a time alarm; asserts the exit status, no traceback and the memory bound."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    rss0 = _peak_rss_mib()
    signal.alarm(SECONDS_PER_EXAMPLE)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # check-layout ends the process with status 1
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1, 2), f"exit {code} for {argv!r}:\n{text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]
    grown = _peak_rss_mib() - rss0
    assert grown < PEAK_MIB, f"{argv!r} grew the peak resident memory by {grown:.0f} MiB"
    return code


# ---- generators ----------------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-3, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e300, 1e7, 10**9, 10**20, 10**400, 3.5e7, 1e-300, 2**63]),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=12),
                    st.sampled_from(["1", "10", "1e9", "nan", ".inf", "yes", "scientific", "llm", "3g.40gb"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
FIELDS = ["name", "class", "count", "arrival_s", "hint_gib", "reports_progress", "family", "command", "env",
          "cwd", "describe", "model", "bogus"]
MODEL_FIELDS = ["runtime_s", "speedup", "peak_gib", "memory", "ramp_fraction", "start_gib", "power_w",
                "startup_s", "bogus"]


@st.composite
def job_documents(draw) -> dict:
    """A small valid job file with some fields replaced by arbitrary values."""
    jobs = []
    for k in range(draw(st.integers(1, 3))):
        model = {"runtime_s": draw(st.sampled_from([1, 5.5, 30])), "peak_gib": draw(st.sampled_from([1, 4, 30, 90]))}
        e = {"name": f"j{k}", "class": draw(st.sampled_from(["scientific", "ml-train", "ml-infer", "llm"])),
             "count": draw(st.integers(1, 3)), "model": model}
        for field in draw(st.lists(st.sampled_from(MODEL_FIELDS), max_size=2)):
            model[field] = draw(VALUES)
        for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
            e[field] = draw(VALUES)
        jobs.append(e)
    doc = {"version": draw(st.sampled_from([1, 1, 1, 2, "1", 1.0, True])), "jobs": jobs}
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["version", "jobs", "extra"]))] = draw(VALUES)
    return doc


def _dump(doc: dict, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(doc, default=str).encode()
    return yaml.safe_dump(doc, allow_unicode=True).encode()


JOB_BYTES = st.one_of(
    st.builds(_dump, job_documents(), st.sampled_from(["yaml", "json"])),
    st.binary(max_size=200),
    st.builds(lambda d, junk: _dump(d, "yaml") + junk, job_documents(),
              st.sampled_from([b"\xff\xfe", b"\0", b"\n  - &a [*a]", b"\nversion: 1\n", b"\n: :", b"\t"])),
)
TASK_TEXT = st.lists(st.text(alphabet="ab =#'\"\\$|;.-_9\t", max_size=20), min_size=0, max_size=6).map("\n".join)
OPT_NUMBERS = st.sampled_from(["0", "1", "2", "-1", "nan", "inf", "-inf", "1e300", "100000", "abc", "1.5", "",
                               "99999999999999999999"])
LAYOUTS = st.one_of(
    st.lists(st.sampled_from(["3g.40gb@4", "1g.10gb@0", "7g.80gb@0", "2g.20gb@2", "x@1", "1g.10gb@-1",
                              "1g.10gb@99999999999999999999", "", "1g.10gb", "@", "4g.40gb@0", "1g.10gb@²"]),
             max_size=6).map(",".join),
    st.text(max_size=30),
)


def _write(folder: str, name: str, data: bytes | str) -> str:
    p = Path(folder) / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return str(p)


# ---- the fuzz tests ----------------------------------------------------------------------------
@FUZZ
@example(data=b"version: 1\njobs:\n  - name: \xff\xfe\n", suffix=".yaml", policy="serial", gpus="1")  # issue 11.2
@example(data=b"version: 1\njobs:\n  - {name: a, class: llm, count: 1000000000, model: {runtime_s: 1}}\n",
         suffix=".yaml", policy="serial", gpus="1")  # issue 11.1: grew to 1.8 GB
@given(data=JOB_BYTES, suffix=st.sampled_from([".yaml", ".json", ".yml"]),
       policy=st.sampled_from(["serial", "greedy", "static"]), gpus=st.sampled_from(["1", "2", "0", "nan"]))
def test_simulate_never_escapes(data, suffix, policy, gpus):
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, "jobs" + suffix, data)
        run_bounded(["simulate", path, "--gpu", "A100-80GB", "--policy", policy, "--gpus", gpus])


@FUZZ
@given(data=st.one_of(JOB_BYTES, TASK_TEXT.map(str.encode)), suffix=st.sampled_from([".yaml", ".json", ".txt"]),
       gpu=st.lists(st.sampled_from(["A100-80GB", "A30", "h100-80gb", "nope"]), max_size=2),
       as_json=st.booleans())
def test_validate_never_escapes(data, suffix, gpu, as_json):
    with tempfile.TemporaryDirectory() as d:
        argv = ["validate", _write(d, "jobs" + suffix, data)]
        for g in gpu:
            argv += ["--gpu", g]
        run_bounded(argv + (["--json"] if as_json else []))


@FUZZ
@example(model="A100-80GB", layout="3g.40gb@99999999999999999999", as_json=False)  # issue 11.2: OverflowError
@example(model="A100-80GB", layout="1g.10gb@10000000000", as_json=True)  # issue 11.1: 2.6 GB
@given(model=st.sampled_from(["A100-80GB", "A30-24GB", "H100-80GB", "nope"]), layout=LAYOUTS, as_json=st.booleans())
def test_check_layout_never_escapes(model, layout, as_json):
    run_bounded(["check-layout", model, layout] + (["--json"] if as_json else []))


@FUZZ
@given(name=st.sampled_from(["scientific", "ml", "llm", "mixed", "online", "nope"]),
       jobs=OPT_NUMBERS, seed=OPT_NUMBERS, extra=st.lists(st.tuples(
           st.sampled_from(["--ratio", "--size-ratio", "--class-ratio", "--arrival-mean-s"]),
           st.one_of(OPT_NUMBERS, st.sampled_from(["1:1", "3:1", "0:0", "1:2:3", "a:b", "-1:2", "1:1:1"]))),
           max_size=2))
def test_mix_never_escapes(name, jobs, seed, extra):
    with tempfile.TemporaryDirectory() as d:
        argv = ["mix", name, "--jobs", jobs, "--seed", seed, "--out", str(Path(d) / "m.yaml")]
        for opt, value in extra:
            argv += [opt, value]
        run_bounded(argv)


@FUZZ
@example(value="nan")
@example(value="inf")  # issue 11.3: ran unbounded
@given(value=OPT_NUMBERS)
def test_simulate_float_options_never_escape(value):
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, "j.json", json.dumps({"version": 1, "jobs": [
            {"name": "a", "class": "scientific", "model": {"runtime_s": 5, "peak_gib": 2}}]}))
        run_bounded(["simulate", path, "--gpu", "A100-80GB", "--policy", "serial", "--optimal-s", value])
