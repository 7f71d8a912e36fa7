"""Read-only checks on a real NVIDIA GPU (marked `gpu`; skipped where none is present).

They never enable or disable MIG, never create or destroy instances and never reset a GPU:
only queries. They compare what NVML reports (model, MIG mode, profiles, placements, the energy
counter) with migsched's catalogue, and print the differences NVML's geometry overrides.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
FAKE = Path(__file__).parent / "fake_nvml"


@pytest.fixture(scope="module")
def nvml():
    saved = sys.modules.pop("pynvml", None)
    path = [p for p in sys.path if Path(p or ".").resolve() != FAKE.resolve()]
    old, sys.path[:] = sys.path[:], path
    try:
        try:
            pynvml = importlib.import_module("pynvml")
        except ImportError:
            pytest.skip("nvidia-ml-py is not installed (pip install 'migsched[nvml]')")
        if Path(pynvml.__file__).resolve().parent == FAKE.resolve():
            pytest.skip("only the fake NVML is importable here")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            pytest.skip(f"no NVIDIA driver or GPU: {exc}")
        if pynvml.nvmlDeviceGetCount() == 0:
            pytest.skip("no NVIDIA GPU")
        from migsched.backends.nvml.nvmllib import Nvml
        yield Nvml(pynvml)
        pynvml.nvmlShutdown()
    finally:
        sys.path[:] = old
        sys.modules.pop("pynvml", None)
        if saved is not None:
            sys.modules["pynvml"] = saved


def test_every_gpu_resolves_to_a_catalogue_model(nvml):
    from migsched.hardware.catalog import resolve_nvml_name
    for g in nvml.gpus():
        mem = int(nvml.nv.nvmlDeviceGetMemoryInfo(nvml.nv.nvmlDeviceGetHandleByIndex(g.index)).total >> 20)
        assert resolve_nvml_name(g.name, mem) is not None, (g.name, mem)


def test_profiles_and_placements_match_the_catalogue_where_mig_is_supported(nvml, capsys):
    from migsched.hardware.catalog import resolve_nvml_name
    for g in nvml.gpus():
        h = nvml.nv.nvmlDeviceGetHandleByIndex(g.index)
        try:
            nvml.nv.nvmlDeviceGetMigMode(h)
        except nvml.nv.NVMLError:
            continue  # not MIG-capable
        model = nvml.model(g.index)  # read-only: profile info and possible placements
        cat = resolve_nvml_name(g.name, model.memory_mib)
        by_name = {p.name: p for p in cat.profiles}
        for p in model.profiles:
            c = by_name.get(p.name)
            print(f"GPU {g.index} {p.name}: id {p.profile_id}, {p.memory_mib} MiB, max {p.max_count}, starts {p.starts}"
                  + ("" if c is None else f" (catalogue: id {c.profile_id}, {c.memory_mib} MiB, starts {c.starts})"))
            if c is not None:
                assert p.profile_id == c.profile_id and p.starts == c.starts and p.compute_slices == c.compute_slices


def test_the_energy_counter_is_read_and_never_decreases(nvml):
    for g in nvml.gpus():
        e0 = nvml.energy_mj(g.index)
        if e0 is None:
            continue
        assert nvml.energy_mj(g.index) >= e0
