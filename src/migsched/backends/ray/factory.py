"""Building the `ray` backend from a run's settings (`migsched run --backend ray`, `--resume`).

The options live in the store's `backend_options`, so a resumed run builds the same backend:
`address` (None: a local cluster of `nodes` nodes), `node_backend` (`local` or `nvml`), and what
a `local` node emulates when its resources name nothing: `gpus_per_node` GPUs of `gpu`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migsched.backends.ray.agent import AgentConfig
from migsched.errors import MigschedError
from migsched.jobs.model import Job

OPTION_NAMES = ("address", "nodes", "node_backend", "gpu", "gpus_per_node", "manage_existing", "allow_mig_change")


def ray_backend(jobs: Sequence[Job], run_dir: Path, *, mib_per_gib: float, origin_unix: float | None,
                sample_interval_s: float, instances=None, options: dict[str, Any] | None = None,
                mig_off: Sequence[int] = ()):
    """The `RayBackend` for these settings; raises with a clear message when they cannot work."""
    import time

    from migsched.backends.ray.cluster import RayBackend
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTION_NAMES))
    if unknown:
        raise MigschedError(f"unknown ray backend option(s) {', '.join(unknown)}; valid: {', '.join(OPTION_NAMES)}")
    no_cmd = [j.job_id for j in jobs if not j.spec.argv]
    if no_cmd:
        raise MigschedError(f"--backend ray runs each job's command; {', '.join(no_cmd[:5])} have no command: "
                            "add one to the job file")
    node_backend = opts.get("node_backend") or "local"
    nvml = {k: bool(opts[k]) for k in ("manage_existing", "allow_mig_change") if k in opts}
    config = AgentConfig(node_backend=node_backend, run_dir=str(Path(run_dir).resolve()),
                         origin_unix=origin_unix if origin_unix is not None else time.time(),
                         default_model=opts.get("gpu") or "A100-40GB", default_gpus=int(opts.get("gpus_per_node") or 2),
                         mib_per_gib=mib_per_gib, sample_interval_s=sample_interval_s,
                         nvml_options=nvml if node_backend == "nvml" else {})
    return RayBackend(config, address=opts.get("address"), nodes=int(opts.get("nodes") or 2), instances=instances,
                      mig_off=mig_off)
