"""The local backend's process runtime: real child processes under the shim (no GPU needed)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from migsched.backends.local import memcap
from migsched.backends.local.process import (
    ExitStatus,
    ManagedProcess,
    ProcessSpec,
    classify_exit,
    safe_name,
)
from migsched.backends.local.shim import ExitRecord

PY = sys.executable
MIB = 1024 * 1024
TIMEOUT_S = 20.0


def make_spec(tmp_path: Path, argv: list[str], **overrides: object) -> ProcessSpec:
    fields: dict[str, object] = dict(
        job_id="job#1/a b",
        attempt=0,
        argv=tuple(argv),
        env={},
        cwd=None,
        log_dir=tmp_path / "logs",
        memory_limit_bytes=None,
        cpus=None,
        probe_path=tmp_path / "probe.json",
    )
    fields.update(overrides)
    return ProcessSpec(**fields)  # type: ignore[arg-type]


def wait_exit(proc: ManagedProcess, timeout_s: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = proc.poll()
        if info is not None:
            return info
        time.sleep(0.01)
    proc.kill_now()
    raise AssertionError(f"job did not end within {timeout_s} s")


def wait_for_text(path: Path, text: str, timeout_s: float = TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.01)
    raise AssertionError(f"{text!r} never appeared in {path}")


def run_job(tmp_path: Path, argv: list[str], **overrides: object):
    spec = make_spec(tmp_path, argv, **overrides)
    info = wait_exit(ManagedProcess.start(spec))
    return spec, info


def test_small_python_job_completes_ok_with_stdout_in_its_log(tmp_path: Path) -> None:
    spec, info = run_job(tmp_path, [PY, "-c", "print('hello from the job')"])
    assert info.status == ExitStatus.OK and info.returncode == 0
    assert spec.stdout_path.read_text() == "hello from the job\n"
    assert spec.stdout_path.name == f"{safe_name('job#1/a b')}.0.out"
    for path in (spec.stdout_path, spec.stderr_path, spec.exit_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_exit_record_has_the_documented_fields(tmp_path: Path) -> None:
    spec, _ = run_job(tmp_path, [PY, "-c", "raise SystemExit(4)"])
    record = json.loads(spec.exit_path.read_text())
    assert record["returncode"] == 4 and record["signal"] is None and record["oom_kill"] is None
    assert abs(record["ended_unix"] - time.time()) < 60
    assert not list(spec.log_dir.glob(".*.tmp"))


def test_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    literal = ["$(touch X)", ";", "touch Y", "|", "*", "`touch Z`", "a b", "&&"]
    code = "import sys, json; print(json.dumps(sys.argv[1:]))"
    spec, info = run_job(tmp_path, [PY, "-c", code, *literal], cwd=str(tmp_path))
    assert info.status == ExitStatus.OK
    assert json.loads(spec.stdout_path.read_text()) == literal
    assert not any((tmp_path / name).exists() for name in ("X", "Y", "Z"))


def test_env_and_cwd_apply(tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    code = "import os; print(os.environ['MY_VAR']); print(os.getcwd()); print(os.environ['MIGSCHED_PROBE_FILE'])"
    spec, info = run_job(tmp_path, [PY, "-c", code], env={"MY_VAR": "v 1;$HOME"}, cwd=str(workdir))
    assert info.status == ExitStatus.OK
    assert spec.stdout_path.read_text().splitlines() == ["v 1;$HOME", str(workdir), str(spec.probe_path)]


def test_missing_program_fails_with_a_reason_naming_it(tmp_path: Path) -> None:
    _, info = run_job(tmp_path, ["nosuchprog-migsched"])
    assert info.status == ExitStatus.FAILED and info.returncode == 127
    assert info.detail == "program not found: 'nosuchprog-migsched'"


def test_bad_working_directory_fails_naming_it(tmp_path: Path) -> None:
    _, info = run_job(tmp_path, [PY, "-c", "pass"], cwd=str(tmp_path / "missing"))
    assert info.status == ExitStatus.FAILED and info.returncode == 127
    assert str(tmp_path / "missing") in info.detail


def test_nonzero_exit_fails_with_the_code_and_last_stderr_line(tmp_path: Path) -> None:
    code = "import sys; print('noise', file=sys.stderr); print('ValueError: bad input', file=sys.stderr); sys.exit(3)"
    _, info = run_job(tmp_path, [PY, "-c", code])
    assert info.status == ExitStatus.FAILED and info.returncode == 3
    assert info.detail == "exit code 3: ValueError: bad input"


def test_allocating_past_a_64_mib_cap_is_oom(tmp_path: Path) -> None:
    # 200 MiB in 1 MiB pieces: fine without a cap, MemoryError under RLIMIT_DATA (or a cgroup).
    code = "keep = [bytearray(1 << 20) for _ in range(200)]"
    _, info = run_job(tmp_path, [PY, "-c", code], memory_limit_bytes=64 * MIB)
    assert info.status == ExitStatus.OOM, info
    assert "out of memory" in info.detail


def test_cpus_restrict_the_job_affinity(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    spec, info = run_job(tmp_path, [PY, "-c", code], cpus=(cpu,))
    assert info.status == ExitStatus.OK
    assert json.loads(spec.stdout_path.read_text()) == [cpu]


def test_unavailable_cpus_fail_naming_them(tmp_path: Path) -> None:
    _, info = run_job(tmp_path, [PY, "-c", "pass"], cpus=(4095,))
    assert info.status == ExitStatus.FAILED and "cpus 4095" in info.detail


def test_memory_bytes_counts_the_job_tree_not_the_shim(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "block = b'x' * (50 << 20)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code])
    proc = ManagedProcess.start(spec)
    try:
        wait_for_text(spec.stdout_path, "ready")
        measured = proc.memory_bytes()
        assert 50 * MIB <= measured <= 120 * MIB
        job = psutil.Process(proc.pid).children()[0]
        assert abs(measured - job.memory_info().rss) < 4 * MIB  # the shim's own RSS is not in it
        assert proc.peak_memory_bytes >= measured
    finally:
        proc.kill_now()
    info = wait_exit(proc)
    assert info.status == ExitStatus.KILLED
    assert proc.memory_bytes() == 0  # the tree is gone; no exception
    assert proc.peak_memory_bytes >= 50 * MIB


def test_terminate_escalates_to_sigkill_and_ends_the_whole_group(tmp_path: Path) -> None:
    # The job and its grandchild ignore SIGTERM (the ignored disposition survives exec).
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code])
    proc = ManagedProcess.start(spec)
    grandchild = int(wait_for_text(spec.stdout_path, "\n").split()[0])
    job_pgid = os.getpgid(grandchild)
    assert job_pgid != proc.pid  # the job has its own group, apart from the shim
    grace_s = 0.4
    started = time.monotonic()
    proc.terminate(grace_s=grace_s)
    time.sleep(0.1)
    assert proc.poll() is None  # SIGTERM is ignored and the grace period is not over
    info = wait_exit(proc)
    assert time.monotonic() - started >= grace_s
    assert info.status == ExitStatus.KILLED and info.returncode == -signal.SIGKILL
    assert "SIGKILL" in info.detail
    with pytest.raises(ProcessLookupError):
        os.killpg(job_pgid, 0)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_terminate_delivers_sigterm_once_and_counts_as_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda *a: got.append(1))\n"
        "print('ready', flush=True)\n"
        "deadline = time.monotonic() + 20\n"
        "while not got and time.monotonic() < deadline: time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
        "print('sigterms', len(got), flush=True)\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code])
    proc = ManagedProcess.start(spec)
    wait_for_text(spec.stdout_path, "ready")
    proc.terminate(grace_s=10)
    info = wait_exit(proc)
    assert "sigterms 1" in spec.stdout_path.read_text()
    assert info.status == ExitStatus.KILLED and info.returncode == 0
    assert "stopped by the scheduler" in info.detail


def test_shim_forwards_a_sigterm_sent_to_it(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(20)\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code])
    proc = ManagedProcess.start(spec)
    wait_for_text(spec.stdout_path, "ready")
    os.kill(proc.pid, signal.SIGTERM)
    info = wait_exit(proc)
    assert info.returncode == 7 and info.status == ExitStatus.FAILED  # not stopped by the scheduler


def test_adopt_after_a_scheduler_crash_finds_the_job_and_later_its_exit_record(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
        "print('done')\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code, str(flag)])
    first = ManagedProcess.start(spec)
    pid, create_time = first.pid, first.create_time
    del first  # the scheduler crashed: only the pid and create time survive (in its store)

    adopted = ManagedProcess.adopt(spec, pid, create_time)
    assert adopted is not None
    assert adopted.poll() is None
    assert ManagedProcess.read_exit_record(spec) is None
    flag.touch()
    info = wait_exit(adopted)
    assert info.status == ExitStatus.OK
    assert ManagedProcess.read_exit_record(spec) == info
    assert ManagedProcess.adopt(spec, pid, create_time) is None  # ended: nothing to adopt


def test_the_job_survives_a_sigkilled_scheduler_and_is_adopted(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    job = [PY, "-c", "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)", str(flag)]
    spec = make_spec(tmp_path, job)
    scheduler_code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from migsched.backends.local.process import ManagedProcess, ProcessSpec\n"
        "spec = ProcessSpec('job#1/a b', 0, tuple(json.loads(sys.argv[1])), {}, None, Path(sys.argv[2]), None, None,"
        " Path(sys.argv[3]))\n"
        "proc = ManagedProcess.start(spec)\n"
        "print(json.dumps([proc.pid, proc.create_time]), flush=True)\n"
        "time.sleep(60)\n"
    )
    scheduler = subprocess.Popen(
        [PY, "-c", scheduler_code, json.dumps(job), str(spec.log_dir), str(spec.probe_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        pid, create_time = json.loads(scheduler.stdout.readline())
    finally:
        scheduler.kill()
        scheduler.wait(timeout=10)
    adopted = ManagedProcess.adopt(spec, pid, create_time)
    assert adopted is not None and adopted.poll() is None
    flag.touch()
    assert wait_exit(adopted).status == ExitStatus.OK
    assert ManagedProcess.read_exit_record(spec).status == ExitStatus.OK


def test_adopt_with_a_wrong_create_time_returns_none(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [PY, "-c", "import time; time.sleep(20)"])
    proc = ManagedProcess.start(spec)
    try:
        assert ManagedProcess.adopt(spec, proc.pid, proc.create_time + 1.0) is None
        assert ManagedProcess.adopt(spec, proc.pid, proc.create_time) is not None
    finally:
        proc.kill_now()
        wait_exit(proc)


def test_probe_reads_what_the_job_reported(tmp_path: Path) -> None:
    code = "from migsched import probe; probe.report(3, 4, allocated_bytes=10); probe.report(4, 4)"
    spec = make_spec(tmp_path, [PY, "-c", code])
    proc = ManagedProcess.start(spec)
    assert wait_exit(proc).status == ExitStatus.OK
    reading = proc.probe()
    assert reading is not None and reading.step == 4 and reading.progress == 1.0


def test_a_stale_exit_record_is_not_read_as_this_attempts(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [PY, "-c", "import time; time.sleep(20)"])
    spec.log_dir.mkdir(parents=True)
    ExitRecord(0, None, 1.0).write(spec.exit_path)
    proc = ManagedProcess.start(spec)
    try:
        assert ManagedProcess.read_exit_record(spec) is None
        assert proc.poll() is None
    finally:
        proc.kill_now()
        wait_exit(proc)


def test_fake_cgroup_tree_the_shim_places_the_job_and_reads_oom_kill(tmp_path: Path) -> None:
    parent = tmp_path / "cg" / "migsched"
    parent.mkdir(parents=True)
    mechanism = memcap.CapMechanism(memcap.CapKind.CGROUP_V2, "fake tree", parent=parent)
    spec = make_spec(tmp_path, [PY], memory_limit_bytes=64 * MIB)
    cgroup = memcap.attempt_cgroup(mechanism, spec.file_stem)
    # The job reports what the shim set up, then plays the kernel's OOM killer.
    code = (
        "import os, resource, sys\n"
        "cg = sys.argv[1]\n"
        "print(open(os.path.join(cg, 'memory.max')).read().strip())\n"
        "print(open(os.path.join(cg, 'memory.swap.max')).read().strip())\n"
        "print(open(os.path.join(cg, 'cgroup.procs')).read().split() == [str(os.getpid())])\n"
        "print(resource.getrlimit(resource.RLIMIT_DATA)[0] == resource.RLIM_INFINITY)\n"
        "open(os.path.join(cg, 'memory.events'), 'w').write('oom 1\\noom_kill 1\\n')\n"
        "sys.exit(137)\n"
    )
    spec = make_spec(tmp_path, [PY, "-c", code, str(cgroup)], memory_limit_bytes=64 * MIB)
    info = wait_exit(ManagedProcess.start(spec, mechanism=mechanism))
    assert spec.stdout_path.read_text().splitlines() == [str(64 * MIB), "0", "True", "True"]
    assert info.status == ExitStatus.OOM and "cgroup OOM killer" in info.detail
    assert json.loads(spec.exit_path.read_text())["oom_kill"] == 1
    assert not cgroup.exists()  # removed afterwards


@pytest.mark.skipif(
    memcap.current_mechanism().kind is not memcap.CapKind.CGROUP_V2,
    reason="needs a writable cgroup v2 hierarchy with the memory controller",
)
def test_real_cgroup_v2_oom_kill_is_counted(tmp_path: Path) -> None:
    code = "block = b'x' * (256 << 20)"
    _, info = run_job(tmp_path, [PY, "-c", code], memory_limit_bytes=64 * MIB)
    assert info.status == ExitStatus.OOM


@pytest.mark.parametrize(
    "stderr",
    [
        "Traceback ...\nMemoryError\n",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
        "terminate called after throwing an instance of 'std::bad_alloc'\n",
        "mmap: Cannot allocate memory\n",
        "cudaErrorMemoryAllocation: OUT OF MEMORY\n",
        "OpenBLAS error: Memory allocation still failed after 10 retries, giving up.\n",
    ],
)
def test_classify_recognises_out_of_memory_messages(stderr: str) -> None:
    info = classify_exit(ExitRecord(1, None, 5.0), stderr_text=stderr)
    assert info.status == ExitStatus.OOM and info.detail.startswith("out of memory: ")


def test_classify_orders_the_causes() -> None:
    cap = 64 * MIB
    killed9 = ExitRecord(-9, 9, 5.0)
    assert classify_exit(ExitRecord(0, None, 5.0)).status == ExitStatus.OK
    assert classify_exit(ExitRecord(0, None, 5.0), stderr_text="MemoryError").status == ExitStatus.OK
    assert classify_exit(ExitRecord(-9, 9, 5.0, oom_kill=2)).status == ExitStatus.OOM
    near = classify_exit(killed9, peak_memory_bytes=int(0.95 * cap), memory_limit_bytes=cap)
    assert near.status == ExitStatus.OOM and near.detail.startswith("out of memory: killed by signal 9 at the 64 MiB cap")
    far = classify_exit(killed9, peak_memory_bytes=10 * MIB, memory_limit_bytes=cap)
    assert far.status == ExitStatus.FAILED and "SIGKILL" in far.detail
    stopped = classify_exit(ExitRecord(-9, 9, 5.0, oom_kill=1), terminated=True, escalated=True, grace_s=5)
    assert stopped.status == ExitStatus.KILLED and stopped.detail == "killed by SIGKILL after the 5 s grace period"
    both = "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert classify_exit(ExitRecord(1, None, 5.0), stderr_text=both).detail == (
        "out of memory: torch.cuda.OutOfMemoryError in stderr"
    )
    spawn = classify_exit(ExitRecord(127, None, 5.0, spawn_error="program not found: 'x'"), terminated=True)
    assert spawn.status == ExitStatus.FAILED


def test_safe_names_are_plain_and_distinct() -> None:
    ids = ["job#1", "job/1", "job 1", "job_1", "../up", ".hidden", "日本"]
    names = [safe_name(job_id) for job_id in ids]
    assert len(set(names)) == len(ids)
    assert safe_name("job_1") == "job_1"
    for name in names:
        assert "/" not in name and " " not in name and "#" not in name and not name.startswith(".")


@pytest.mark.parametrize(
    ("field", "value"),
    [("job_id", ""), ("attempt", -1), ("argv", ()), ("memory_limit_bytes", 0), ("cpus", (-1,))],
)
def test_spec_errors_name_the_field_and_value(tmp_path: Path, field: str, value: object) -> None:
    overrides = {} if field == "argv" else {field: value}
    argv = list(value) if field == "argv" else [PY]  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=re.escape(f"ProcessSpec.{field}") + ".*" + re.escape(repr(value))):
        make_spec(tmp_path, argv, **overrides)


def fake_cgroup_root(tmp_path: Path, controllers: str = "cpu io memory pids") -> tuple[Path, Path]:
    root = tmp_path / "sys-fs-cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"proc /proc proc rw 0 0\ncgroup2 {root} cgroup2 rw,nosuid 0 0\n")
    return root, mounts


def test_detect_cgroup_v2_on_a_fake_tree(tmp_path: Path) -> None:
    root, mounts = fake_cgroup_root(tmp_path)
    mechanism = memcap.detect_mechanism(root, mounts_path=mounts)
    assert mechanism.kind is memcap.CapKind.CGROUP_V2 and mechanism.parent == root / "migsched"
    assert "+memory" in (root / "cgroup.subtree_control").read_text().split()
    assert (root / "migsched" / "cgroup.subtree_control").read_text().split() == ["+memory"]
    assert memcap.detect_mechanism(root, mounts_path=mounts) == mechanism  # idempotent
    assert (root / "migsched" / "cgroup.subtree_control").read_text().split() == ["+memory"]


def test_detect_falls_back_to_rlimit_data_with_the_reason(tmp_path: Path) -> None:
    root, mounts = fake_cgroup_root(tmp_path)
    unmounted = tmp_path / "none"
    unmounted.write_text("proc /proc proc rw 0 0\n")
    no_mount = memcap.detect_mechanism(root, mounts_path=unmounted)
    assert no_mount.kind is memcap.CapKind.RLIMIT_DATA and no_mount.reason == f"no cgroup2 mount at {root}"
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(f"cgroup2 {root}/unified cgroup2 rw 0 0\n")
    assert "hybrid hierarchy" in memcap.detect_mechanism(root, mounts_path=hybrid).reason
    (root / "cgroup.controllers").write_text("hugetlb\n")
    no_memory = memcap.detect_mechanism(root, mounts_path=mounts)
    assert no_memory.kind is memcap.CapKind.RLIMIT_DATA and "controllers: hugetlb" in no_memory.reason
    (root / "cgroup.controllers").write_text("memory\n")
    (root / "migsched").write_text("a file where the parent cgroup should be")
    blocked = memcap.detect_mechanism(root, mounts_path=mounts)
    assert blocked.kind is memcap.CapKind.RLIMIT_DATA and "not writable" in blocked.reason


def test_cgroup_primitives_on_a_fake_tree(tmp_path: Path) -> None:
    root, mounts = fake_cgroup_root(tmp_path)
    mechanism = memcap.detect_mechanism(root, mounts_path=mounts)
    cgroup = memcap.attempt_cgroup(mechanism, "job_1.0")
    memcap.create_cgroup(cgroup, 64 * MIB)
    assert (cgroup / "memory.max").read_text() == f"{64 * MIB}\n"
    assert (cgroup / "memory.swap.max").read_text() == "0\n"
    assert memcap.read_oom_kill(cgroup) is None
    memcap.join_cgroup(cgroup, 4242)
    assert (cgroup / "cgroup.procs").read_text() == "4242\n"
    (cgroup / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert memcap.read_oom_kill(cgroup) == 2
    assert memcap.remove_cgroup(cgroup) and not cgroup.exists()
    assert memcap.remove_cgroup(cgroup)  # already gone
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        memcap.create_cgroup(cgroup, 0)
    with pytest.raises(ValueError, match="plain file name"):
        memcap.attempt_cgroup(mechanism, "../escape")
    with pytest.raises(ValueError, match="parent"):
        memcap.CapMechanism(memcap.CapKind.CGROUP_V2, "no parent")


def test_this_machine_reports_a_mechanism_and_why() -> None:
    mechanism = memcap.current_mechanism()
    assert mechanism.reason
    mounted = any(
        line.split()[1:3] == ["/sys/fs/cgroup", "cgroup2"] for line in Path("/proc/self/mounts").read_text().splitlines()
    )
    if not mounted:
        assert mechanism.kind is memcap.CapKind.RLIMIT_DATA
        assert mechanism.reason.startswith("no cgroup2 mount at /sys/fs/cgroup")
