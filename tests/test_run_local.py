"""`migsched run` on the local backend with real child processes: completion, early restart,
OOM restart, failures with reasons, literal arguments, bad input, and SIGKILL + `--resume`.

Every job is a small Python program (tests/jobs/work.py); memory caps are scaled (16 MiB of RAM
per GiB of instance memory) and enforced by RLIMIT_DATA where there is no cgroup v2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from migsched.cli.main import main
from migsched.store.db import RunStore

WORK = str(Path(__file__).parent / "jobs" / "work.py")
PY = sys.executable
pytestmark = pytest.mark.slow


def job(name, *args, hint_gib=1.0, cls="scientific", **extra):
    return {"name": name, "class": cls, "hint_gib": hint_gib, "command": [PY, WORK, "--name", name, *args], **extra}


def write_jobs(path: Path, *entries) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "jobs": list(entries)}))
    return path


def run_cli(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "out.json"
    rc = main(["run", *args, "--state", str(tmp_path / "run.db"), "--json", str(out), "--sample-s", "0.2"])
    return rc, (json.loads(out.read_text()) if out.exists() else {})


def jobs_of(doc: dict) -> dict[str, dict]:
    return {j["job_id"]: j for j in doc["results"][0]["jobs"]}


def test_a_batch_of_small_jobs_completes_and_their_output_is_logged(tmp_path):
    f = write_jobs(tmp_path / "jobs.yaml", *[job(f"j{i}", "--seconds", "0.3") for i in range(4)])
    rc, doc = run_cli(tmp_path, str(f), "--policy", "migm")
    assert rc == 0
    assert {j["state"] for j in jobs_of(doc).values()} == {"done"}
    logs = tmp_path / "run.d" / "logs"
    assert (logs / "j0.1.out").exists() and oct((logs / "j0.1.out").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "run.db").stat().st_mode & 0o777) == "0o600"


def test_a_job_that_grows_past_its_instance_is_restarted_early_and_completes(tmp_path):
    # hint 1 GiB -> 1g.5gb, capped at 4.75 GiB x 16 MiB = 76 MiB; it grows to ~120 MiB of RSS
    # (7.5 GiB at the scale) while reporting progress, so the forecast sees it coming; six
    # sleepers keep the other 1g slices busy so that no tail upgrade gives it more room
    grower = job("grower", "--seconds", "4", "--steps", "40", "--grow-mib", "110", cls="ml-train")
    sleepers = [job(f"s{i}", "--seconds", "3") for i in range(6)]
    rc, doc = run_cli(tmp_path, str(write_jobs(tmp_path / "jobs.yaml", grower, *sleepers)), "--policy", "migm")
    g = jobs_of(doc)["grower"]
    assert rc == 0 and g["state"] == "done"
    assert g["outcomes"][0] == "killed:early-restart" and g["outcomes"][-1] == "ok"


def test_a_job_that_runs_out_of_memory_is_restarted_on_a_larger_instance(tmp_path):
    hog = {"name": "hog", "class": "scientific", "hint_gib": 1,
           "command": [PY, "-c", "x = bytearray(120 * 1024 * 1024); x[::4096] = b'y' * len(x[::4096]); print('ok')"]}
    rc, doc = run_cli(tmp_path, str(write_jobs(tmp_path / "jobs.yaml", hog)), "--policy", "greedy")
    h = jobs_of(doc)["hog"]
    assert rc == 0 and h["state"] == "done"
    assert h["outcomes"][0] == "oom" and h["outcomes"][-1] == "ok"
    assert "ok" in (tmp_path / "run.d" / "logs" / f"hog.{len(h['outcomes'])}.out").read_text()


def test_a_missing_program_or_a_nonzero_exit_fails_with_its_reason_and_the_rest_completes(tmp_path):
    f = write_jobs(tmp_path / "jobs.yaml", job("good", "--seconds", "0.2"),
                   {"name": "ghost", "class": "scientific", "hint_gib": 1, "command": "no-such-program-xyz --x"},
                   job("three", "--exit", "3", "--seconds", "0.1"))
    rc, doc = run_cli(tmp_path, str(f), "--policy", "migm")
    res = jobs_of(doc)
    assert rc == 1  # documented: non-zero when any job failed
    assert res["good"]["state"] == "done"
    assert res["ghost"]["state"] == "failed" and "no-such-program-xyz" in res["ghost"]["failure"]
    assert res["three"]["state"] == "failed" and "exit code 3" in res["three"]["failure"]


def test_shell_metacharacters_in_a_task_file_stay_literal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"# comment line\n{PY} -c \"import sys; print(sys.argv[1:])\" '$(touch PWNED)' ';' '|' '*' `touch PWNED2`\n")
    rc, doc = run_cli(tmp_path, str(tasks), "--policy", "greedy")
    assert rc == 0
    out = (tmp_path / "run.d" / "logs" / "task-0001.1.out").read_text()
    assert "['$(touch PWNED)', ';', '|', '*', '`touch', 'PWNED2`']" in out
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


@pytest.mark.parametrize(("name", "text", "says"), [
    ("jobs.yaml", "version: 1\njobs:\n  - {name: a, class: nope, command: [x]}\n", "class"),
    ("jobs.yaml", "version: 1\njobs:\n  - {name: a, class: scientific, command: 'echo \"unbalanced'}\n", "quotes"),
    ("tasks.txt", "echo ok\necho 'unbalanced\n", "line 2"),
    ("tasks.txt", "# only a comment\n\n", "no task"),
])
def test_malformed_job_and_task_files_are_named_and_nothing_runs(tmp_path, capsys, name, text, says):
    f = tmp_path / name
    f.write_text(text)
    rc = main(["run", str(f), "--state", str(tmp_path / "run.db")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and says in err and "Traceback" not in err
    assert not (tmp_path / "run.db").exists() and not (tmp_path / "run.d").exists()


def test_a_state_file_in_the_way_is_refused_without_resume(tmp_path, capsys):
    f = write_jobs(tmp_path / "jobs.yaml", job("a", "--seconds", "0.1"))
    assert run_cli(tmp_path, str(f), "--policy", "greedy")[0] == 0
    rc = main(["run", str(f), "--state", str(tmp_path / "run.db")])
    assert rc == 2 and "--resume" in capsys.readouterr().err


def _states(db: Path) -> dict[str, str]:
    with RunStore.open(db) as st:
        return {r.job_id: r.state for r in st.jobs()}


def test_sigkill_of_the_scheduler_then_resume_completes_every_job_exactly_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    n = 10  # more jobs than 1g slices: some are still queued when the scheduler dies
    f = write_jobs(tmp_path / "jobs.yaml",
                   *[job(f"m{i}", "--seconds", f"{0.8 + 0.4 * i:.1f}", "--steps", "5", "--marker", str(markers))
                     for i in range(n)])
    db = tmp_path / "run.db"
    cmd = [PY, "-m", "migsched.cli.main", "run", str(f), "--state", str(db), "--policy", "migm",
           "--gpu", "A100-40GB", "--sample-s", "0.2"]
    sched = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    try:  # kill it once some jobs are done and others are running
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if db.exists():
                try:
                    states = _states(db)
                except Exception:  # noqa: BLE001 - the store may be mid-creation
                    continue
                vals = list(states.values())
                if vals.count("done") >= 1 and vals.count("running") >= 2 and vals.count("queued") >= 1:
                    break
        else:
            pytest.fail("the scheduler never had jobs done, running and queued at once")
    finally:
        os.kill(sched.pid, signal.SIGKILL)
        sched.wait(10)
    before = _states(db)
    assert "running" in before.values() and "queued" in before.values()
    rc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stderr
    assert "adopted" in rc.stderr
    assert set(_states(db).values()) == {"done"}
    for i in range(n):  # exactly one run each, and it ran to its end
        lines = (markers / f"m{i}").read_text().split()
        assert lines[0::3] == ["start", "end"], (i, lines)
