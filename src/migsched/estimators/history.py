"""A small local store of how past runs used memory and time, so a second batch starts better.

Memory records are keyed by job name, plus the command when one is given (the same name run with
a different command is a different workload). Each keeps the profile it ran on, the peak seen,
the memory at its first sample and whether it ended ok. Duration records are keyed by job
*family* (`JobSpec.family`: members of a family are alike, which migm already assumes within a
batch, so `bfs-7` of tomorrow's batch learns from `bfs-3` of today's): the compute slices of the
instance, the compute seconds of the whole job there (start-up excluded) and the start-up.

The file is JSON, written atomically (temp file + `os.replace`), and a missing or corrupt file
starts an empty store with a warning: history is an optimisation, never a reason to fail.
`HistoryStore.in_memory()` keeps everything in the process (tests, simulations).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from migsched.errors import MigschedError

FORMAT_VERSION = 1
# Memory counts as growing when the peak exceeds the first sample by this factor.
GROWTH_FACTOR = 1.25


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run.

    Attributes:
        profile: the instance profile it ran on ("" when unknown).
        peak_mib: most memory seen; for a failed run only a lower bound on its need.
        ok: whether it completed.
        start_mib: memory at the first sample, when known (to detect growth).
    """

    profile: str
    peak_mib: float
    ok: bool
    start_mib: float | None = None

    @property
    def grew(self) -> bool:
        """Whether the run's memory grew markedly after its first sample."""
        return self.start_mib is not None and self.peak_mib > GROWTH_FACTOR * max(self.start_mib, 1.0)


@dataclass(frozen=True, slots=True)
class DurationRecord:
    """How long one completed run of a family computed.

    Attributes:
        compute_slices: compute slices of the instance it ran on.
        work_s: compute seconds of the whole job on that instance, start-up excluded (a run
            resumed from a checkpoint is scaled to the whole job).
        startup_s: launch to first progress (0.0 when it was not measured).
        gpu: the GPU model it ran on ("" when unknown): an H100 run says little about an A100's.
    """

    compute_slices: int
    work_s: float
    startup_s: float = 0.0
    gpu: str = ""


#: The most compute slices an instance has (7 on every MIG GPU today; room for more).
MAX_COMPUTE_SLICES = 64


