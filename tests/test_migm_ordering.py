"""`QueueIndex` (policies/migm/ordering.py): re-ranking a family moves its queued members, ranked
or not, and the per-family count of queued members follows adds, launches and silent exits.

migm's censored LPT ranks (`MigmPolicy._floors`) rely on both: a family's rank can be renewed
after its members were already ranked, and a family is watched only while it has queued members.
"""

from __future__ import annotations

from migsched.core.state import JobState, JobView
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.migm.ordering import QueueIndex


def _job(job_id: str, family: str, seq: int) -> JobView:
    return JobView(spec=JobSpec(job_id, job_id, JobClass.SCIENTIFIC, family=family), seq=seq)


def _index(ranks: dict[str, float]) -> QueueIndex:
    return QueueIndex(lambda j: "1g", lambda j: None, rank=lambda j: ranks.get(j.family))


def test_learned_re_ranks_members_that_were_already_ranked():
    ranks = {"long": -10.0}
    idx = _index(ranks)
    a, b, c = _job("a", "other", 0), _job("b", "long", 1), _job("c", "other2", 2)
    ranks["other"], ranks["other2"] = -50.0, -20.0
    for j in (a, b, c):
        idx.add(j)
    assert idx.head("1g") is a  # -50 first
    ranks["long"] = -100.0  # a longer floor for "long", whose member was ranked at -10 already
    idx.learned("long")
    assert idx.head("1g") is b
    assert idx.counts == {"1g": 3}  # re-ranked, not counted twice


def test_unranked_members_move_to_their_rank_once_learned():
    ranks: dict[str, float] = {}
    idx = _index(ranks)
    a, b = _job("a", "x", 0), _job("b", "y", 1)
    idx.add(a)
    idx.add(b)
    assert idx.head("1g") is a  # both unranked: FIFO at the shared rank 0
    ranks["y"] = -5.0
    idx.learned("y")
    assert idx.head("1g") is b


class _View:
    pass


def test_family_counts_follow_adds_launches_and_silent_exits():
    idx = _index({})
    a, b, c = _job("a", "f", 0), _job("b", "f", 1), _job("c", "g", 2)
    for j in (a, b, c):
        idx.add(j)
    idx.add(a)  # again, same tier: no change
    assert idx.fam_queued == {"f": 2, "g": 1}
    idx.launched(a, _View(), delta=(-1, 1))
    assert idx.fam_queued == {"f": 1, "g": 1}
    c.state = JobState.DONE  # left the queue without the index being told
    assert idx.head("1g") is b
    idx.launched(b, _View(), delta=(-1, 1))
    assert idx.head("1g") is None
    assert idx.fam_queued == {}
