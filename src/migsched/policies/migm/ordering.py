"""Which queued job next: the queue bucketed by the profile each job needs, ranked, kept in sync.

The core's queue is one FIFO list; a policy that rescans it after every event costs O(queue) per
decision, too slow for 100,000 jobs. `QueueIndex` keeps, per *tier* (the tightest profile a job
needs, e.g. "1g.10gb"), two heaps:

* **ranked**: jobs whose rank is known when they are added (`rank(job)` returns a number; lower
  first, then FIFO), e.g. the learned run time of the job's family for LPT;
* **unranked**: jobs whose rank is not known yet (`rank(job)` returns None), FIFO among
  themselves, all sharing the rank `unranked_rank()` evaluated when the head is looked at (LPT:
  the mean over the families learned so far).

When something is learned about a family (`learned(family)`), only its queued members are re-added
(unranked ones to the ranked heap, ranked ones at their new rank): O(members · log queue), not a
re-rank of the whole queue. `queued_by_family` holds each family's queued members (migm watches
a family for censored ranks only while it has some). The
index is fed from the core's `Changes` (`absorb`): arrivals, ended attempts, requeued launches.

Entries are validated lazily: a head that is no longer queued, whose need moved to another tier
(a new estimate after a restart) or that was re-added since (a token per job) is dropped or moved
when it is looked at.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator

from migsched.core.state import ClusterView, JobState, JobView

TierOf = Callable[[JobView], str | None]
_ABSENT = "<absent>"


class QueueIndex:
    """Queued jobs by tier and rank, plus the jobs this policy launched that are still running.

    Args:
        tier_of: the tier a job needs now (a profile name), or None when nothing can hold it.
        on_left: called with each launched job once it has left the running set (ended or requeued).
        rank: a job's rank (lower first; fixed when the job is added), None for "not known yet";
            without it every job ranks 0 (FIFO within a tier).
        unranked_rank: the shared rank of the not-yet-ranked jobs, read at every head look-up.
    """

    def __init__(self, tier_of: TierOf, on_left: Callable[[JobView], None],
                 rank: Callable[[JobView], float | None] | None = None,
                 unranked_rank: Callable[[], float] | None = None) -> None:
        self.tier_of = tier_of
        self.rank = rank
        self.unranked_rank = unranked_rank or (lambda: 0.0)
        self.on_left = on_left
        self.buckets: dict[str, list[tuple[float, int, int, JobView]]] = {}   # (rank, seq, token, job)
        self.unranked: dict[str, list[tuple[int, int, JobView]]] = {}         # (seq, token, job)
        # family -> its queued members the index holds (job id -> job), in the order added
        self.queued_by_family: dict[str, dict[str, JobView]] = {}
        self.member: dict[str, str | None] = {}  # queued job id -> its tier
        self.token: dict[str, int] = {}          # queued job id -> token of its live heap entry
        self.counts: dict[str, int] = {}
        self.running: dict[str, JobView] = {}
        self._tokens = itertools.count()

    # ---- sync -----------------------------------------------------------------------------
    def absorb(self, arrived: Iterable[JobView], ended: Iterable[JobView], requeued: Iterable[JobView]) -> None:
        """Take in what the core said changed: arrivals, ended attempts, requeued launches."""
        for job in arrived:
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
        """Put a queued job into the heap of its current tier (ranked or not yet)."""
        tier = self.tier_of(job)
        old = self.member.get(job.job_id, _ABSENT)
        if old != _ABSENT:
            if old == tier:
                return
            self._uncount(old)
        else:
            self.queued_by_family.setdefault(job.family, {})[job.job_id] = job
        self._push(job, tier)

    def _push(self, job: JobView, tier: str | None) -> None:
        self.member[job.job_id] = tier
        if tier is not None:
            self.counts[tier] = self.counts.get(tier, 0) + 1
        tok = next(self._tokens)
        self.token[job.job_id] = tok
        r = self.rank(job) if self.rank is not None else 0.0
        if r is None:
            heapq.heappush(self.unranked.setdefault(tier or "", []), (job.seq, tok, job))
        else:
            heapq.heappush(self.buckets.setdefault(tier or "", []), (r, job.seq, tok, job))

    def learned(self, family: str) -> None:
        """The rank of `family`'s jobs may have changed: re-add its queued members, ranked or
        not (the old heap entries go stale by their token)."""
        for job in list(self.queued_by_family.get(family, {}).values()):
            if job.state is JobState.QUEUED:
                tier = self.member[job.job_id]
                self._uncount(tier)
                self._push(job, tier)

    def launched(self, job: JobView, view: ClusterView, delta: tuple[int, int]) -> None:
        """The policy is returning a launch (`delta` (-1, 1)) or a reject ((-1, 0)) of `job`.

        A launched job is tracked until it leaves the running set (`absorb`).
        """
        tier = self.member.pop(job.job_id, _ABSENT)
        self.token.pop(job.job_id, None)
        if tier != _ABSENT:
            self._left_queue(job)
            self._uncount(tier)
        if delta[1] > 0:
            self.running[job.job_id] = job

    def _left_queue(self, job: JobView) -> None:
        members = self.queued_by_family.get(job.family)
        if members is not None:
            members.pop(job.job_id, None)
            if not members:
                del self.queued_by_family[job.family]

    @property
    def fam_queued(self) -> dict[str, int]:
        """Family -> how many queued members the index holds (a snapshot, for reading)."""
        return {f: len(m) for f, m in self.queued_by_family.items()}

    def _uncount(self, tier: str | None) -> None:
        if tier is not None and tier in self.counts:
            self.counts[tier] -= 1
            if self.counts[tier] <= 0:
                del self.counts[tier]

    # ---- reading --------------------------------------------------------------------------
    def _live(self, job: JobView, tok: int, tier: str) -> bool:
        if self.token.get(job.job_id) != tok:
            return False
        if job.state is not JobState.QUEUED:  # left the queue without this index being told
            self.token.pop(job.job_id, None)
            tier = self.member.pop(job.job_id, _ABSENT)
            if tier != _ABSENT:
                self._left_queue(job)
                self._uncount(tier)
            return False
        return self.member.get(job.job_id, _ABSENT) == (tier or None)

    def head(self, tier: str) -> JobView | None:
        """The first queued job of `tier` by rank, then FIFO ("" holds jobs nothing can hold)."""
        ranked = self.buckets.get(tier)
        unranked = self.unranked.get(tier)
        while True:
            while ranked and not self._live(ranked[0][3], ranked[0][2], tier):
                heapq.heappop(ranked)
            while unranked and not self._live(unranked[0][2], unranked[0][1], tier):
                heapq.heappop(unranked)
            if not ranked and not unranked:
                return None
            if not unranked or (ranked and (ranked[0][0], ranked[0][1]) <= (self.unranked_rank(), unranked[0][0])):
                job = ranked[0][3]  # type: ignore[index]
            else:
                job = unranked[0][2]  # type: ignore[index]
            now = self.tier_of(job)  # estimates can change (restarts, history of its family)
            if now != (tier or None):
                self._uncount(self.member.get(job.job_id))
                self._push(job, now)  # the old entry's token is stale now
                continue
            return job

    def heads(self) -> Iterator[tuple[str, JobView]]:
        """(tier, head job) for every non-empty tier, in no particular order."""
        for tier in list(dict.fromkeys([*self.buckets, *self.unranked])):
            job = self.head(tier)
            if job is not None:
                yield tier, job

    def queued(self) -> int:
        """Queued jobs the index knows of."""
        return len(self.member)
