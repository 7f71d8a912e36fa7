"""The bounds of every quantity migsched reads from a user, as named constants.

Each bound is generous — far above any real batch — but finite, so that no input can make a run
hang, print 300-digit figures or grow memory without end. They are documented, with the reasons,
in docs/job-file.md ("Limits"); an input beyond a bound is rejected (never clamped) with a message
naming the field, the value and the valid range.

`check_range` is the one check for numbers read outside pydantic (CLI options, mix parameters):
it rejects NaN, infinities, booleans and values outside [lo, hi].
"""

from __future__ import annotations

import math

from migsched.errors import InputLimitError

MAX_TIME_S = 366 * 86_400.0
"""Run time, startup and arrival times: a year of seconds (31,622,400 s). The longest HPC jobs
run for days to weeks; a year is far beyond them, yet a run of this length still simulates in
bounded time and its figures print in at most 8 digits."""

MAX_JOBS = 100_000
"""Jobs in one batch after `count` is expanded (checked before expanding). The paper's batches
hold 16-128 jobs; 100,000 is a site's month of jobs. Loading costs about 18 µs and 0.4 KiB per
job once parsed (measured: 200,000 jobs from `count:` in 3.7 s and 85 MB), so a batch at the
bound expands in ~2 s and ~50 MB; a million-job batch would take 20 s and 0.5 GB before the first
simulated second. Parsing YAML costs more: ~0.5 ms per generated entry with libyaml."""

MAX_MIX_JOBS = 10_000
"""`mix --jobs`: PyYAML writes a generated job at about 1 ms, so 10,000 jobs take ~10 s to write
(100,000 took 94 s). Larger batches are written with `count:` or generated in parts."""

MAX_GPUS = 10_000
"""`--gpus` of `simulate` and `run`: more GPUs than the largest MIG clusters of 2026 hold in one
scheduling domain. The simulator's cost grows with GPUs x events; above this it is minutes even
for a small batch."""

MAX_DEMO_GPUS = 64
"""`demo --gpus`: the demo makes 32 jobs per GPU and runs every policy, so 64 GPUs (2,048 jobs)
is already a long demo."""

MAX_MEMORY_GIB = 4096.0
"""Memory figures of a job (`hint_gib`, `peak_gib`, `start_gib`, memory points): 4 TiB, twenty
times the largest catalogued GPU. A job above every GPU is allowed (it fits nowhere, which
`migsched validate` reports); a figure of 1e300 GiB is a typo."""

MAX_MEMORY_POINTS = 10_000
"""Points of one job's `memory:` curve. A curve is read at every memory sample; a measured trace
resampled to 10,000 points is finer than any sampling period."""

MAX_NAME_CHARS = 256
"""`name` and `family`: they become file names (logs), table cells and history keys."""

MAX_TEXT_CHARS = 131_072
"""`command`, `cwd` and each `env` value: Linux's limit on one argument string (MAX_ARG_STRLEN,
32 pages of 4 KiB)."""

MAX_ENV_VARS = 4_096
"""Entries of one job's `env:`."""

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Job files and task files: 64 MiB, a hundred times a 100,000-job file written by `mix`."""

MAX_DOCUMENT_NODES = 5_000_000
"""Nodes of a parsed job file with YAML aliases expanded: a 100,000-job file has about 2 million.
Without it, a few lines of nested aliases ("billion laughs") expand to 10^9 values."""

MAX_DESCRIBE_COUNT = 10**9
"""Integer `describe:` fields (batch size, layers, heads, head dim, tokens) and `params_m`
(millions of parameters, so up to 10^15 parameters): keeps the analytic estimator's products
finite floats."""

MAX_LAYOUT_ITEMS = 64
"""Instances in one layout string (`check-layout`, `--layout`): no MIG GPU holds more than 7, so
64 leaves room for any mistake worth reporting while keeping the pairwise overlap check small."""

MAX_SOLVER_S = 86_400.0
"""`--optimal-s`, the solver time limit of the clairvoyant `optimal` reference: a day."""

MIN_SOLVER_S = 0.1
"""The shortest useful `--optimal-s`: CP-SAT needs some time to find any solution."""

MAX_MIX_ARRIVAL_MEAN_S = MAX_TIME_S
"""`mix online --arrival-mean-s`: at most a year between jobs on average; the generated arrivals
must also stay within `MAX_TIME_S`."""

MAX_SAMPLE_S = 3_600.0
"""`run --sample-s`, the memory-sample period: an hour between samples."""

MAX_MIB_PER_GIB = 1024.0
"""`run --mib-per-gib`, RAM per GiB of emulated instance: 1024 is the whole GiB."""

MAX_SEED = 2**63 - 1
"""`--seed`: a signed 64-bit integer, what every random generator migsched uses accepts."""


def check_range(what: str, value: float, lo: float, hi: float, unit: str = "") -> float:
    """`value` as a float if it is a finite number in [lo, hi]; else raise naming `what`.

    Args:
        what: the field or option, e.g. "--optimal-s" or "arrival_mean_s".
        value: the number read.
        lo, hi: the valid range, both included.
        unit: appended to the numbers in the message, e.g. " s".

    Raises:
        InputLimitError: `value` is not a number, is NaN or infinite, or lies outside [lo, hi];
            the message names `what`, the value and the range.
    """
    span = f"{fmt(lo)}..{fmt(hi)}{unit}"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputLimitError(f"{what} must be a number in {span}, got {shown}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputLimitError(f"{what} must be a finite number in {span}, got {shown}")
    if not lo <= value <= hi:  # compared before float(): float(10**400) would raise
        raise InputLimitError(f"{what} must be in {span}, got {shown}")
    return float(value)


def fmt(x: float) -> str:
    """A bound as people write it: 31,622,400 and 0.001, not 3.16224e+07."""
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
