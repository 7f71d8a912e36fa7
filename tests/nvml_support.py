"""The fake NVML of tests/fake_nvml imported as `pynvml`, for the tests of the NVML backend."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

FAKE = Path(__file__).parent / "fake_nvml"


def fake_pynvml(monkeypatch, gpus: list[str]):
    """Yield the fake (it enforces the MIG rules) with `gpus`; drop it from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(FAKE))
    sys.modules.pop("pynvml", None)
    mod = importlib.import_module("pynvml")
    mod.fake_reset(gpus=gpus)
    yield mod
    for name in [m for m in sys.modules if m == "pynvml" or m.startswith("_fake_")]:
        sys.modules.pop(name, None)


def nvml_backend(nv, run_dir, **kw):
    """An `NvmlBackend` in `run_dir` over the fake `nv` (initialised), sampling every 0.1 s."""
    from migsched.backends.nvml.backend import NvmlBackend
    from migsched.backends.nvml.nvmllib import Nvml
    nv.nvmlInit()
    return NvmlBackend(run_dir, nvml=Nvml(nv), sample_interval_s=0.1, kill_grace_s=1.0, **kw)
