"""bench/checkpoint_moves.py keeps measuring what it says: checkpoints on the training jobs only,
and migm using them (moves that keep progress) on a held-out ML batch. No timing is asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from migsched.hardware import get_model
from migsched.jobs.spec import load_jobs_dict
from migsched.run import simulate

_BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_BENCH))
    try:
        spec = importlib.util.spec_from_file_location("checkpoint_moves", _BENCH / "checkpoint_moves.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(_BENCH))


def test_only_training_jobs_get_the_checkpoint_block(bench):
    from heldout import HeldOut, heldout_doc
    doc = heldout_doc(HeldOut("mixed", 36, 101, "A100-80GB"))
    out, n = bench.with_checkpoints(doc)
    train = [e for e in out["jobs"] if e.get("class") == "ml-train"]
    assert n == len(train) > 0 and all(e["checkpoint"] == bench.CHECKPOINT for e in train)
    assert all("checkpoint" not in e for e in out["jobs"] if e.get("class") != "ml-train")
    assert all("checkpoint" not in e for e in doc["jobs"])  # the input is left as it was
    jobs = load_jobs_dict(out)
    assert sum(j.spec.checkpoint is not None for j in jobs) == n


def test_migm_moves_checkpointable_jobs_and_keeps_their_work(bench):
    from heldout import HeldOut, heldout_doc
    doc = heldout_doc(HeldOut("ml", 27, 101, "A100-80GB"))
    model = get_model("A100-80GB")
    plain = simulate(load_jobs_dict(doc), model, 1, policy="migm", seed=0)
    moved = simulate(load_jobs_dict(bench.with_checkpoints(doc)[0]), model, 1, policy="migm", seed=0)
    assert moved.policy_summary.get("moves", 0) > 0 and not plain.policy_summary.get("moves", 0)
    assert moved.jobs_completed == plain.jobs_completed == 27
    assert moved.makespan_s < plain.makespan_s
