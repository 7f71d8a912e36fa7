#!/usr/bin/env python
"""End-to-end evaluation: every policy on the bundled mixes and GPUs, against the MIGM targets.

    python bench/evaluate.py                       # the full evaluation (about 3 min on 2 cores)
    python bench/evaluate.py --quick               # main mixes and online only (~30 s)
    python bench/evaluate.py --out DIR --img-dir docs/img/evaluation --optimal-s 20

What runs (see docs/evaluation.md for the results and their reading):

* **main**: the scientific, ML and LLM mixes (`make_mix`, 32 jobs, seed 1) on one A100-40GB,
  one A100-80GB and one H100-80GB, each through `compare` with serial, static (best of every
  maximal layout), greedy and migm;
* **online**: the online-arrival mix (32 jobs, Poisson arrivals, mean gap `ONLINE_GAP_S`) on one
  A100-80GB;
* **early restart**: migm with `early_restart=False` on each LLM mix (OOM restart alone), and,
  because migm's default estimator reads the LLM jobs' `describe:` block and rarely guesses low,
  a stress variant on the A100-80GB LLM mix where migm trusts the (too low) hint only
  (`HintEstimator`), with early restart on and off;
* **2 GPUs** (full run only): the mixes with 64 jobs on two A100-80GB;
* **seeds** (full run only): the A100-80GB mixes again with seeds 2 to 5, for the spread;
* **optimal** (full run only, when OR-Tools imports): 16-job mixes on one A100-80GB with the
  clairvoyant CP-SAT reference (`--optimal-s` seconds of solver time each, default 30);
* **held-out** (`--heldout`, or `--heldout-only`): `bench/heldout.py`'s batches (20-56 jobs,
  seeds never tuned on, hints partly missing or wrong, `describe:` partly missing), each with
  the optimal reference; migm was never tuned on these (docs/evaluation.md says which is which).

Outputs: `DIR/evaluation.json` (every run, with the machine, the command and the commits),
`DIR/evaluation.md` (tables and the target check) and PNGs in `--img-dir`: timelines, power
and per-policy summary of one representative mix (`REPRESENTATIVE`), plus `gains.png`
(throughput and energy gain per mix and policy) and `lower-bound.png` (makespan / lower bound).

The functions are importable (tests/test_evaluate_smoke.py runs `run_config` on a tiny batch).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migsched.compare import Comparison, PolicyFigures, compare
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.policies.migm.memory import HintEstimator
from migsched.policies.registry import create_policy
from migsched.report.json_out import result_dict
from migsched.run import RunResult, simulate
from migsched.workloads.mixes import make_mix

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import HeldOut, heldout_batches, heldout_doc  # noqa: E402
GPUS = ("A100-40GB", "A100-80GB", "H100-80GB")
MIXES = ("scientific", "ml", "llm")
POLICIES = ("serial", "static", "greedy", "migm")
BASELINES = ("serial", "static", "greedy")
MAIN_JOBS = 32
MAIN_SEED = 1
EXTRA_SEEDS = (2, 3, 4, 5)
OPTIMAL_JOBS = 16
ONLINE_GAP_S = 60.0
REPRESENTATIVE = "llm/A100-80GB/s1"

# The targets migm is held to (the brief of docs/evaluation.md).
LB_TARGET = 1.15
OPT_TARGET = 1.10
EARLY_RESTART_TARGET = 0.5  # wasted GPU-s with early restart <= this x wasted with OOM restart alone


@dataclass(frozen=True)
class Config:
    """One batch on one cluster.

    Attributes:
        mix: `make_mix` name; jobs, seed, params: its arguments.
        gpu, gpus: the cluster.
        group: "main", "online", "seeds" or "optimal" (how the tables group it).
        policies: the policies `compare` runs.
        optimal_s: solver seconds for the clairvoyant reference (None: not run).
        variants: extra migm runs as (label, variant name), see `VARIANTS`.
    """

    mix: str
    gpu: str
    gpus: int = 1
    jobs: int = MAIN_JOBS
    seed: int = MAIN_SEED
    group: str = "main"
    params: dict[str, Any] = field(default_factory=dict)
    policies: tuple[str, ...] = POLICIES
    optimal_s: float | None = None
    variants: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """A short unique name: "llm/A100-80GB/s1", "ml/A100-80GB/s1/16j"."""
        k = f"{self.mix}/{self.gpu}/s{self.seed}"
        if self.gpus != 1:
            k += f"/{self.gpus}gpu"
        if self.group in ("optimal", "2gpu", "heldout"):
            k += f"/{self.jobs}j"
        if self.group == "heldout":
            k = "heldout/" + k
        return k


def _variant_policy(name: str, model_largest_mib: float):
    if name == "migm-no-early-restart":
        return create_policy("migm", early_restart=False)
    if name == "migm-hint-only":
        return create_policy("migm", estimator=HintEstimator(model_largest_mib))
    if name == "migm-hint-only-no-early-restart":
        return create_policy("migm", early_restart=False, estimator=HintEstimator(model_largest_mib))
    raise ValueError(f"unknown variant {name!r}")


VARIANTS = ("migm-no-early-restart", "migm-hint-only", "migm-hint-only-no-early-restart")


def heldout_plan(optimal_s: float | None) -> list[Config]:
    """The held-out batches (`bench/heldout.py`) as configurations, with the optimal reference."""
    opt = optimal_s if optimal_s is not None and optimal_available() else None
    return [Config(b.mix, b.gpu, jobs=b.jobs, seed=b.seed, group="heldout", optimal_s=opt)
            for b in heldout_batches()]


def plan(quick: bool, optimal_s: float | None) -> list[Config]:
    """The configurations of a run (`--quick` drops the seeds and the optimal reference)."""
    out: list[Config] = []
    for gpu in GPUS:
        for mix in MIXES:
            variants: tuple[str, ...] = ()
            if mix == "llm":
                variants = ("migm-no-early-restart",)
                if gpu == "A100-80GB":
                    variants = VARIANTS
            out.append(Config(mix, gpu, variants=variants))
    out.append(Config("online", "A100-80GB", group="online", params={"arrival_mean_s": ONLINE_GAP_S}))
    if quick:
        return out
    for mix in MIXES:
        out.append(Config(mix, "A100-80GB", gpus=2, jobs=2 * MAIN_JOBS, group="2gpu"))
    for seed in EXTRA_SEEDS:
        for mix in MIXES:
            variants = ("migm-no-early-restart",) if mix == "llm" else ()
            out.append(Config(mix, "A100-80GB", seed=seed, group="seeds", variants=variants))
    # The 16-job batches run without the optimal reference too (`--optimal-s 0`), so that a
    # same-schedule check before and after a change covers them (round 13's check missed one).
    opt = optimal_s if optimal_s is not None and optimal_available() else None
    for mix in MIXES:
        out.append(Config(mix, "A100-80GB", jobs=OPTIMAL_JOBS, group="optimal", optimal_s=opt))
    return out


def optimal_available() -> bool:
    """Whether OR-Tools (the optimal reference's solver) imports."""
    try:
        import ortools  # noqa: F401
    except ImportError:
        return False
    return True


# ---- running -------------------------------------------------------------------------------------
def _ratio(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or y <= 0 else x / y


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _row_dict(label: str, row: PolicyFigures, optimal_s: float | None) -> dict[str, Any]:
    d = result_dict(row)
    d["label"] = label
    d["optimal_ratio"] = _num(_ratio(row.result.makespan_s, optimal_s))
    d["forecast_mape_pct"] = _num(row.result.policy_summary.get("forecast_mape_pct"))
    d["wall_s"] = round(row.result.wall_s, 2)
    jcts = sorted(j.jct_s for j in row.result.jobs if j.jct_s is not None)
    d["jct_mean_s"] = statistics.mean(jcts) if jcts else None
    d["jct_p95_s"] = jcts[min(len(jcts) - 1, math.ceil(0.95 * len(jcts)) - 1)] if jcts else None
    return d


def _variant_row(res: RunResult, cmp: Comparison) -> PolicyFigures:
    """Figures of an extra run against the comparison's serial run and lower bound."""
    try:
        base = cmp.row("serial").result
    except KeyError:
        base = None
    ok = base is not None and base.jobs_completed == res.jobs_completed
    thr = base.makespan_s / res.makespan_s if ok and res.makespan_s > 0 else None  # type: ignore[union-attr]
    en = base.energy_j / res.energy_j if ok and res.energy_j > 0 else None  # type: ignore[union-attr]
    lb = res.makespan_s / cmp.lower_bound_s if cmp.lower_bound_s > 0 else None
    return PolicyFigures(res, None, 0, thr, en, lb)


def run_config(cfg: Config, log=print) -> tuple[dict[str, Any], Comparison]:
    """Run one configuration: `compare` plus its migm variants; the JSON record and the comparison."""
    t0 = time.perf_counter()
    model = get_model(cfg.gpu)
    if cfg.group == "heldout":
        jobs = load_jobs_dict(heldout_doc(HeldOut(cfg.mix, cfg.jobs, cfg.seed, cfg.gpu)))
    else:
        jobs = load_jobs_dict(make_mix(cfg.mix, cfg.jobs, cfg.seed, **cfg.params))
    cmp = compare(jobs, model, cfg.gpus, list(cfg.policies), seed=0, optimal_s=cfg.optimal_s)
    opt = next((r.result for r in cmp.rows if r.policy == "optimal"), None)
    opt_ms = opt.makespan_s if opt is not None and opt.jobs_failed == 0 else None
    rows = [_row_dict(r.policy, r, opt_ms) for r in cmp.rows]
    largest = max(p.memory_mib for p in model.profiles)
    for name in cfg.variants:
        res = simulate(jobs, model, cfg.gpus, policy=_variant_policy(name, largest), seed=0)
        rows.append(_row_dict(name, _variant_row(res, cmp), opt_ms))
    rec = {
        "key": cfg.key, "group": cfg.group, "mix": cfg.mix, "gpu": cfg.gpu, "gpus": cfg.gpus,
        "jobs": cfg.jobs, "seed": cfg.seed, "params": cfg.params,
        "lower_bound_s": _num(cmp.lower_bound_s), "optimal_makespan_s": opt_ms,
        "notes": list(cmp.notes), "results": rows, "wall_s": round(time.perf_counter() - t0, 1),
    }
    log(f"  {cfg.key:<28} {rec['wall_s']:>6.1f} s  " + "  ".join(
        f"{r['label']}={r['makespan_s']:.0f}s" for r in rows))
    return rec, cmp


# ---- checks --------------------------------------------------------------------------------------
def _by_label(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in rec["results"]}


def check_targets(rec: dict[str, Any]) -> dict[str, Any]:
    """migm against the targets on one batch; every figure the verdict rests on."""
    rows = _by_label(rec)
    m = rows.get("migm")
    if m is None:
        return {}
    out: dict[str, Any] = {"key": rec["key"]}
    others = [rows[b] for b in BASELINES if b in rows]
    best_ms = min(others, key=lambda r: r["makespan_s"]) if others else None
    best_en = min(others, key=lambda r: r["energy_j"]) if others else None
    if best_ms is not None and best_en is not None:
        out["best_other_makespan"] = best_ms["label"]
        out["makespan_vs_best_other"] = m["makespan_s"] / best_ms["makespan_s"]
        out["best_other_energy"] = best_en["label"]
        out["energy_vs_best_other"] = m["energy_j"] / best_en["energy_j"]
        out["beats_all"] = all(m["makespan_s"] < r["makespan_s"] and m["energy_j"] < r["energy_j"] for r in others)
    out["lower_bound_ratio"] = m["lower_bound_ratio"]
    out["lb_ok"] = m["lower_bound_ratio"] is not None and m["lower_bound_ratio"] <= LB_TARGET
    out["optimal_ratio"] = m["optimal_ratio"]
    out["opt_ok"] = None if m["optimal_ratio"] is None else m["optimal_ratio"] <= OPT_TARGET
    pols = [r for label, r in rows.items() if label in POLICIES and r.get("jct_mean_s") is not None]
    if pols and m.get("jct_mean_s") is not None:
        out["jct_mean_best"] = min(pols, key=lambda r: r["jct_mean_s"])["label"]
        out["jct_p95_best"] = min(pols, key=lambda r: r["jct_p95_s"])["label"]
    # A job is lost when migm fails it but some other policy completes it.
    done_elsewhere = set()
    for label, r in rows.items():
        if label != "migm" and not label.startswith("migm-"):
            failed = {f["job_id"] for f in r["failures"]}
            done_elsewhere |= {j for j in _all_job_ids(rec) if j not in failed}
    migm_failed = {f["job_id"] for f in m["failures"]}
    out["jobs_failed"] = m["jobs_failed"]
    out["jobs_lost"] = sorted(migm_failed & done_elsewhere)
    return out


def _all_job_ids(rec: dict[str, Any]) -> set[str]:
    return set(rec.get("_job_ids", []))


def early_restart_check(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Wasted GPU-s with early restart vs OOM restart alone, for each pair of runs in `rec`."""
    rows = _by_label(rec)
    out = []
    for on, off, what in (("migm", "migm-no-early-restart", "default estimator"),
                          ("migm-hint-only", "migm-hint-only-no-early-restart", "hint-only estimator")):
        if on in rows and off in rows:
            a, b = rows[on], rows[off]
            # Without any OOM or early restart in either run the wasted time comes from other
            # kills (tail/blocked restarts) and says nothing about early restart.
            restarts = a["early_restarts"] + a["oom_restarts"] + b["oom_restarts"]
            ratio = a["wasted_gpu_s"] / b["wasted_gpu_s"] if b["wasted_gpu_s"] > 0 and restarts else None
            out.append({
                "key": rec["key"], "estimator": what,
                "wasted_early_gpu_s": a["wasted_gpu_s"], "wasted_oom_only_gpu_s": b["wasted_gpu_s"],
                "early_restarts": a["early_restarts"], "oom_restarts_early": a["oom_restarts"],
                "oom_restarts_oom_only": b["oom_restarts"],
                "makespan_early_s": a["makespan_s"], "makespan_oom_only_s": b["makespan_s"],
                "done_early": a["jobs_completed"], "done_oom_only": b["jobs_completed"],
                "ratio": ratio,
                "ok": None if ratio is None else ratio <= EARLY_RESTART_TARGET,
            })
    return out


# ---- machine and provenance ----------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """The command, the date, the machine and the commits the numbers come from."""
    dirty = _git("status", "--porcelain", "--", "src")
    return {
        "command": " ".join(["python", "bench/evaluate.py", *(shlex.quote(a) for a in argv)]),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "head_commit": _git("rev-parse", "--short", "HEAD"),
        "migm_commit": _git("log", "-1", "--format=%h %s", "--", "src/migsched/policies/migm",
                            "src/migsched/estimators"),
        "uncommitted_src": dirty.splitlines(),
    }


# ---- Markdown ------------------------------------------------------------------------------------
def _f(x: float | None, fmt: str = "{:.2f}", none: str = "n/a") -> str:
    return none if x is None else fmt.format(x)


MAIN_HEAD = ("| batch | policy | makespan s | energy kJ | thr gain | energy gain | × LB | × opt | OOM | early "
             "| wasted GPU·s | done/failed | JCT mean / p95 s | forecast MAPE % |")
MAIN_RULE = "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def results_table(records: Sequence[dict[str, Any]]) -> str:
    """Every run of `records` as one Markdown table."""
    lines = [MAIN_HEAD, MAIN_RULE]
    for rec in records:
        for r in rec["results"]:
            label = r["label"] + ("*" if r.get("layout") else "")
            mape = r["forecast_mape_pct"] if r["label"].startswith("migm") else None
            lines.append(
                f"| {rec['key']} | {label} | {r['makespan_s']:.0f} | {r['energy_j'] / 1000:.0f} "
                f"| {_f(r['throughput_gain'])} | {_f(r['energy_gain'])} | {_f(r['lower_bound_ratio'])} "
                f"| {_f(r['optimal_ratio'])} | {r['oom_restarts']} | {r['early_restarts']} "
                f"| {r['wasted_gpu_s']:.0f} | {r['jobs_completed']}/{r['jobs_failed']} "
                f"| {_f(r.get('jct_mean_s'), '{:.0f}')} / {_f(r.get('jct_p95_s'), '{:.0f}')} "
                f"| {_f(mape, '{:.1f}', '')} |")
    return "\n".join(lines)


def targets_table(checks: Sequence[dict[str, Any]]) -> str:
    """migm's verdict per batch."""
    lines = ["| batch | migm makespan / best other | migm energy / best other | beats all 3 on both "
             "| × LB (≤ 1.15) | × opt (≤ 1.10) | lowest JCT mean / p95 | jobs lost |",
             "|:---|---:|---:|:---:|---:|---:|:---:|---:|"]
    for c in checks:
        if not c:
            continue
        lines.append(
            f"| {c['key']} | {_f(c.get('makespan_vs_best_other'), '{:.3f}')} ({c.get('best_other_makespan', '')}) "
            f"| {_f(c.get('energy_vs_best_other'), '{:.3f}')} ({c.get('best_other_energy', '')}) "
            f"| {'yes' if c.get('beats_all') else 'NO'} "
            f"| {_f(c['lower_bound_ratio'], '{:.3f}')} {'✓' if c['lb_ok'] else '✗'} "
            f"| {_f(c['optimal_ratio'], '{:.3f}')} {'' if c['opt_ok'] is None else ('✓' if c['opt_ok'] else '✗')} "
            f"| {c.get('jct_mean_best', '')} / {c.get('jct_p95_best', '')} "
            f"| {len(c['jobs_lost'])} |")
    return "\n".join(lines)


def early_table(rows: Sequence[dict[str, Any]]) -> str:
    """Early restart against OOM restart alone."""
    lines = ["| batch | estimator | wasted GPU·s early / OOM-only | ratio (≤ 0.5) | early restarts | "
             "OOM restarts (early / OOM-only) | makespan s (early / OOM-only) | done (early / OOM-only) |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for e in rows:
        verdict = "no restarts needed" if e["ratio"] is None else f"{e['ratio']:.2f} {'✓' if e['ok'] else '✗'}"
        lines.append(
            f"| {e['key']} | {e['estimator']} | {e['wasted_early_gpu_s']:.0f} / {e['wasted_oom_only_gpu_s']:.0f} "
            f"| {verdict} | {e['early_restarts']} | {e['oom_restarts_early']} / {e['oom_restarts_oom_only']} "
            f"| {e['makespan_early_s']:.0f} / {e['makespan_oom_only_s']:.0f} "
            f"| {e['done_early']} / {e['done_oom_only']} |")
    return "\n".join(lines)


def seed_table(records: Sequence[dict[str, Any]]) -> str:
    """Mean and spread (min-max) of the gains over the seeds of the A100-80GB mixes."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec["gpu"] == "A100-80GB" and rec["group"] in ("main", "seeds"):
            for r in rec["results"]:
                if r["label"] in POLICIES:
                    groups.setdefault((rec["mix"], r["label"]), []).append(r)
    lines = ["| mix (A100-80GB) | policy | seeds | thr gain mean [min–max] | energy gain mean [min–max] "
             "| × LB mean [min–max] |", "|:---|:---|---:|---:|---:|---:|"]

    def spread(vals: list[float | None]) -> str:
        v = [x for x in vals if x is not None]
        if not v:
            return "n/a"
        return f"{statistics.mean(v):.2f} [{min(v):.2f}–{max(v):.2f}]"

    for (mix, pol), rs in groups.items():
        if len(rs) < 2:
            continue
        lines.append(f"| {mix} | {pol} | {len(rs)} | {spread([r['throughput_gain'] for r in rs])} "
                     f"| {spread([r['energy_gain'] for r in rs])} | {spread([r['lower_bound_ratio'] for r in rs])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown_summary(doc: dict[str, Any]) -> str:
    """`evaluation.md`: provenance, the results, the target check, early restart, seeds, pictures."""
    p = doc["provenance"]
    parts = [
        "# migsched evaluation", "",
        f"- command: `{p['command']}`",
        f"- date: {p['date']}",
        f"- machine: {p['platform']}, {p['cpu']}, {p['cores']} cores, Python {p['python']}",
        f"- HEAD {p['head_commit']}; latest migm commit: {p['migm_commit']}",
        f"- uncommitted changes under src/: {', '.join(p['uncommitted_src']) or 'none'}",
        f"- wall time: {doc['wall_s']:.0f} s", "",
        "## Results", "", results_table(doc["records"]), "",
        "`*` static: best maximal layout (listed in evaluation.json). thr/energy gain = serial / policy; "
        "× LB = makespan / lower bound; × opt = makespan / optimal's makespan.", "",
        "## migm against the targets", "", targets_table(doc["checks"]), "",
        "## Early restart vs OOM restart alone", "", early_table(doc["early_restart"]), "",
    ]
    st = seed_table(doc["records"])
    if st:
        parts += ["## Spread over seeds", "", st, ""]
    if doc.get("images"):
        parts += ["## Pictures", "", *(f"![{Path(i).stem}]({i})" for i in doc["images"]), ""]
    return "\n".join(parts)


# ---- pictures ------------------------------------------------------------------------------------
def gains_png(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Throughput and energy gain vs serial, per batch (x) and policy (bars)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recs = [r for r in records if r["group"] in ("main", "online")]
    pols = [p for p in POLICIES if p != "serial"]
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    x = np.arange(len(recs))
    w = 0.8 / len(pols)
    for ax, key, title in zip(axes, ("throughput_gain", "energy_gain", "lower_bound_ratio"),
                              ("Throughput gain vs serial (higher is better)", "Energy gain vs serial (higher is better)",
                               "Makespan / lower bound (lower is better)"), strict=True):
        for k, pol in enumerate(pols):
            vals = []
            for rec in recs:
                row = _by_label(rec).get(pol)
                v = row.get(key) if row else None
                vals.append(np.nan if v is None else v)
            ax.bar(x + (k - (len(pols) - 1) / 2) * w, vals, w, label=pol)
        ax.axhline(1.0, color="black", linewidth=0.8)
        if key == "lower_bound_ratio":
            ax.axhline(LB_TARGET, color="red", linestyle="--", linewidth=0.8, label=f"target {LB_TARGET}")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        if key == "lower_bound_ratio":
            ax.legend(fontsize=8, loc="upper left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(pols), fontsize=9, frameon=False)
    axes[-1].set_xticks(x, [r["key"].replace("/s1", "") for r in recs], rotation=25, ha="right", fontsize=8)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def write_pictures(records: Sequence[dict[str, Any]], cmps: dict[str, Comparison], img_dir: Path) -> list[Path]:
    """The representative batch's timelines/power/summary and the gains chart into `img_dir`."""
    from migsched.report.plots import power_png, summary_png, timeline_png

    img_dir.mkdir(parents=True, exist_ok=True)
    out = [gains_png(records, img_dir / "gains.png")]
    key = REPRESENTATIVE if REPRESENTATIVE in cmps else next(iter(cmps), None)
    if key is not None:
        cmp = cmps[key]
        stem = key.split("/")[0] + "-" + key.split("/")[1]
        for row in cmp.rows:
            if row.policy in ("migm", "static", "greedy"):
                out.append(timeline_png(row, img_dir / f"timeline-{stem}-{row.policy}.png", n_jobs=cmp.jobs))
        out.append(power_png(cmp, img_dir / f"power-{stem}.png"))
        out.append(summary_png(cmp, img_dir / f"summary-{stem}.png"))
    return out


# ---- main ----------------------------------------------------------------------------------------
def evaluate(configs: Sequence[Config], out_dir: Path, img_dir: Path | None, argv: Sequence[str],
             log=print) -> dict[str, Any]:
    """Run `configs`, write `evaluation.json`, `evaluation.md` and the pictures; the document."""
    t0 = time.perf_counter()
    prov = provenance(argv)
    log(f"command: {prov['command']}")
    log(f"date: {prov['date']}")
    log(f"machine: {prov['platform']}, {prov['cpu']}, {prov['cores']} cores, Python {prov['python']}")
    log(f"HEAD {prov['head_commit']}; migm: {prov['migm_commit']}")
    if prov["uncommitted_src"]:
        log(f"uncommitted under src/: {', '.join(prov['uncommitted_src'])}")
    records, cmps = [], {}
    for cfg in configs:
        rec, cmp = run_config(cfg, log)
        rec["_job_ids"] = sorted({j.job_id for r in cmp.results for j in r.jobs})
        records.append(rec)
        cmps[cfg.key] = cmp
    checks = [check_targets(r) for r in records]
    early = [e for r in records for e in early_restart_check(r)]
    for r in records:
        r.pop("_job_ids", None)
    doc: dict[str, Any] = {"provenance": prov, "targets": {"lower_bound": LB_TARGET, "optimal": OPT_TARGET,
                                                          "early_restart_waste": EARLY_RESTART_TARGET},
                           "records": records, "checks": checks, "early_restart": early}
    images: list[str] = []
    if img_dir is not None:
        paths = write_pictures(records, cmps, img_dir)
        images = [os.path.relpath(p, out_dir) for p in paths]
    doc["images"] = images
    doc["wall_s"] = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out_dir / "evaluation.md").write_text(markdown_summary(doc), encoding="utf-8")
    log("")
    log(targets_table(checks))
    log("")
    log(early_table(early))
    log(f"\nwrote {out_dir / 'evaluation.json'}, {out_dir / 'evaluation.md'}"
        + (f" and {len(images)} PNGs in {img_dir}" if images else "") + f" ({doc['wall_s']:.0f} s)")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="main mixes and online only: no extra seeds, no optimal")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "evaluation", help="folder for evaluation.json/.md")
    ap.add_argument("--img-dir", default=str(REPO / "docs" / "img" / "evaluation"),
                    help="folder for the PNGs ('' for none)")
    ap.add_argument("--optimal-s", type=float, default=30.0, help="CP-SAT seconds per optimal run (0: skip)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only configs whose key has one")
    ap.add_argument("--heldout", action="store_true", help="add the held-out batches (bench/heldout.py)")
    ap.add_argument("--heldout-only", action="store_true", help="run the held-out batches alone")
    args = ap.parse_args(args_list)
    opt_s = args.optimal_s if args.optimal_s > 0 else None
    configs = [] if args.heldout_only else plan(args.quick, opt_s)
    if args.heldout or args.heldout_only:
        configs += heldout_plan(opt_s)
    if args.only:
        subs = [s for s in args.only.split(",") if s]
        configs = [c for c in configs if any(s in c.key for s in subs)]
    img = Path(args.img_dir) if args.img_dir else None
    evaluate(configs, args.out, img, args_list)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
