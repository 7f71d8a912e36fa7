"""The core's queue (`core.jobqueue.JobQueue`): FIFO by arrival, removal from anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from migsched.core.apply import dequeue, enqueue
from migsched.core.jobqueue import JobQueue
from migsched.core.state import ClusterView, JobState, JobView
from migsched.jobs.model import JobClass, JobSpec


def _job(seq: int) -> JobView:
    spec = JobSpec(job_id=f"j{seq}", name=f"j{seq}", job_class=JobClass.SCIENTIFIC, hint_gib=1.0)
    return JobView(spec, JobState.QUEUED, seq=seq, arrived_s=float(seq))


def _view() -> ClusterView:
    return ClusterView(now_s=0.0, gpus=[], queue=[], running={}, jobs={})


def test_arrivals_queue_in_order_and_any_one_can_leave():
    v = _view()
    jobs = [_job(i) for i in range(6)]
    for j in jobs:
        enqueue(v, j)
    assert [j.seq for j in v.queue] == list(range(6)) and v.queue[0] is jobs[0] and len(v.queue) == 6
    dequeue(v, jobs[3])  # from the middle (a ranked policy starts any job)
    dequeue(v, jobs[0])  # the head
    assert [j.seq for j in v.queue] == [1, 2, 4, 5]
    assert jobs[3] not in v.queue and jobs[4] in v.queue


def test_a_restarted_job_goes_back_to_its_fifo_place():
    v = _view()
    jobs = [_job(i) for i in range(4)]
    for j in jobs:
        enqueue(v, j)
    dequeue(v, jobs[1])
    enqueue(v, jobs[1])  # restarted: before the later arrivals, not at the end
    assert [j.seq for j in v.queue] == [0, 1, 2, 3]
    assert jobs[1].state is JobState.QUEUED


def test_removing_a_job_that_is_not_queued_is_an_error():
    v = _view()
    enqueue(v, _job(0))
    try:
        dequeue(v, _job(1))
    except ValueError:
        pass
    else:
        raise AssertionError("dequeue of a job that is not queued must fail")


def test_a_view_given_a_list_gets_a_job_queue():
    v = ClusterView(now_s=0.0, gpus=[], queue=[_job(2), _job(1)], running={}, jobs={})
    assert isinstance(v.queue, JobQueue) and [j.seq for j in v.queue] == [1, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=80))
def test_the_queue_matches_a_sorted_list_under_any_adds_and_removes(ops):
    q, ref, jobs = JobQueue(), [], {i: _job(i) for i in range(31)}
    for add, i in ops:
        j = jobs[i]
        if add and j not in ref:
            q.add(j)
            ref.append(j)
        elif not add and j in ref:
            q.remove(j)
            ref.remove(j)
        ref.sort(key=lambda x: x.seq)
        assert list(q) == ref and len(q) == len(ref) and bool(q) == bool(ref)
        assert (q[0] is ref[0]) if ref else True
