"""Clocks: the one notion of "now" the core, the policies and the backends share.

The simulator owns a `VirtualClock` that jumps from event to event; real backends use a
`WallClock` that counts seconds since the run began (kept across `--resume`, so a resumed run's
times continue where the first session's stopped). The core never reads the system time itself.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the run began."""

    def now_s(self) -> float:
        """The current run time in seconds."""


class VirtualClock:
    """Simulated time: moves only when the simulator advances it, never backwards."""

    __slots__ = ("_now_s",)

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def advance_to(self, t_s: float) -> None:
        """Move time forward to `t_s` (a smaller value is ignored: time never runs backwards)."""
        if t_s > self._now_s:
            self._now_s = t_s


class WallClock:
    """Wall time since `origin_unix` (default: now), read from the monotonic clock.

    `origin_unix` is the wall time the run began; a resumed run passes the stored one so that run
    times continue. Monotonic time is used between readings, so a system clock step does not
    make run time jump.
    """

    __slots__ = ("origin_unix", "_offset_s", "_mono0")

    def __init__(self, origin_unix: float | None = None) -> None:
        now_unix = time.time()
        self.origin_unix = now_unix if origin_unix is None else origin_unix
        self._offset_s = max(0.0, now_unix - self.origin_unix)
        self._mono0 = time.monotonic()

    def now_s(self) -> float:
        return self._offset_s + (time.monotonic() - self._mono0)
