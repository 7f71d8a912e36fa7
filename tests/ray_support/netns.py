"""Run a command inside a network (and PID) namespace of its own, where Ray's node address is 127.0.0.1.

On Linux Ray replaces `--node-ip-address=127.0.0.1` with the machine's own address; in a fresh
network namespace with only `lo` up, 127.0.0.1 is the only address, so the whole cluster stays
on loopback. The PID namespace makes the command PID 1: when it ends (or is killed at the
timeout) the kernel kills every process left inside — raylets, workers, jobs — so a failing
test leaves nothing running.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

UNSHARE = ("unshare", "--net", "--pid", "--fork", "--mount", "--mount-proc")


@functools.cache
def unavailable() -> str:
    """Why namespaces cannot be used here ("" when they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs the unshare and ip commands (util-linux, iproute2)"
    if os.geteuid() != 0:
        return "needs root to make a network namespace (unshare -n)"
    try:
        probe = subprocess.run([*UNSHARE, "bash", "-c", "ip link set lo up"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    return "" if probe.returncode == 0 else f"unshare failed: {probe.stderr.decode(errors='replace').strip()[:200]}"


def run_isolated(argv: list[str], *, timeout_s: float, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`argv` as PID 1 of fresh network + PID namespaces with `lo` up; killed at `timeout_s`."""
    script = "ip link set lo up && exec " + " ".join(_quote(a) for a in argv)
    proc = subprocess.Popen([*UNSHARE, "bash", "-c", script], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # unshare and PID 1 inside: the namespace dies with it
        out, _ = proc.communicate()
        out += f"\n[killed after {timeout_s} s]"
        return subprocess.CompletedProcess(argv, -9, out, "")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)
