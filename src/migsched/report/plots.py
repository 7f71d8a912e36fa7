"""PNG pictures of a comparison: a timeline per policy, power over time, a summary bar chart.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas directly, never
through `pyplot`, so importing this module changes no global matplotlib state and works without
a display. What each picture shows is documented in docs/reports.md.

Legends list only what appears in the picture (lost runs with their cause and the GPU·s they
wasted). A job id is written on its bar only when it fits the bar, and only in characters the
font can draw (others become "?"), so labels never overlap and no glyph warnings are printed.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from migsched.compare import Comparison, PolicyFigures
from migsched.errors import MigschedError, plural
from migsched.hardware.catalog import get_model
from migsched.metrics import cause_label, lost_runs_by_cause
from migsched.run import RunResult

#: At most this many GPUs are drawn in a timeline; the title says when more exist.
MAX_TIMELINE_GPUS = 4
DPI = 110

_OUTCOME_COLOURS = {
    "ok": "#2ca02c",          # completed
    "oom": "#d62728",         # ran out of memory
    "killed": "#ff7f0e",      # killed by the policy (early restart, preemption)
    "failed": "#8c564b",      # failed for another reason
    "unfinished": "#9e9e9e",  # still running at the end of the run
}
_OUTCOME_LABELS = {
    "ok": "job run: completed", "oom": "job run: out of memory", "killed": "job run: killed",
    "failed": "job run: failed", "unfinished": "job run: unfinished",
}


def _outcome_key(outcome: str) -> str:
    if outcome.startswith("killed"):
        return "killed"
    return outcome if outcome in _OUTCOME_COLOURS else ("unfinished" if not outcome else "failed")


def time_unit(span_s: float) -> tuple[str, float]:
    """A readable unit for a time axis up to `span_s`: (name, seconds per unit)."""
    if span_s <= 600:
        return "s", 1.0
    if span_s <= 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "policy"


def _memory_slots(result: RunResult) -> int:
    try:
        return get_model(result.gpu).memory_slices
    except MigschedError:  # a model not in the catalogue: infer from what the timeline used
        spans = [*result.timeline.instances, *result.timeline.jobs]
        return max((s.start + s.size for s in spans), default=1)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():  # a glyph the font lacks is already replaced; never flood stderr
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig.savefig(path, dpi=DPI)
    return path


@lru_cache(maxsize=1)
def _font_chars() -> frozenset[int]:
    """Code points the default font can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


def drawable(text: str) -> str:
    """`text` with every character the default font cannot draw replaced by "?"."""
    chars = _font_chars()
    return "".join(c if ord(c) in chars or c.isspace() else "?" for c in text)


#: Width of one label character in axis-width units per point of font size (DejaVu Sans ~0.6 em).
_CHAR_EM = 0.62


def _label_fits(label: str, dur_s: float, end_s: float, fig_width_in: float, fontsize: float) -> bool:
    """Whether `label` fits inside a bar of `dur_s` on an axis `end_s` long (about 90% of the figure)."""
    bar_pt = dur_s / (end_s * 1.01) * fig_width_in * 72.0 * 0.88
    return len(label) * fontsize * _CHAR_EM + 4 <= bar_pt


