"""The MIG hardware model: GPU models, GPU-instance profiles and their legal placements, as data.

The catalogue lives in `gpus.yaml` beside this module; `catalog.py` loads it into frozen
dataclasses. Typical use:

    >>> from migsched.hardware import get_model
    >>> m = get_model("a100-80gb")
    >>> m.profile("3g.39gb").name          # matched by geometry, as drivers misname it
    '3g.40gb'
    >>> m.profile("3g.40gb").starts
    (0, 4)
"""

from migsched.hardware.catalog import (
    ComputeInstanceProfile,
    GpuModel,
    Profile,
    all_models,
    get_model,
    model_names,
    resolve_nvml_name,
)

__all__ = [
    "ComputeInstanceProfile",
    "GpuModel",
    "Profile",
    "all_models",
    "get_model",
    "model_names",
    "resolve_nvml_name",
]
