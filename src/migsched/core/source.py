"""Job sources: where jobs come from, apart from the backend that runs them.

The driver asks its source for the jobs due by now and for the time of the next one, so the same
loop serves a replayed trace (the simulator, arrival times from the job file), a job or task file
of a live run (every job due at its `arrival_s`, 0 unless given), and a live submit queue that
other threads feed. A source hands out `JobSpec`s only: ground truth stays with the simulator.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from migsched.jobs.model import JobSpec


class JobSource(Protocol):
    """Supplies job submissions over run time."""

    def due(self, now_s: float) -> list[JobSpec]:
        """The jobs submitted at or before `now_s` not handed out yet, in submission order."""

    def next_arrival_s(self) -> float | None:
        """When the next known submission is due; None when none is known now."""

    @property
    def exhausted(self) -> bool:
        """True when no job will ever be submitted again."""


class TraceSource:
    """Replays `specs` at their `arrival_s` (stable: ties keep file order)."""

    def __init__(self, specs: Iterable[JobSpec]) -> None:
        ordered = sorted(enumerate(specs), key=lambda ix: (ix[1].arrival_s, ix[0]))
        self._pending: deque[JobSpec] = deque(s for _, s in ordered)

    def due(self, now_s: float) -> list[JobSpec]:
        out = []
        p = self._pending
        while p and p[0].arrival_s <= now_s:
            out.append(p.popleft())
        return out

    def next_arrival_s(self) -> float | None:
        return self._pending[0].arrival_s if self._pending else None

    @property
    def exhausted(self) -> bool:
        return not self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def arrivals_after(self, t_s: float) -> list[float]:
        """The arrival times still to come that are later than `t_s`, soonest first."""
        return [s.arrival_s for s in self._pending if s.arrival_s > t_s]


class SubmitQueue:
    """A live submit queue: `submit()` from any thread, `close()` when nothing more will come.

    Submissions are due at once; the driver polls its backend with a short deadline while the
    queue is open, so a submission is picked up within that time.
    """

    poll_s = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[JobSpec] = deque()
        self._closed = False

    def submit(self, spec: JobSpec) -> None:
        """Add a job; raises RuntimeError once the queue is closed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the submit queue is closed")
            self._items.append(spec)

    def close(self) -> None:
        """No more submissions."""
        with self._lock:
            self._closed = True

    def due(self, now_s: float) -> list[JobSpec]:
        with self._lock:
            out = list(self._items)
            self._items.clear()
        return out

    def next_arrival_s(self) -> float | None:
        with self._lock:
            if self._items:
                return -math.inf
            return None

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._closed and not self._items
