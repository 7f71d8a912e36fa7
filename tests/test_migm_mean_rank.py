"""The rank unknown families take (`LptRanks._unknown_rank`): the mean 1-slice time of the
learned families, kept as a running exact sum (`ranks.ExactSum`) instead of a sum over every
family on each change (O(families) per completed run: 36 % of a 50,000-job online run)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from migsched.policies.migm.ranks import ExactSum
from migsched.policies.registry import create_policy

_VALUES = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), _VALUES), max_size=60))
def test_the_running_sum_equals_the_exact_sum_of_the_current_values(updates):
    """Values set, then overwritten (the old one taken back): the running sum is always the
    correctly rounded sum of what is there now, whatever the order."""
    s, vals = ExactSum(), {}
    for key, v in updates:
        if key in vals:
            s.add(-vals[key])
        vals[key] = v
        s.add(v)
        assert s.value() == math.fsum(vals.values())


def test_unknown_families_rank_at_minus_the_mean_of_the_learned_ones_after_relearning():
    pol = create_policy("migm")
    assert pol._unknown_rank() == 0.0  # nothing learned: FIFO
    for fam, t1 in (("a", 100.0), ("b", 300.0), ("a", 700.0), ("c", 0.1)):
        pol._fam_learned(fam, t1)
        pol._known_runs += 1  # what Learning._known does alongside
    assert pol._fam_val == {"a": 700.0, "b": 300.0, "c": 0.1}
    assert pol._unknown_rank() == -math.fsum([700.0, 300.0, 0.1]) / 3
