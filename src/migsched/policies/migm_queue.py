"""The queue as `migm` sees it: queued jobs bucketed by the profile they need, kept in sync cheaply.

The core's queue is one FIFO list; a policy that rescans it after every event costs O(queue) per
decision, too slow for 100,000 jobs. `QueueIndex` keeps one heap per *tier* (the tightest
profile a job needs, e.g. "1g.10gb") ordered by FIFO sequence, and finds out what changed since
the last call without rescanning:

* new arrivals are the queue's tail with sequence numbers above any seen before;
* jobs that left the running set (a C-level set difference over running ids) either ended or
  came back to the queue after an out-of-memory or a kill (then they are re-bucketed).

Entries are validated lazily: a bucket head that is no longer queued, or whose need moved to
another tier (a new estimate after a restart), is dropped or moved when it is looked at.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from migsched.core.state import ClusterView, JobState, JobView

TierOf = Callable[[JobView], str | None]


class QueueIndex:
    """Queued jobs by tier, plus the jobs this policy launched that are still running.

    Args:
        tier_of: the tier a job needs now (a profile name), or None when nothing can hold it.
        on_left: called with each launched job once it has left the running set (ended or requeued).
        rank: orders a bucket before FIFO (lower first; fixed when the job is added), or None.
    """

    def __init__(self, tier_of: TierOf, on_left: Callable[[JobView], None],
                 rank: Callable[[JobView], float] | None = None,
                 rank_many: Callable[[list[JobView]], list[float]] | None = None) -> None:
        self.tier_of = tier_of
        self.rank = rank
        self.rank_many = rank_many  # optional: the ranks of many jobs at once (same values as rank)
        self.on_left = on_left
        self.buckets: dict[str, list[tuple[int, JobView]]] = {}
        self.member: dict[str, str | None] = {}  # queued job id -> its tier
        self.counts: dict[str, int] = {}
        self.running: dict[str, JobView] = {}
        self._max_seq = -1
        self._sig: tuple[int, int, int] | None = None

    # ---- sync -----------------------------------------------------------------------------
    def sync(self, view: ClusterView) -> None:
        """Absorb arrivals, requeues and ends since the last call (cheap when nothing changed)."""
        sig = (len(view.jobs), len(view.queue), len(view.running))
        if sig == self._sig:
            return
        q = view.queue
        i = len(q) - 1
        fresh = []
        while i >= 0 and q[i].seq > self._max_seq:
            fresh.append(q[i])
            i -= 1
        for job in reversed(fresh):
            self._max_seq = max(self._max_seq, job.seq)
            self.add(job)
        if len(self.running) != len(view.running) or fresh:
            for jid in self.running.keys() - view.running.keys():
                job = self.running.pop(jid)
                self.on_left(job)
                if job.state is JobState.QUEUED:
                    self.add(job)
        self._sig = (len(view.jobs), len(view.queue), len(view.running))

    def absorb(self, arrived, ended, requeued) -> None:
        """Take in what the core said changed: arrivals, ended attempts, requeued launches."""
        for job in arrived:
            self._max_seq = max(self._max_seq, job.seq)
            self.add(job)
        for job in ended:
            if self.running.pop(job.job_id, None) is not None:
                self.on_left(job)
            if job.state is JobState.QUEUED:
                self.add(job)
        for job in requeued:
            self.running.pop(job.job_id, None)
            if job.state is JobState.QUEUED:
                self.add(job)

    def add(self, job: JobView) -> None:
        """Put a queued job into the bucket of its current tier."""
        tier = self.tier_of(job)
        old = self.member.get(job.job_id, "<absent>")
        if old != "<absent>":
            if old == tier:
                return
            self._uncount(old)
        self.member[job.job_id] = tier
        if tier is not None:
            self.counts[tier] = self.counts.get(tier, 0) + 1
        r = self.rank(job) if self.rank is not None else 0.0
        heapq.heappush(self.buckets.setdefault(tier or "", []), (r, job.seq, job))

    def rerank(self) -> None:
        """Recompute every queued job's rank (the rank function learned something)."""
        if self.rank is None:
            return
        for tier, heap in self.buckets.items():
            if self.rank_many is not None:
                ranks = self.rank_many([j for _r, _s, j in heap])
                fresh = [(r, seq, j) for r, (_r, seq, j) in zip(ranks, heap)]
            else:
                fresh = [(self.rank(j), seq, j) for _r, seq, j in heap]
            heapq.heapify(fresh)
            self.buckets[tier] = fresh

    def launched(self, job: JobView, view: ClusterView, delta: tuple[int, int]) -> None:
        """The policy is returning a launch (`delta` (-1, 1)) or a reject ((-1, 0)) of `job`.

        The core applies the action after this call, so the expected queue and running sizes
        are the current ones plus `delta`; a launched job is tracked until it leaves running.
        """
        tier = self.member.pop(job.job_id, None)
        self._uncount(tier)
        if delta[1] > 0:
            self.running[job.job_id] = job
        if self._sig is not None:
            self._sig = (len(view.jobs), len(view.queue) + delta[0], len(view.running) + delta[1])

    def _uncount(self, tier: str | None) -> None:
        if tier is not None and tier in self.counts:
            self.counts[tier] -= 1
            if self.counts[tier] <= 0:
                del self.counts[tier]

    # ---- reading --------------------------------------------------------------------------
    def head(self, tier: str) -> JobView | None:
        """The FIFO-first queued job of `tier` ("" holds jobs nothing can hold), or None."""
        heap = self.buckets.get(tier)
        while heap:
            _r, _seq, job = heap[0]
            cur = self.member.get(job.job_id, "<absent>")
            if job.state is not JobState.QUEUED or cur != (tier or None):
                heapq.heappop(heap)
                if job.state is not JobState.QUEUED and cur != "<absent>":
                    self.member.pop(job.job_id, None)
                    self._uncount(cur)
                continue
            now = self.tier_of(job)  # estimates can change (restarts, history of its name)
            if now != cur:
                heapq.heappop(heap)
                self.member.pop(job.job_id, None)
                self._uncount(cur)
                self.add(job)
                continue
            return job
        return None

    def heads(self) -> Iterator[tuple[str, JobView]]:
        """(tier, head job) for every non-empty bucket, in no particular order."""
        for tier in list(self.buckets):
            job = self.head(tier)
            if job is not None:
                yield tier, job

    def queued(self) -> int:
        """Queued jobs the index knows of."""
        return len(self.member)
