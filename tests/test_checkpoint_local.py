"""Checkpoint-aware moves with real processes (the `local` backend): a child that counts steps,
saves on its checkpoint signal and resumes, and one that ignores the signal."""

from __future__ import annotations

import sys
import textwrap

import pytest

from fakes import MovePolicy
from migsched.backends.local.backend import LocalBackend
from migsched.core.source import TraceSource
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.run import run

A40 = get_model("A100-40GB")
STEPS = 150

# Counts steps (one line each in steps.log, beside the checkpoint), saves the step on the
# checkpoint signal and exits 0; resumes from the saved step when told to.
SAVER = textwrap.dedent("""
    import json, os, sys, time
    from migsched import probe
    total, folder = int(sys.argv[1]), probe.checkpoint_dir()
    probe.watch_checkpoint()
    state = folder / "state.json"
    step = json.loads(state.read_text())["step"] if probe.resuming() and state.exists() else 0
    with open(folder / "starts.log", "a") as fh:
        fh.write(f"{os.environ['MIGSCHED_RESUME']} {step}\\n")
    with open(folder / "steps.log", "a") as log:
        while step < total:
            time.sleep(0.02)
            step += 1
            log.write(f"{step}\\n"); log.flush()
            probe.report(step, total)
            if probe.checkpoint_requested():
                state.write_text(json.dumps({"step": step}))
                sys.exit(0)
""")

# The same counter, but it ignores the checkpoint signal and never saves.
IGNORER = textwrap.dedent("""
    import os, signal, sys, time
    from migsched import probe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    total, folder = int(sys.argv[1]), probe.checkpoint_dir()
    with open(folder / "starts.log", "a") as fh:
        fh.write(f"{os.environ['MIGSCHED_RESUME']} 0\\n")
    with open(folder / "steps.log", "a") as log:
        for step in range(1, total + 1):
            time.sleep(0.02)
            log.write(f"{step}\\n"); log.flush()
            probe.report(step, total)
""")


def jobs(tmp_path, program, checkpoint):
    script = tmp_path / "child.py"
    script.write_text(program)
    entry = {"name": "train", "class": "ml-train", "command": [sys.executable, str(script), str(STEPS)],
             "reports_progress": True, "checkpoint": checkpoint}
    return [j.spec for j in load_jobs_dict({"version": 1, "jobs": [entry]})]


def lines(path):
    return path.read_text().split()


def test_a_job_moved_with_a_checkpoint_does_every_step_once(tmp_path):
    be = LocalBackend([A40], tmp_path / "run", mib_per_gib=256, tick_s=0.02)
    policy = MovePolicy("3g.20gb", "7g.40gb", at_s=1.5)
    r = run(TraceSource(jobs(tmp_path, SAVER, {"signal": "SIGUSR1", "grace_s": 20})), policy, be)
    folder = be.checkpoint_dir("train")
    assert r.jobs[0].state == "done" and r.jobs[0].outcomes == ("killed:move", "ok")
    starts = [line.split() for line in (folder / "starts.log").read_text().splitlines()]
    assert [s[0] for s in starts] == ["0", "1"]  # MIGSCHED_RESUME on each attempt
    steps = [int(x) for x in lines(folder / "steps.log")]
    assert steps == list(range(1, STEPS + 1))  # no step lost, none done twice
    saved = policy.view.jobs["train"].attempts[0].saved_progress
    assert 0 < saved <= int(starts[1][1]) / STEPS  # the probe's last report (rate-limited) before the save


def test_a_job_that_ignores_the_signal_is_killed_after_its_grace_and_runs_again_from_zero(tmp_path):
    be = LocalBackend([A40], tmp_path / "run", mib_per_gib=256, tick_s=0.02)
    policy = MovePolicy("3g.20gb", "7g.40gb", at_s=1.5)
    r = run(TraceSource(jobs(tmp_path, IGNORER, {"grace_s": 0.5})), policy, be)
    folder = be.checkpoint_dir("train")
    assert r.jobs[0].state == "done" and r.jobs[0].outcomes == ("killed:move", "ok")
    assert [line.split()[0] for line in (folder / "starts.log").read_text().splitlines()] == ["0", "0"]
    steps = [int(x) for x in lines(folder / "steps.log")]
    cut = steps.index(1, 1)  # the second run starts again at step 1
    assert steps[cut:] == list(range(1, STEPS + 1)) and steps[:cut] == list(range(1, cut + 1))
    job = policy.view.jobs["train"]
    assert job.attempts[0].saved_progress is None and job.moves == 0


@pytest.fixture
def nv(monkeypatch):
    """The fake NVML of tests/fake_nvml (it enforces the MIG rules), one A100-40GB."""
    from nvml_support import fake_pynvml

    yield from fake_pynvml(monkeypatch, ["A100-40GB"])


def test_the_nvml_backend_moves_with_the_same_machinery(nv, tmp_path):
    from migsched.backends.nvml.backend import NvmlBackend
    from migsched.backends.nvml.nvmllib import Nvml

    nv.nvmlInit()
    be = NvmlBackend(tmp_path / "run", nvml=Nvml(nv), tick_s=0.02)
    policy = MovePolicy("3g.20gb", "7g.40gb", at_s=1.5)
    r = run(TraceSource(jobs(tmp_path, SAVER, {"signal": "SIGUSR2", "grace_s": 20})), policy, be)
    folder = be.checkpoint_dir("train")
    assert r.jobs[0].outcomes == ("killed:move", "ok")
    assert [line.split()[0] for line in (folder / "starts.log").read_text().splitlines()] == ["0", "1"]
    assert [int(x) for x in lines(folder / "steps.log")] == list(range(1, STEPS + 1))
