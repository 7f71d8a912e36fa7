"""A small local store of how past runs of each job used memory, so a second batch starts better.

Records are keyed by job name, plus the command when one is given (the same name run with a
different command is a different workload). Each record keeps the profile it ran on, the peak
seen, the memory at its first sample and whether it ended ok. The file is JSON, written atomically
(temp file + `os.replace`), and a missing or corrupt file starts an empty store with a warning:
history is an optimisation, never a reason to fail. `HistoryStore.in_memory()` keeps everything in
the process (tests, simulations).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

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
        self, path: str | Path | None = None, *, max_runs: int = 20, autosave: bool = True
    ) -> None:
        """Open the store at `path` (None: in-memory only); keep at most `max_runs` per key."""
        self.path = Path(path) if path is not None else None
        self.max_runs = max_runs
        self.autosave = autosave
        self._runs: dict[str, list[RunRecord]] = self._load()

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

    # ---- updates ----------------------------------------------------------------------------
    def record(self, name: str, run: RunRecord, command: str | None = None) -> None:
        """Add a finished run (and save, when `autosave`)."""
        runs = self._runs.setdefault(history_key(name, command), [])
        runs.append(run)
        del runs[: max(0, len(runs) - self.max_runs)]
        if self.autosave:
            self.save()

    def save(self) -> None:
        """Write the store atomically; a no-op in memory. I/O errors warn rather than raise."""
        if self.path is None:
            return
        data = {
            "version": FORMAT_VERSION,
            "jobs": {k: [asdict(r) for r in v] for k, v in self._runs.items()},
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
            warnings.warn(f"migsched: could not save memory history to {self.path}: {e}", stacklevel=2)

    def _load(self) -> dict[str, list[RunRecord]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            return {
                str(k): [
                    RunRecord(
                        profile=str(r["profile"]),
                        peak_mib=float(r["peak_mib"]),
                        ok=bool(r["ok"]),
                        start_mib=None if r.get("start_mib") is None else float(r["start_mib"]),
                    )
                    for r in v
                ]
                for k, v in data["jobs"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(
                f"migsched: ignoring unreadable memory history {self.path} ({e}); starting empty",
                stacklevel=3,
            )
            return {}
