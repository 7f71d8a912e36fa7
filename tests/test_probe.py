"""The job-side progress probe: report/read, rate limiting, torch numbers, the wrapper."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from migsched import probe

PY = sys.executable
WRAP = [PY, "-m", "migsched.probe"]


@pytest.fixture
def probe_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "probe.json"
    monkeypatch.setenv(probe.PROBE_ENV, str(path))
    monkeypatch.setattr(probe, "_last_write_s", -float("inf"))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    return path


def test_report_and_read_round_trip(probe_file: Path) -> None:
    before = time.time()
    assert probe.report(3, 10, allocated_bytes=5 << 20, reserved_bytes=8 << 20)
    reading = probe.read_probe(probe_file)
    assert reading == probe.ProbeReading(reading.unix_s, 3, 10, 0.3, 5 << 20, 8 << 20)
    assert before <= reading.unix_s <= time.time()
    assert stat.S_IMODE(probe_file.stat().st_mode) == 0o600
    assert set(json.loads(probe_file.read_text())) == {
        "unix", "step", "total", "progress", "allocated_bytes", "reserved_bytes"
    }
    assert not list(probe_file.parent.glob(".*.tmp"))


def test_report_is_a_no_op_without_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(probe.PROBE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(probe, "_last_write_s", -float("inf"))
    monkeypatch.setattr(probe, "_write", lambda *a: pytest.fail("wrote without MIGSCHED_PROBE_FILE"))
    assert probe.report(1, 2) is False
    assert list(tmp_path.iterdir()) == []


def test_progress_is_clipped_and_needs_a_total(probe_file: Path) -> None:
    for step, total, expected in [(12, 10, 1.0), (-1, 10, 0.0), (5, None, None), (5, 0, None)]:
        probe._last_write_s = -float("inf")
        assert probe.report(step, total)
        assert probe.read_probe(probe_file).progress == expected


def test_reports_are_rate_limited_but_the_final_step_is_written(probe_file: Path) -> None:
    assert probe.report(1, 100)
    assert not probe.report(2, 100)  # within MIN_INTERVAL_S of the last write
    assert probe.read_probe(probe_file).step == 1
    assert probe.report(100, 100)  # the final step always
    assert probe.read_probe(probe_file).step == 100
    probe._last_write_s -= probe.MIN_INTERVAL_S  # as if the interval had passed
    assert probe.report(3, 100)
    writes = sum(probe.report(i, 10**6) for i in range(1000))
    assert writes <= 1


def test_torch_numbers_are_filled_only_if_torch_is_already_imported(probe_file: Path) -> None:
    cuda = types.SimpleNamespace(is_available=lambda: True, memory_allocated=lambda: 123, memory_reserved=lambda: 456)
    sys.modules["torch"] = types.SimpleNamespace(cuda=cuda)  # removed again by the fixture
    probe.report(1)
    assert (probe.read_probe(probe_file).allocated_bytes, probe.read_probe(probe_file).reserved_bytes) == (123, 456)
    probe._last_write_s = -float("inf")
    probe.report(2, allocated_bytes=7)
    assert (probe.read_probe(probe_file).allocated_bytes, probe.read_probe(probe_file).reserved_bytes) == (7, 456)
    cuda.is_available = lambda: False
    probe._last_write_s = -float("inf")
    probe.report(3)
    assert probe.read_probe(probe_file).allocated_bytes is None


def test_importing_and_reporting_pull_in_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from migsched import probe\n"
        "probe.report(1, 2)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'psutil', 'pydantic', 'subprocess') if m in sys.modules))\n"
    )
    env = {**os.environ, probe.PROBE_ENV: str(tmp_path / "p.json")}
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]"
    assert probe.read_probe(tmp_path / "p.json").step == 1


@pytest.mark.parametrize(
    "content",
    ["", '{"unix": 1.0, "st', "[1, 2]", '{"unix": 1.0}', '{"unix": 1.0, "step": null}', '{"unix": "x", "step": 1}'],
)
def test_read_probe_tolerates_partial_and_malformed_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "probe.json"
    path.write_text(content)
    assert probe.read_probe(path) is None
    assert probe.read_probe(tmp_path / "missing.json") is None


def run_wrapper(argv: list[str], probe_path: Path | None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != probe.PROBE_ENV}
    if probe_path is not None:
        env[probe.PROBE_ENV] = str(probe_path)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, **kwargs)


def test_wrapper_passes_stdout_through_and_reports_progress(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(1, 5): print(f'epoch x step {i}/4 loss 0.1')\nprint('the end')\nsys.exit(5)"
    result = run_wrapper([*WRAP, "--progress-regex", r"step (\d+)/(\d+)", "--", PY, "-c", code], tmp_path / "p.json")
    assert result.returncode == 5
    assert result.stdout == "".join(f"epoch x step {i}/4 loss 0.1\n" for i in range(1, 5)) + "the end\n"
    reading = probe.read_probe(tmp_path / "p.json")
    assert (reading.step, reading.total, reading.progress) == (4, 4, 1.0)


def test_wrapper_writes_the_last_reading_even_if_rate_limited(tmp_path: Path) -> None:
    code = "for i in range(1, 51): print(f'it={i}', flush=True)"
    regex = r"it=(?P<step>\d+)"
    result = run_wrapper([*WRAP, "--progress-regex", regex, "--", PY, "-c", code], tmp_path / "p.json")
    assert result.returncode == 0
    reading = probe.read_probe(tmp_path / "p.json")
    assert (reading.step, reading.total, reading.progress) == (50, None, None)


def test_wrapper_named_groups_win_over_positions(tmp_path: Path) -> None:
    code = "print('epoch 9: batch 3 of 12')"
    regex = r"epoch (\d+): batch (?P<step>\d+) of (?P<total>\d+)"
    result = run_wrapper([*WRAP, "--progress-regex", regex, "--", PY, "-c", code], tmp_path / "p.json")
    assert result.returncode == 0
    reading = probe.read_probe(tmp_path / "p.json")
    assert (reading.step, reading.total, reading.progress) == (3, 12, 0.25)


def test_wrapper_without_the_env_var_only_passes_through(tmp_path: Path) -> None:
    result = run_wrapper([*WRAP, "--progress-regex", r"(\d+)", "--", PY, "-c", "print('1 $(x) ;')"], None, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "1 $(x) ;\n"
    assert list(tmp_path.iterdir()) == []


def test_wrapper_forwards_sigterm_and_passes_the_exit_code(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(7)))\n"
        "print('step 1/9', flush=True)\n"
        "time.sleep(20)\n"
    )
    argv = [*WRAP, "--progress-regex", r"step (\d+)/(\d+)", "--", PY, "-c", code]
    env = {**os.environ, probe.PROBE_ENV: str(tmp_path / "p.json")}
    wrapper = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout.readline() == "step 1/9\n"
        wrapper.send_signal(signal.SIGTERM)
        rest = wrapper.stdout.read()
        assert wrapper.wait(timeout=10) == 7
    finally:
        wrapper.kill()
    assert rest == "got TERM\n"
    assert probe.read_probe(tmp_path / "p.json").step == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--progress-regex", "(", "--", PY, "-c", "pass"], "not a valid regex"),
        (["--progress-regex", "step", "--", PY, "-c", "pass"], "needs a group"),
        (["--progress-regex", "(x)", "--", "nosuchprog-migsched"], "nosuchprog-migsched"),
    ],
)
def test_wrapper_rejects_bad_input_with_a_reason(args: list[str], message: str) -> None:
    result = run_wrapper([*WRAP, *args], None)
    assert result.returncode in (2, 127) and message in result.stderr


@pytest.mark.parametrize("text", ['"progress": Infinity', '"progress": NaN', '"allocated_bytes": Infinity',
                                  '"step": 1e999'])
def test_a_reading_with_a_number_that_is_not_finite_is_malformed(tmp_path: Path, text: str) -> None:
    """json reads NaN and Infinity; a job's probe file may hold them (the scheduler reads it)."""
    doc = {"unix": 1.0, "step": 3, "total": 10, "progress": 0.3}
    path = tmp_path / "probe.json"
    key = text.split(":")[0].strip('"')
    body = json.dumps({k: v for k, v in doc.items() if k != key})[:-1] + ", " + text + "}"
    path.write_text(body)
    assert probe.read_probe(path) is None