def timeline_png(row: PolicyFigures, path: str | Path, n_jobs: int | None = None) -> Path:
    """Draw one policy's run per GPU (memory slots as rows, time across) to `path`.

    Instances are outlined boxes over the slots they hold; job runs are filled bars inside them,
    coloured by outcome; out-of-memory and killed ends are marked with a cross; every
    reconfiguration (instance created or destroyed) is a tick above the slots.
    """
    r = row.result
    shown = min(r.gpus, MAX_TIMELINE_GPUS)
    slots = _memory_slots(r)
    end_s = max(r.makespan_s, 1e-9)
    unit, per = time_unit(end_s)
    fig_w = 13.0
    fig = Figure(figsize=(fig_w, 1.0 + 0.32 * (slots + 1) * shown + 1.2), layout="constrained")
    axes = fig.subplots(max(shown, 1), 1, sharex=True, squeeze=False)[:, 0]
    tl = r.timeline
    for gpu, ax in enumerate(axes):
        inst = [Rectangle((s.t0_s / per, s.start + 0.04), ((s.t1_s or end_s) - s.t0_s) / per, s.size - 0.08)
                for s in tl.instances if s.gpu == gpu]
        ax.add_collection(PatchCollection(inst, facecolor="none", edgecolor="#333333", linewidth=0.9))
        jobs = [s for s in tl.jobs if s.gpu == gpu]
        bars = [Rectangle((s.t0_s / per, s.start + 0.16), ((s.t1_s or end_s) - s.t0_s) / per, s.size - 0.32)
                for s in jobs]
        colours = [_OUTCOME_COLOURS[_outcome_key(s.outcome)] for s in jobs]
        ax.add_collection(PatchCollection(bars, facecolor=colours, edgecolor="white", linewidth=0.4, alpha=0.9))
        for s in jobs:
            dur = (s.t1_s or end_s) - s.t0_s
            if _label_fits(s.label, dur, end_s, fig_w, 6.5):
                ax.text((s.t0_s + dur / 2) / per, s.start + s.size / 2, drawable(s.label), ha="center",
                        va="center", fontsize=6.5, color="white", clip_on=True)
        for key, marker in (("oom", "X"), ("killed", "X")):
            ends = [s for s in jobs if _outcome_key(s.outcome) == key and s.t1_s is not None]
            if ends:
                ax.scatter([s.t1_s / per for s in ends], [s.start + s.size / 2 for s in ends], marker=marker,
                           s=36, color=_OUTCOME_COLOURS[key], edgecolors="black", linewidths=0.6, zorder=5)
        marks = [t for t, g, _ in tl.reconfigurations if g == gpu]
        if marks:
            ax.scatter([t / per for t in marks], [-0.35] * len(marks), marker="|", s=40, color="#1f77b4",
                       linewidths=1.0, zorder=4)
        ax.set_xlim(0, end_s / per * 1.01)
        ax.set_ylim(slots + 0.1, -0.7)  # slot 0 at the top, reconfiguration ticks above it
        ax.set_yticks([k + 0.5 for k in range(slots)], [str(k) for k in range(slots)], fontsize=7)
        ax.set_ylabel(f"GPU {gpu}\nmemory slot", fontsize=8)
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
    axes[-1].set_xlabel(f"time ({unit})")
    label = f"static [{row.layout}]" if row.layout else r.policy
    jobs_text = f"{plural('job', n_jobs)}, " if n_jobs is not None else ""
    more = f" (first {shown} of {r.gpus} GPUs shown)" if r.gpus > shown else ""
    mig = f", MIG turned on or off {plural('time', r.mig_mode_changes)}" if r.mig_mode_changes else ""
    fig.suptitle(f"Timeline of {label}: {jobs_text}{r.gpus}× {r.gpu}, makespan {r.makespan_s:.0f} s, "
                 f"{r.reconfigurations} reconfigurations{mig}{more}", fontsize=10)
    handles = legend_handles(r)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    return _save(fig, Path(path))


def legend_labels(result: RunResult) -> list[str]:
    """The timeline legend's entries: only outcomes that occur; lost runs with cause and GPU·s."""
    return [h.get_label() for h in legend_handles(result)]


def legend_handles(result: RunResult) -> list:
    """Legend handles of one timeline (see `legend_labels`)."""
    tl = result.timeline
    handles: list = []
    if tl.instances:
        handles.append(Patch(facecolor="none", edgecolor="#333333", label="GPU instance"))
    used = {_outcome_key(s.outcome) for s in tl.jobs}
    lost = lost_runs_by_cause(result)
    for k in _OUTCOME_COLOURS:
        if k not in used:
            continue
        label = _OUTCOME_LABELS[k]
        causes = [c for c in lost if (c == "oom") == (k == "oom")] if k in ("oom", "killed") else []
        if causes:
            label += " (" + "; ".join(f"{cause_label(c)}: {lost[c].runs}, {lost[c].wasted_gpu_s:.0f} GPU·s"
                                      for c in causes) + ")"
        handles.append(Patch(color=_OUTCOME_COLOURS[k], label=label))
    if used & {"oom", "killed"}:
        handles.append(Line2D([], [], marker="X", linestyle="none", color="#d62728", markeredgecolor="black",
                              label="OOM / kill end"))
    if tl.reconfigurations:
        handles.append(Line2D([], [], marker="|", linestyle="none", color="#1f77b4", markersize=9,
                              label="instance created / destroyed"))
    return handles


