"""A small job for the real-process tests: sleeps, grows its memory, reports progress, leaves markers.

    python work.py --name N [--seconds S] [--steps K] [--grow-mib M] [--marker DIR] [--exit CODE]

Over `steps` steps spread across `seconds`, it allocates up to `grow-mib` MiB in equal parts and
reports step/steps through `migsched.probe`. With `--marker`, it appends "start <pid> <time>"
and, at the end, "end <pid> <time>" to DIR/<name>, so a test can check that every job ran to
completion exactly once and never twice at the same time.
"""

import argparse
import os
import sys
import time

from migsched import probe


def mark(folder, name, word):
    if folder:
        with open(os.path.join(folder, name), "a") as fh:
            fh.write(f"{word} {os.getpid()} {time.time():.6f}\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--grow-mib", type=float, default=0.0)
    ap.add_argument("--marker")
    ap.add_argument("--exit", type=int, default=0)
    a = ap.parse_args()
    mark(a.marker, a.name, "start")
    held = []
    per_step = int(a.grow_mib * 1024 * 1024 / max(a.steps, 1))
    for step in range(1, a.steps + 1):
        if per_step:
            chunk = bytearray(per_step)
            chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not just reserved
            held.append(chunk)
        time.sleep(a.seconds / a.steps)
        probe.report(step, a.steps)
    mark(a.marker, a.name, "end")
    if a.exit:
        print(f"{a.name}: failing on purpose with {a.exit}", file=sys.stderr)
    return a.exit


if __name__ == "__main__":
    sys.exit(main())
