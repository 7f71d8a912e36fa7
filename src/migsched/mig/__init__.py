"""Declarative MIG layouts: `export`, `assert` and `apply`, like NVIDIA's mig-parted, but with
explicit placements and without ever destroying an instance a process uses.

* `config.py`: the migsched layout file (`version: 1`, explicit `PROFILE@START` placements per
  GPU) and mig-parted's own file (`version: v1`, `mig-configs` with profile -> count maps), both
  read into one frozen `MigConfig` and written back; `place_counts` turns a count map into
  explicit placements (deterministic, keeping existing instances where it can). The frozen model
  lives in `spec.py`, writing in `render.py`, placing in `placement.py`; `config.py` re-exports them.
* `ops.py`: `export_layouts`, `check`, `plan_apply` and `apply` through `backends.nvml.Nvml`.

    >>> from migsched.hardware import get_model
    >>> from migsched.mig.config import place_counts
    >>> str(place_counts(get_model("A100-40GB"), {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}))
    '2g.10gb@0,1g.5gb@2,1g.5gb@3,3g.20gb@4'

The verbs and how they differ from mig-parted: docs/mig-ops.md.
"""
