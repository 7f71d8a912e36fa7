"""`migm`: migsched's own policy, split by decision stage (docs/migm.md).

* `ordering`  — which queued job next: tier buckets, FIFO / LPT / class rank (`QueueIndex`);
* `ranks`     — the LPT ranks: learned family run times, and censored floors before any completed;
* `sizing`    — how much memory a job needs (estimate, hints, history, restarts) and which
  profile holds it best (tightest, or larger when compute would otherwise idle);
* `placement` — where that instance comes from: reuse, create, fusion/fission, whole layouts;
* `restarts`  — run-time projections, tail and blocked restarts (moves);
* `memory`    — the estimator/forecaster wiring and the forecast score;
* `policy`    — `MigmPolicy`, the contract: events in, actions out, registered as "migm".
"""

from migsched.policies.migm.policy import MigmPolicy

__all__ = ["MigmPolicy"]
