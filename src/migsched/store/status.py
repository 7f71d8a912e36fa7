"""`migsched status --state FILE`: what a run store says, as a JSON-safe dict or a rich table.

Both read one consistent snapshot, so they may run while the run writes the store. The table
fits 100 columns: one line of counts, one line per GPU with its instances, restarts by cause,
then the running jobs and the failed ones (long lists cut, with a count of what was left out).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from migsched.metrics import retried_outcomes
from migsched.store.db import RunStore
from migsched.store.rows import JOB_STATES, InstanceRow, JobRow

#: The meta key that holds how many jobs the run's job file names (set at the start and on each
#: resume): the store holds a job from its arrival on, so the rest have not arrived yet.
JOBS_TOTAL_KEY = "jobs_total"
RECENT_EVENTS = 20
SHOWN_ROWS = 20  # running or failed jobs listed at most, each


def restarts(jobs: list[JobRow]) -> dict[str, int]:
    """Attempts that ended and were retried, by cause ('oom', 'killed:<reason>', 'failed').

    Every non-'ok' outcome counts except the last one of a failed job (that one was not retried):
    `metrics.retried_outcomes`, the rule the live view counts by too.
    """
    counter = Counter(o for job in jobs for o in retried_outcomes(job.outcomes, job.state == "failed"))
    return dict(sorted(counter.items()))


def _by_gpu(instances: list[InstanceRow]) -> dict[int, list[InstanceRow]]:
    out: dict[int, list[InstanceRow]] = {}
    for inst in instances:
        out.setdefault(inst.gpu, []).append(inst)
    return out


def not_arrived(meta: dict[str, Any], counts: dict[str, int]) -> int:
    """Jobs of the run's job file that have not arrived yet (their `arrival_s` is still ahead):
    0 for a store written before the count was kept."""
    total = meta.get(JOBS_TOTAL_KEY)
    if not isinstance(total, int) or isinstance(total, bool):
        return 0
    return max(0, total - sum(counts.values()))


def status_dict(store: RunStore, recent: int = RECENT_EVENTS) -> dict[str, Any]:
    """Everything `status` shows, as JSON types: meta, counts, restarts, jobs, instances, events."""
    with store.snapshot():
        meta, counts, jobs = store.meta(), store.counts(), store.jobs()
        instances, events = store.instances(), store.recent(recent)
    return {
        "meta": meta,
        "counts": counts,
        "not_arrived": not_arrived(meta, counts),
        "restarts": restarts(jobs),
        "jobs": [{"job_id": j.job_id, "state": j.state, "attempts": j.attempt, "outcomes": list(j.outcomes),
                  "gpu": j.gpu, "start": j.start, "profile": j.profile, "failure": j.failure} for j in jobs],
        "instances": [{"gpu": gpu, "instances": [{"start": i.start, "profile": i.profile, "state": i.state}
                                                 for i in rows]}
                      for gpu, rows in sorted(_by_gpu(instances).items())],
        "recent": [{"seq": e.seq, "time_s": e.time_s, "kind": e.kind, "job_id": e.job_id, "detail": e.detail}
                   for e in events],
    }


def _cut(rows: list[JobRow], table: Table, shown: int) -> list[JobRow]:
    if len(rows) > shown:
        table.caption = f"... and {len(rows) - shown} more"
    return rows[:shown]


def _slot(job: JobRow) -> str:
    return "-" if job.gpu is None else f"gpu{job.gpu} {job.profile}@{job.start}"


def render_status(store: RunStore, shown: int = SHOWN_ROWS) -> RenderableType:
    """A compact rich rendering of the store (fits 100 columns; print it with a rich Console)."""
    with store.snapshot():
        meta, counts, jobs, instances = store.meta(), store.counts(), store.jobs(), store.instances()
        events = store.recent(5)
    parts: list[RenderableType] = []
    settings = ", ".join(f"{k.removesuffix('_unix')} {_setting(k, v)}" for k, v in meta.items()  # scalars; dicts in --json
                         if k not in ("schema_version", JOBS_TOTAL_KEY) and isinstance(v, (str, int, float, bool)))
    if settings:
        parts.append(Text(settings, overflow="fold"))
    summary = Table.grid(padding=(0, 2))
    later = not_arrived(meta, counts)
    cells = [Text(f"{s} {counts[s]}", style="bold" if s in ("running", "failed") else "") for s in JOB_STATES]
    if later:
        cells.append(Text(f"not arrived {later}"))
    summary.add_row(*cells, Text(f"total {sum(counts.values()) + later}"))
    parts.append(summary)
    gpus = Table.grid(padding=(0, 1))
    for gpu, rows in sorted(_by_gpu(instances).items()):
        gpus.add_row(f"gpu{gpu}", Text(", ".join(f"{i.profile}@{i.start}" + ("" if i.state == "up" else f" ({i.state})")
                                                 for i in rows), overflow="fold"))
    if not instances:
        gpus.add_row("instances", "none")
    parts.append(gpus)
    causes = restarts(jobs)
    parts.append(Text("restarts: " + (", ".join(f"{c} {n}" for c, n in causes.items()) or "none"), overflow="fold"))

    running = [j for j in jobs if j.state in ("launching", "running")]
    if running:
        table = Table(title="running", title_justify="left", expand=False, pad_edge=False, box=box.SIMPLE_HEAD)
        for col in ("job", "state", "attempt", "instance", "pid", "since_s"):
            table.add_column(col, overflow="fold")
        for j in _cut(running, table, shown):
            since = j.launched_s if j.launched_s is not None else j.begun_s
            table.add_row(j.job_id, j.state, str(j.attempt), _slot(j), "-" if j.pid is None else str(j.pid),
                          "-" if since is None else f"{since:.1f}")
        parts.append(table)
    failed = [j for j in jobs if j.state == "failed"]
    if failed:
        table = Table(title="failed", title_justify="left", expand=False, pad_edge=False, box=box.SIMPLE_HEAD)
        table.add_column("job", overflow="fold")
        table.add_column("attempts")
        table.add_column("outcomes", overflow="fold", max_width=24)
        table.add_column("failure", overflow="fold", max_width=50)
        for j in _cut(failed, table, shown):
            table.add_row(j.job_id, str(j.attempt), ", ".join(j.outcomes) or "-", j.failure or "-")
        parts.append(table)
    for e in events:
        who = f" {e.job_id}" if e.job_id else ""
        parts.append(Text(f"{e.time_s:10.1f}s {e.kind}{who} {e.detail}".rstrip(), overflow="fold", style="dim"))
    return Group(*parts)


def _setting(key: str, value: object) -> str:
    """A meta value for people: a Unix time as a local date and time, the rest as stored."""
    if key.endswith("_unix") and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):  # a corrupt store: show what it holds
            pass
    return str(value)
