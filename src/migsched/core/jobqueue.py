"""The core's queue of jobs waiting to run, in FIFO order.

FIFO here means by arrival (`JobView.seq`): an arrival goes to the end, a restarted job goes back
to the place its arrival gave it (its FIFO place is kept, docs/architecture.md). Policies read
the queue (`len`, iteration in order, `queue[0]`); only `core.apply` changes it.

Why not a deque: a policy that ranks the queue (migm's LPT order, docs/migm.md step 2) starts
jobs from anywhere in it, and deleting from the middle of a deque costs O(n). With 100,000 jobs
queued that was 2.6 % of a migm run on 1,000 GPUs and grew with the square of the batch
(docs/benchmarks.md, round 12). `sortedcontainers.SortedKeyList` keeps the order by `seq` with
O(log n) insertion and removal anywhere, O(1) access to the head and plain iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, overload

from sortedcontainers import SortedKeyList

if TYPE_CHECKING:
    from migsched.core.state import JobView


def _seq(job: JobView) -> int:
    return job.seq


class JobQueue:
    """Queued jobs ordered by arrival sequence (module doc). Read like a sequence."""

    __slots__ = ("_jobs",)

    def __init__(self, jobs: Iterable[JobView] = ()) -> None:
        self._jobs = SortedKeyList(jobs, key=_seq)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[JobView]:
        return iter(self._jobs)

    @overload
    def __getitem__(self, i: int) -> JobView: ...
    @overload
    def __getitem__(self, i: slice) -> list[JobView]: ...
    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self._jobs[i]

    def __contains__(self, job: object) -> bool:
        seq = getattr(job, "seq", None)
        return seq is not None and any(j is job for j in self._jobs.irange_key(seq, seq))

    def __repr__(self) -> str:
        return f"JobQueue([{', '.join(j.job_id for j in self._jobs)}])"

    def add(self, job: JobView) -> None:
        """Queue `job` at its FIFO place (the end for an arrival, its old place for a restart)."""
        self._jobs.add(job)

    def remove(self, job: JobView) -> None:
        """Take `job` out of the queue, wherever it is. ValueError when it is not queued."""
        self._jobs.remove(job)