def _summed_power(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """All GPUs' power as one step function: (times_s, watts), each value held until the next time."""
    series = [s for s in result.power_series if s]
    if not series:
        return np.array([0.0, result.makespan_s]), np.zeros(2)
    times = np.unique(np.concatenate([[0.0, result.makespan_s], *[[t for t, _ in s] for s in series]]))
    times = times[times <= result.makespan_s]
    total = np.zeros_like(times)
    for s in series:
        ts = np.array([t for t, _ in s])
        ws = np.array([w for _, w in s])
        idx = np.searchsorted(ts, times, side="right") - 1  # the last change at or before each time
        total += np.where(idx >= 0, ws[np.clip(idx, 0, None)], ws[0])
    return times, total


def power_png(cmp: Comparison, path: str | Path) -> Path:
    """Total power of all GPUs over time, one line per policy, to `path`."""
    end_s = max((r.makespan_s for r in cmp.results), default=1.0) or 1.0
    unit, per = time_unit(end_s)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax = fig.subplots()
    for row in cmp.rows:
        t, w = _summed_power(row.result)
        ax.step(t / per, w, where="post", linewidth=1.2,
                label=f"{row.policy} ({row.result.energy_j / 1000:.0f} kJ, ends {row.result.makespan_s:.0f} s)")
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel(f"power (W), sum of {cmp.gpus} GPU{'s' if cmp.gpus > 1 else ''}")
    ax.set_xlim(0, end_s / per * 1.01)
    ax.set_ylim(bottom=0)
    ax.grid(color="#dddddd", linewidth=0.5)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Power over time: {plural('job', cmp.jobs)} on {cmp.gpus}× {cmp.gpu}", fontsize=10)
    return _save(fig, Path(path))


def summary_png(cmp: Comparison, path: str | Path) -> Path:
    """Makespan and energy per policy as two bar charts, the lower bound as a dashed line."""
    names = [row.policy for row in cmp.rows]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_t, ax_e = fig.subplots(1, 2)
    unit, per = time_unit(max((r.makespan_s for r in cmp.results), default=1.0))
    x = np.arange(len(names))
    ax_t.bar(x, [r.makespan_s / per for r in cmp.results], color="#1f77b4")
    if cmp.lower_bound_s > 0:
        ax_t.axhline(cmp.lower_bound_s / per, color="black", linestyle="--", linewidth=1, label="lower bound")
        ax_t.legend(fontsize=8)
    ax_t.set_ylabel(f"makespan ({unit})")
    ax_t.set_title("Makespan (lower is better)", fontsize=10)
    ax_e.bar(x, [r.energy_j / 1000 for r in cmp.results], color="#ff7f0e")
    ax_e.set_ylabel("energy (kJ)")
    ax_e.set_title("Energy (lower is better)", fontsize=10)
    for ax in (ax_t, ax_e):
        ax.set_xticks(x, names, fontsize=8)
        ax.set_xlabel("policy")
        ax.grid(axis="y", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
    fig.suptitle(f"{plural('job', cmp.jobs)} on {cmp.gpus}× {cmp.gpu}", fontsize=10)
    return _save(fig, Path(path))


def write_pngs(cmp: Comparison, folder: str | Path) -> list[Path]:
    """Every picture of `cmp` into `folder` (created): timelines, power, summary."""
    out = Path(folder)
    out.mkdir(exist_ok=True)  # only the folder itself: its parent must exist (checked up front)
    paths: list[Path] = []
    seen: set[str] = set()
    for row in cmp.rows:
        name = _safe_name(row.policy)
        while name in seen:
            name += "_"
        seen.add(name)
        paths.append(timeline_png(row, out / f"timeline-{name}.png", n_jobs=cmp.jobs))
    from migsched.report.cluster_plot import cluster_png

    paths.append(cluster_png(cmp, out / "cluster.png"))
    paths.append(power_png(cmp, out / "power.png"))
    paths.append(summary_png(cmp, out / "summary.png"))
    return paths

