"""Run times of families never seen, from their *siblings*: the same job name with a different size.

Jobs are named after what they run, and the numbers in a name are usually its size: the input
("nw-16384", "backprop-64M"), the model ("qwen2.5-7b-gen"), the batch ("resnet50-cifar-bs256").
Two families are siblings when their names differ in exactly one number ("nw-16384" and
"nw-32768"; not "srad_v1-11000" and "srad_v2-16384", which differ in two). Once a sibling's run
time is learned, a family with no completed run yet is expected to take

    t = t_sibling * (size / size_sibling) ** e

with the sibling nearest in size, where `e` is fitted (least squares on log-log) over the
group's learned members once two of different sizes are known, and before that a prior per job
class (`PRIOR_EXPONENT`): 1 for scientific programs, whose run time grows at least with the
problem size (Rodinia's kernels are linear to quadratic in it), 0 for the others (a batch size
or a model size moves an ML or LLM job's time both ways and far less: the sibling's own time is
the best guess). This is how LPT ranks a new family (`ranks.py`) instead of at the mean of
every learned family: a long program's large input no longer waits behind short jobs until its
first run ends.

A number taking more than `MAX_GROUP` values among the families seen is a counter or an id
("j0" ... "j99999"), not a size: that group is not used (checked as families arrive, so the
cost stays O(numbers in the name) per new family), and the jobs it had ranked are re-ranked.
Below that, a run or seed index in a name ("job1", "job30") reads as a size too: a known
limit. So do versions ("v2.0.1") and an exponent ("1e5" is the numbers 1 and 5).
"""

from __future__ import annotations

import math
import re

_NUM = re.compile(r"(\d+(?:\.\d+)?)")  # captured: split() returns text and numbers in turn

#: More distinct values than this in one position of otherwise equal names: a counter, not a size.
MAX_GROUP = 32
#: Before a group has two learned sizes: run time ~ size ** this, by job class (module doc).
PRIOR_EXPONENT = {"scientific": 1.0}
#: A fitted exponent is kept within these bounds (two noisy points can say anything).
EXPONENT_RANGE = (-1.0, 3.0)
#: A learned family's siblings are re-ranked when its time moved by more than this share (a
#: re-rank re-adds their queued jobs: on every completed run it would cost O(runs x queue)).
RERANK_MOVE = 0.1

GroupKey = tuple[tuple[str, ...], int, tuple[str, ...]]


def groups_of(family: str) -> list[tuple[GroupKey, float]]:
    """(group key, size) for each positive number in `family`'s name: the key is the name's
    text, the number's position and the other numbers, so siblings share it."""
    parts = _NUM.split(family)
    if len(parts) == 1:
        return []
    text, nums = tuple(parts[0::2]), parts[1::2]
    out = []
    for i, x in enumerate(nums):
        v = float(x)
        if 0 < v < math.inf:  # a 400-digit number is no size
            out.append(((text, i, tuple(nums[:i] + nums[i + 1:])), v))
    return out


class _Group:
    """The families seen in one group, and the learned ones: family -> (log size, 1-slice s)."""

    __slots__ = ("seen", "known")

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}  # in arrival order: a set's order moves with the hash seed
        self.known: dict[str, tuple[float, float]] = {}

    @property
    def counter(self) -> bool:
        """More values than a size would take: a counter or an id (module doc)."""
        return len(self.seen) > MAX_GROUP

    def exponent(self, prior: float) -> float:
        """The least-squares slope of log time on log size over the learned members, else `prior`."""
        pts = list(self.known.values())
        xs = [x for x, _ in pts]
        if len(pts) < 2 or min(xs) == max(xs):
            return prior
        ys = [math.log(t) for _, t in pts]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        e = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        return min(max(e, EXPONENT_RANGE[0]), EXPONENT_RANGE[1])

    def nearest(self, log_v: float) -> tuple[float, float]:
        """(log size, time) of the learned member nearest in log size (at most `MAX_GROUP`)."""
        return min(self.known.values(), key=lambda xt: abs(xt[0] - log_v))

    def unknown(self) -> list[str]:
        """The families seen in the group with no learned time."""
        return [f for f in self.seen if f not in self.known]


class Siblings:
    """Families by sibling group: `seen` as they arrive, `learned` as their run times are."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, _Group] = {}
        self._of: dict[str, list[tuple[GroupKey, float]]] = {}  # family -> (group, log size)
        self._class: dict[str, str] = {}

    def seen(self, family: str, job_class: str) -> list[str]:
        """A job of `family` (of class `job_class`) arrived. Returns the families whose estimate
        this withdrew (a group that turned out to be a counter): their jobs need a re-rank."""
        if family in self._of:
            return []
        self._class[family] = job_class
        keys, dropped = [], []
        for key, v in groups_of(family):
            g = self._groups.get(key)
            if g is None:
                g = self._groups[key] = _Group()
            if not g.counter:
                g.seen[family] = None
                if g.counter and g.known:  # just became one: its estimates no longer hold
                    dropped += g.unknown()
            keys.append((key, math.log(v)))
        self._of[family] = keys
        return dropped

    def learned(self, family: str, time_s: float) -> list[str]:
        """`family`'s 1-slice run time is `time_s` now: record it, and return the sibling
        families not learned yet whose estimate moved (to re-rank their jobs): when the family
        is new to its group or its time moved by more than `RERANK_MOVE`, not on every run."""
        out: list[str] = []
        if not time_s > 0:
            return out
        for key, log_v in self._of.get(family, ()):
            g = self._groups[key]
            if g.counter:
                continue
            old = g.known.get(family)
            g.known[family] = (log_v, time_s)
            if old is None or abs(time_s - old[1]) > RERANK_MOVE * old[1]:
                out += g.unknown()
        return out

    def estimate_s(self, family: str) -> float | None:
        """`family`'s expected 1-slice run time from its nearest learned sibling, or None."""
        best: tuple[float, float] | None = None  # (distance in log size, estimate)
        prior = PRIOR_EXPONENT.get(self._class.get(family, ""), 0.0)
        for key, log_v in self._of.get(family, ()):
            g = self._groups[key]
            if g.counter or not g.known:
                continue
            log_s, t = g.nearest(log_v)
            d = abs(log_v - log_s)
            if best is None or d < best[0]:
                best = (d, t * math.exp((log_v - log_s) * g.exponent(prior)))
        return None if best is None else best[1]