def default_history_path() -> Path:
    """`$XDG_CACHE_HOME/migsched/history.json`, or `~/.cache/migsched/history.json`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migsched" / "history.json"


def history_key(name: str, command: str | None = None) -> str:
    """The store key of a job: its name, plus its command when given."""
    return name if not command else f"{name}\x1f{command}"


class HistoryStore:
    """Past runs per job key, persisted to a JSON file (or kept in memory when `path` is None)."""

    def __init__(
        self, path: str | Path | None = None, *, max_runs: int = 20, autosave: bool = True,
        save_interval_s: float = 0.0, strict: bool = False,
    ) -> None:
        """Open the store at `path` (None: in-memory only); keep at most `max_runs` per key.

        `autosave` writes the file after a record, at most every `save_interval_s` seconds of
        wall-clock time (0: after every record); `flush()` writes what is left. A simulation
        of 100,000 jobs would otherwise rewrite the file 100,000 times.

        An unreadable file is, for a run, a warning and an empty history (the file copied aside
        before it is rewritten); with `strict` (a viewer, which writes nothing) it raises
        `MigschedError` naming the file and what is wrong with it."""
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self.max_runs = max_runs
        self.autosave = autosave
        self.save_interval_s = save_interval_s
        self._saved_at = -float("inf")
        self._dirty = False
        self._save_failed = False
        self._runs: dict[str, list[RunRecord]]
        self._durations: dict[str, list[DurationRecord]]
        self._runs, self._durations = self._load()

    @classmethod
    def in_memory(cls, max_runs: int = 20) -> HistoryStore:
        """A store that never touches the disk."""
        return cls(None, max_runs=max_runs)

    @classmethod
    def default(cls) -> HistoryStore:
        """The per-user store at `default_history_path()`."""
        return cls(default_history_path())

    # ---- queries ----------------------------------------------------------------------------
    def runs(self, name: str, command: str | None = None) -> tuple[RunRecord, ...]:
        """Recorded runs of the job, oldest first."""
        return tuple(self._runs.get(history_key(name, command), ()))

    def peak_mib(self, name: str, command: str | None = None) -> float | None:
        """The highest peak recorded for the job (failed runs count as lower bounds), or None."""
        runs = self._runs.get(history_key(name, command))
        return max((r.peak_mib for r in runs), default=None) if runs else None

    def grows(self, name: str, command: str | None = None) -> bool:
        """Whether any recorded run of the job grew markedly during the run."""
        return any(r.grew for r in self._runs.get(history_key(name, command), ()))

    def keys(self) -> Iterable[str]:
        """Every key held."""
        return self._runs.keys()

    def durations(self, family: str, gpu: str | None = None) -> dict[int, tuple[float, float]]:
        """Per compute-slice count, the median (work_s, startup_s) of the family's recorded
        completed runs on that many slices (only those on GPU model `gpu` when given); empty
        when none was recorded."""
        by_size: dict[int, list[DurationRecord]] = {}
        for r in self._durations.get(family, ()):
            if gpu is None or r.gpu == gpu:
                by_size.setdefault(r.compute_slices, []).append(r)
        return {c: (statistics.median(r.work_s for r in rs), statistics.median(r.startup_s for r in rs))
                for c, rs in by_size.items()}

    def families(self) -> list[str]:
        """The families with duration records, sorted."""
        return sorted(self._durations)

    def duration_runs(self, family: str) -> tuple[DurationRecord, ...]:
        """The family's duration records, oldest first."""
        return tuple(self._durations.get(family, ()))

    def peak_entries(self) -> list[tuple[str, str | None, tuple[RunRecord, ...]]]:
        """(job name, command or None, its memory records) for every key, sorted by name."""
        out = []
        for key, runs in self._runs.items():
            name, _, command = key.partition("\x1f")
            out.append((name, command or None, tuple(runs)))
        return sorted(out, key=lambda e: (e[0], e[1] or ""))

    # ---- updates ----------------------------------------------------------------------------
    def record(self, name: str, run: RunRecord, command: str | None = None) -> None:
        """Add a finished run (and save, when `autosave`)."""
        self._append(self._runs, history_key(name, command), run)

    def record_duration(self, family: str, run: DurationRecord) -> None:
        """Add a completed run's duration to its family (and save, when `autosave`)."""
        self._append(self._durations, family, run)

    def _append(self, table: dict, key: str, run: RunRecord | DurationRecord) -> None:
        """Keep the last `max_runs` records of `key` in `table`, then save if due."""
        runs = table.setdefault(key, [])
        runs.append(run)
        del runs[: max(0, len(runs) - self.max_runs)]
        if self.path is None:
            return  # in memory: nothing to write (and no clock to read per record)
        self._dirty = True
        if self.autosave and time.monotonic() >= self._saved_at + self.save_interval_s:
            self.save()

    def flush(self) -> None:
        """Write what was recorded since the last save (a no-op when nothing was)."""
        if self._dirty:
            self.save()

    def save(self) -> None:
        """Write the store atomically; a no-op in memory. I/O errors warn rather than raise."""
        self._dirty = False
        self._saved_at = time.monotonic()
        if self.path is None:
            return
        data = {
            "version": FORMAT_VERSION,
            "jobs": {k: [asdict(r) for r in v] for k, v in self._runs.items()},
            "durations": {k: [asdict(r) for r in v] for k, v in self._durations.items()},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".history-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            if not self._save_failed:  # once: a run would otherwise repeat it at every save
                warnings.warn(f"migsched: could not save the history file {self.path}: {e}", stacklevel=2)
            self._save_failed = True

    def _load(self) -> tuple[dict[str, list[RunRecord]], dict[str, list[DurationRecord]]]:
        """(memory records, duration records) from the file; both empty when there is none or
        it cannot be read."""
        if self.path is None or not self.path.exists():
            return {}, {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("jobs", {}), dict):
                raise ValueError("the top level must be an object with 'version' and 'jobs'")
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            durations = {  # absent from files written before durations were kept
                str(k): [_duration(r) for r in v] for k, v in data.get("durations", {}).items()
            }
            runs = {
                str(k): [
                    _run(r)
                    for r in v
                ]
                for k, v in data["jobs"].items()
            }
            return runs, durations
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
            if self.strict:
                raise MigschedError(f"{str(self.path)!r} is not a readable migsched history file "
                                   f"({type(e).__name__}: {e}); a run with --history FILE writes one") from None
            kept = self._keep_aside()
            warnings.warn(
                f"migsched: ignoring unreadable history file {self.path} ({e}); starting empty"
                + (f" (the file was copied to {kept} before it is rewritten)" if kept else ""),
                stacklevel=3,
            )
            return {}, {}

    def _keep_aside(self) -> Path | None:
        """Copy an unreadable file to `<name>.unreadable` (a newer version's, or one hand-edited
        wrong), so that the first save does not destroy what it held. None when it cannot."""
        assert self.path is not None
        target = self.path.with_name(self.path.name + ".unreadable")
        try:
            shutil.copyfile(self.path, target)
        except OSError:
            return None
        return target


#: The most memory a record may hold (a petabyte): anything above is a corrupt or hand-edited file.
MAX_RECORD_MIB = 1e9
#: The longest compute time a record may hold (about 30 years).
MAX_RECORD_S = 1e9


def _run(doc: dict) -> RunRecord:
    """A memory record read back from the file; a peak no run can have is an error."""
    rec = RunRecord(profile=str(doc["profile"]), peak_mib=float(doc["peak_mib"]), ok=bool(doc["ok"]),
                    start_mib=None if doc.get("start_mib") is None else float(doc["start_mib"]))
    for name, v in (("peak_mib", rec.peak_mib), ("start_mib", rec.start_mib)):
        if v is not None and not 0 <= v <= MAX_RECORD_MIB:
            raise ValueError(f"memory record {doc!r}: {name} must be in [0, {MAX_RECORD_MIB:g}]")
    return rec


def _duration(doc: dict) -> DurationRecord:
    """A duration record read back from the file; a value no run can have is an error (the
    file is then ignored, like any unreadable one)."""
    slices = doc["compute_slices"]
    if not isinstance(slices, int) or isinstance(slices, bool) or not 1 <= slices <= MAX_COMPUTE_SLICES:
        raise ValueError(f"duration record {doc!r}: compute_slices must be an integer from 1 to "
                         f"{MAX_COMPUTE_SLICES}")
    rec = DurationRecord(slices, float(doc["work_s"]), float(doc.get("startup_s", 0.0)), str(doc.get("gpu", "")))
    if not 0 < rec.work_s <= MAX_RECORD_S or not 0 <= rec.startup_s <= MAX_RECORD_S:
        raise ValueError(f"duration record {doc!r}: work_s must be in (0, {MAX_RECORD_S:g}] and startup_s "
                         f"in [0, {MAX_RECORD_S:g}]")
    return rec
