"""Scheduling policies: the baselines users compare against (`serial`, `static`, `greedy`) and
migsched's own (`migm`), each in its own module and registered by name (`registry.py`)."""

from migsched.policies.base import Policy
from migsched.policies.registry import create_policy, get_policy_class, policy_names, register

__all__ = ["Policy", "create_policy", "get_policy_class", "policy_names", "register"]
