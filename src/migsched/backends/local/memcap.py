"""How an emulated instance's memory cap is enforced on a machine without a GPU.

A MIG instance has a hard memory size; the local backend imitates it with one of two kernel
mechanisms, chosen once per machine by `detect_mechanism()`:

- **cgroup v2** (preferred): a per-attempt cgroup under `<root>/migsched/` with `memory.max` set to
  the cap and `memory.swap.max` to 0, so the kernel OOM-kills the job's tree at the cap and
  counts it in `memory.events` (`oom_kill`). Needs a cgroup2 mount at `/sys/fs/cgroup` (the
  unified hierarchy), the `memory` controller and a subtree we may write.
- **RLIMIT_DATA** (fallback): a per-process limit on private writable virtual memory (heap,
  private anonymous mmaps, thread stacks). On Linux >= 4.7 it really caps a Python child's heap:
  allocations past it fail and Python raises `MemoryError`. `RLIMIT_AS` is not used: it counts
  every mapping (shared libraries, reserved arenas) and breaks ordinary Python programs long
  before their heap is large. What the fallback does and does not catch is measured in
  docs/local-backend-internals.md.

Everything here is stdlib-only: the shim imports it in every job.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MOUNTS_PATH = Path("/proc/self/mounts")
PARENT_NAME = "migsched"


class CapKind(StrEnum):
    """The mechanism that enforces the memory cap."""

    CGROUP_V2 = "cgroup_v2"
    RLIMIT_DATA = "rlimit_data"


@dataclass(frozen=True, slots=True)
class CapMechanism:
    """Which mechanism caps memory on this machine, and why that one.

    Attributes:
        kind: cgroup v2 or the RLIMIT_DATA fallback.
        reason: one sentence for docs and `run` output, e.g. "no cgroup2 mount at /sys/fs/cgroup
            (cgroup2 only at /sys/fs/cgroup/unified: a hybrid hierarchy)".
        parent: the cgroup under which per-attempt cgroups are created (cgroup v2 only).
    """

    kind: CapKind
    reason: str
    parent: Path | None = None

    def __post_init__(self) -> None:
        if (self.kind is CapKind.CGROUP_V2) != (self.parent is not None):
            raise ValueError(
                f"CapMechanism.parent must be set exactly when kind is {CapKind.CGROUP_V2.value!r};"
                f" got kind={self.kind.value!r}, parent={self.parent!r}"
            )


def _cgroup2_mounts(mounts_path: Path) -> list[str]:
    """Mount points of every cgroup2 file system listed in a mounts table."""
    try:
        lines = mounts_path.read_text().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            points.append(fields[1].replace("\\040", " "))
    return points


def detect_mechanism(
    root: Path = CGROUP_ROOT,
    *,
    mounts_path: Path = MOUNTS_PATH,
    parent_name: str = PARENT_NAME,
) -> CapMechanism:
    """Decide between cgroup v2 and RLIMIT_DATA, and say why.

    cgroup v2 is chosen when `root` is a cgroup2 mount (per `mounts_path`), its
    `cgroup.controllers` lists `memory`, and `<root>/<parent_name>` can be created with the memory
    controller enabled for its children. That last check has side effects: it creates the parent
    cgroup and enables `+memory` in the subtree control files on the way, which is what any
    later attempt needs anyway. Any failure falls back to RLIMIT_DATA with the reason.

    `root` and `mounts_path` are parameters so the logic can be tested on a fake tree.
    """
    mounts = _cgroup2_mounts(mounts_path)
    if str(root) not in mounts:
        elsewhere = f" (cgroup2 only at {', '.join(mounts)}: a hybrid hierarchy)" if mounts else ""
        return CapMechanism(CapKind.RLIMIT_DATA, f"no cgroup2 mount at {root}{elsewhere}")
    try:
        controllers = (root / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return CapMechanism(CapKind.RLIMIT_DATA, f"cannot read {root}/cgroup.controllers: {exc}")
    if "memory" not in controllers:
        listed = " ".join(controllers) or "none"
        return CapMechanism(
            CapKind.RLIMIT_DATA, f"memory controller not available in {root} (controllers: {listed})"
        )
    parent = root / parent_name
    try:
        _enable_memory(root)
        parent.mkdir(mode=0o755, exist_ok=True)
        _enable_memory(parent)
    except OSError as exc:
        return CapMechanism(
            CapKind.RLIMIT_DATA, f"cgroup subtree {parent} is not writable: {exc.strerror or exc}"
        )
    return CapMechanism(
        CapKind.CGROUP_V2, f"cgroup v2 with the memory controller at {parent}", parent=parent
    )


def _enable_memory(cgroup: Path) -> None:
    """Enable the memory controller for the children of `cgroup` unless it already is."""
    control = cgroup / "cgroup.subtree_control"
    current = control.read_text().split() if control.exists() else []
    if "memory" not in current and "+memory" not in current:
        with open(control, "a") as handle:
            handle.write("+memory\n")


@functools.cache
def current_mechanism() -> CapMechanism:
    """The mechanism of this machine (detected once per process)."""
    return detect_mechanism()


def attempt_cgroup(mechanism: CapMechanism, name: str) -> Path:
    """The cgroup directory of one attempt; `name` must be a safe file name."""
    if mechanism.parent is None:
        raise ValueError(f"mechanism {mechanism.kind.value!r} has no cgroups")
    if not name or "/" in name or name in {".", ".."}:
        raise ValueError(f"cgroup name must be a plain file name; got {name!r}")
    return mechanism.parent / name


def create_cgroup(path: Path, memory_limit_bytes: int) -> None:
    """Create an attempt's cgroup with a hard cap and no swap.

    `memory.oom.group` is set (best effort) so an OOM kill takes the whole job tree, as a real
    GPU instance running out of memory takes the whole job down.
    """
    if memory_limit_bytes <= 0:
        raise ValueError(f"memory_limit_bytes must be > 0; got {memory_limit_bytes}")
    path.mkdir(mode=0o755, exist_ok=True)
    (path / "memory.max").write_text(f"{memory_limit_bytes}\n")
    swap = path / "memory.swap.max"
    try:
        swap.write_text("0\n")
    except OSError:
        pass  # no swap accounting on this kernel: nothing to turn off
    try:
        (path / "memory.oom.group").write_text("1\n")
    except OSError:
        pass


def join_cgroup(path: Path, pid: int) -> None:
    """Move process `pid` into the cgroup (its future children follow it)."""
    with open(path / "cgroup.procs", "a") as handle:
        handle.write(f"{pid}\n")


def read_oom_kill(path: Path) -> int | None:
    """The `oom_kill` count of the cgroup's `memory.events`, or None when it cannot be read."""
    try:
        lines = (path / "memory.events").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def kill_cgroup(path: Path) -> None:
    """SIGKILL every process left in the cgroup (kernels >= 5.14 have `cgroup.kill`)."""
    kill_file = path / "cgroup.kill"
    if kill_file.exists():
        try:
            kill_file.write_text("1\n")
        except OSError:
            pass


def remove_cgroup(path: Path) -> bool:
    """Remove an attempt's cgroup; True when it is gone.

    On cgroupfs `rmdir` removes the interface files with the directory and fails with EBUSY while
    processes remain. A plain directory (the tests' fake tree) answers ENOTEMPTY, so its files are
    removed first.
    """
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            return False
        try:
            for child in path.iterdir():
                if child.is_file():
                    child.unlink()
            os.rmdir(path)
        except OSError:
            return False
    return True


def apply_rlimit_data(memory_limit_bytes: int) -> None:
    """Cap the calling process's private writable memory (call in the child, before exec)."""
    resource.setrlimit(resource.RLIMIT_DATA, (memory_limit_bytes, memory_limit_bytes))
