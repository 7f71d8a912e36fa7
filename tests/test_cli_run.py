"""`migsched run --backend sim` and `migsched status`: the same loop and store, simulated."""

from __future__ import annotations

import json

from migsched.cli.main import main
from migsched.workloads.mixes import make_mix
import pytest
import yaml


def test_a_simulated_run_records_every_job_and_status_reads_it(tmp_path, capsys):
    jobs = tmp_path / "ml.yaml"
    jobs.write_text(yaml.safe_dump(make_mix("ml", jobs=6, seed=1)))
    db = tmp_path / "sim.db"
    rc = main(["run", str(jobs), "--backend", "sim", "--gpu", "A100-80GB", "--state", str(db),
               "--json", str(tmp_path / "out.json")])
    assert rc == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    res = doc["results"][0]
    assert res["backend"] == "sim" and res["jobs_completed"] == 6 and doc["lower_bound_s"] > 0
    # the same lower bound as `simulate` (arrival times included)
    from migsched.hardware import get_model
    from migsched.jobs import load_jobs
    from migsched.metrics import lower_bound_s
    assert doc["lower_bound_s"] == pytest.approx(lower_bound_s(load_jobs(jobs), [get_model("A100-80GB")]))
    capsys.readouterr()
    assert main(["status", "--state", str(db), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["done"] == 6 and st["meta"]["policy"] == "migm"
    assert main(["run", "--resume", "--state", str(db)]) == 2  # a simulated run cannot resume
    assert "cannot be resumed" in capsys.readouterr().err


def test_the_lower_bound_of_a_simulated_run_counts_arrivals(tmp_path):
    """It used to be computed as if every job arrived at 0."""
    jobs = tmp_path / "late.yaml"
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": [{"name": "late", "class": "scientific", "arrival_s": 1000,
                                    "hint_gib": 4, "model": {"runtime_s": 10, "peak_gib": 4}}]}))
    assert main(["run", str(jobs), "--backend", "sim", "--gpu", "A100-80GB", "--state", str(tmp_path / "s.db"),
                 "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["lower_bound_s"] >= 1000


def test_the_sim_backend_names_the_jobs_without_a_model(tmp_path, capsys):
    tasks = tmp_path / "t.txt"
    tasks.write_text("echo hi\n")
    assert main(["run", str(tasks), "--backend", "sim", "--state", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert "needs a model: entry" in err and "task-0001" in err and not (tmp_path / "s.db").exists()


def test_status_of_a_missing_state_file_is_one_line(tmp_path, capsys):
    assert main(["status", "--state", str(tmp_path / "nope.db")]) == 2
    assert capsys.readouterr().err.startswith("error: no state file")
