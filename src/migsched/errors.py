"""The migsched exception tree.

Every error a user can cause names the field, the bad value and the valid choices, so the CLI can
print it as it is and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

# Plurals that adding "s" gets wrong, for the words migsched's messages count.
_IRREGULAR = {"policy": "policies", "family": "families", "class": "classes", "mix": "mixes",
              "index": "indices", "process": "processes", "entry": "entries", "batch": "batches"}


def plural(word: str, n: int | None = None) -> str:
    """`word` in the plural, or with a count, in the form that count takes.

    Only the last word of a phrase changes: plural("job class") is "job classes";
    plural("job", 1) is "1 job", plural("job", 3) is "3 jobs".
    """
    if n == 1:
        return f"{n} {word}"
    head, sep, last = word.rpartition(" ")
    if last in _IRREGULAR:
        many = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        many = last + "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        many = last[:-1] + "ies"
    else:
        many = last + "s"
    text = head + sep + many
    return text if n is None else f"{n} {text}"


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
        super().__init__(f"unknown {kind} {value!r}; valid {plural(kind)}: {', '.join(self.valid)}")


class InvalidLayoutError(MigschedError, ValueError):
    """A GPU-instance layout that breaks a MIG rule (overlap, count, compute, placement)."""


class PlacementError(InvalidLayoutError):
    """A profile cannot be placed (or released, fused, split) where it was asked for."""


class PlanError(MigschedError):
    """No safe reconfiguration plan exists (for example a busy instance would be destroyed)."""


class JobFileError(MigschedError, ValueError):
    """A job file that does not validate; the message names job, field, value and what is allowed."""


class InputLimitError(MigschedError, ValueError):
    """A number beyond its documented bound (`migsched.limits`), NaN or infinite; the message
    names the field or option, the value and the valid range."""


class SchedulingError(MigschedError):
    """A policy asked the scheduler core for an action that breaks its contract."""
