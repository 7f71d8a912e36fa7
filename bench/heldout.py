"""A held-out set of batches for `bench/evaluate.py`: seeds and sizes migm is never tuned on.

    python bench/heldout.py --list            # the batches, one per line
    python bench/heldout.py --dump DIR        # write each batch as a job file (YAML-compatible JSON)

The bundled mixes (`make_mix`) declare a hint close to each job's peak. Real submissions do not:
some omit it, some guess wrong. Each held-out batch is a bundled mix drawn with a seed from
`HELDOUT_SEEDS` and a size from `HELDOUT_JOBS` (never used by `bench/tune_migm.py`, which tunes
on seeds 0-2 with 32/64 jobs), then perturbed with its own `random.Random(seed)`:

* `MISSING_HINT` of the jobs lose `hint_gib`;
* `WRONG_HINT` of the others get a hint scaled by 0.5-0.8 (too low) or 1.3-2.0 (too high);
* `MISSING_DESCRIBE` of the jobs lose their `describe:` block (no analytic estimate either).

Ground truth (`model:`) is untouched, so the same batch under every policy is the same work.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migsched.workloads.mixes import make_mix

#: Never tuned on (tune_migm.py uses seeds 0-2, evaluate.py's tuning rows seeds 1-5).
HELDOUT_SEEDS = (101, 202, 303)
#: Sizes within the range the issue names (20-56 jobs on one GPU).
HELDOUT_JOBS = {"scientific": 48, "ml": 27, "llm": 40, "online": 27, "mixed": 36}
MISSING_HINT = 0.25
WRONG_HINT = 0.30
MISSING_DESCRIBE = 0.30


@dataclass(frozen=True)
class HeldOut:
    """One held-out batch: the mix, its size and seed, and the GPU it runs on."""

    mix: str
    jobs: int
    seed: int
    gpu: str

    @property
    def key(self) -> str:
        return f"heldout/{self.mix}/{self.gpu}/s{self.seed}/{self.jobs}j"


def perturb(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """A copy of the job-file dict `doc` with hints dropped or wrong and descriptions dropped."""
    rng = random.Random(seed * 7919 + 1)
    out = copy.deepcopy(doc)
    for entry in out["jobs"]:
        r = rng.random()
        if r < MISSING_HINT:
            entry.pop("hint_gib", None)
        elif r < MISSING_HINT + WRONG_HINT and "hint_gib" in entry:
            low = rng.random() < 0.5
            factor = rng.uniform(0.5, 0.8) if low else rng.uniform(1.3, 2.0)
            entry["hint_gib"] = round(entry["hint_gib"] * factor, 2)
        if rng.random() < MISSING_DESCRIBE:
            entry.pop("describe", None)
    return out


def heldout_doc(b: HeldOut) -> dict[str, Any]:
    """The perturbed job-file dict of batch `b`."""
    params = {"arrival_mean_s": 240.0} if b.mix == "online" else {}
    return perturb(make_mix(b.mix, b.jobs, b.seed, **params), b.seed)


def heldout_batches(seeds: tuple[int, ...] = HELDOUT_SEEDS) -> list[HeldOut]:
    """Every held-out batch: each mix at its size, each seed; LLM on H100, the rest on A100."""
    out = []
    for seed in seeds:
        for mix, n in HELDOUT_JOBS.items():
            gpu = "H100-80GB" if mix == "llm" else "A100-80GB"
            out.append(HeldOut(mix, n, seed, gpu))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--dump", type=Path)
    args = ap.parse_args()
    for b in heldout_batches():
        if args.list or not args.dump:
            print(b.key)
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            name = b.key.replace("/", "_") + ".json"
            (args.dump / name).write_text(json.dumps(heldout_doc(b), indent=1))


if __name__ == "__main__":
    main()
