"""A test job: leaves `<name>.<pid>.start`, sleeps, then leaves `<name>.<pid>.done` (with times).

Usage: python job.py MARKER_DIR NAME SECONDS. Counting the `.done` files tells how often a job
really completed; the times tell whether two runs of one job overlapped.
"""

import os
import sys
import time
from pathlib import Path

marker_dir, name, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
stem = f"{name}.{os.getpid()}"
(marker_dir / f"{stem}.start").write_text(repr(time.time()))
time.sleep(seconds)
(marker_dir / f"{stem}.done").write_text(repr(time.time()))
