"""The policy contract lives in the core (`migsched.core.policy`); re-exported here for policies."""

from migsched.core.policy import Changes, Decision, Policy

__all__ = ["Changes", "Decision", "Policy"]
