"""The migsched exception tree.

Every error a user can cause names the field, the bad value and the valid choices, so the CLI can
print it as it is and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class MigschedError(Exception):
    """Root of every error migsched raises on purpose."""


class UnknownNameError(MigschedError, LookupError):
    """A name (GPU model, profile, policy, workload, ...) that is not known.

    The message lists the valid names.
    """

    def __init__(self, kind: str, value: object, valid: Iterable[str]) -> None:
        self.kind = kind
        self.value = value
        self.valid = sorted(valid, key=str)
        super().__init__(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(self.valid)}")


class InvalidLayoutError(MigschedError, ValueError):
    """A GPU-instance layout that breaks a MIG rule (overlap, count, compute, placement)."""


class PlacementError(InvalidLayoutError):
    """A profile cannot be placed (or released, fused, split) where it was asked for."""


class PlanError(MigschedError):
    """No safe reconfiguration plan exists (for example a busy instance would be destroyed)."""


class JobFileError(MigschedError, ValueError):
    """A job file that does not validate; the message names job, field, value and what is allowed."""


class SchedulingError(MigschedError):
    """A policy asked the scheduler core for an action that breaks its contract."""
