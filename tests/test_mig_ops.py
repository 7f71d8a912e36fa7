"""`export` / `assert` / `apply` against the fake pynvml (tests/fake_nvml), through the library and the CLI."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_support import run_cli as run
from migsched.backends.nvml.backend import MigModeError
from migsched.backends.nvml.nvmllib import Nvml
from migsched.errors import PlanError
from migsched.hardware import get_model
from migsched.mig.config import MigConfigError, dump_config, load_config, parse_config
from migsched.mig.ops import ApplyError, apply, check, export_layouts, plan_apply
from migsched.partition import Layout

FAKE_DIR = Path(__file__).parent / "fake_nvml"
A40 = get_model("A100-40GB")


@pytest.fixture
def nv(monkeypatch):
    """A freshly imported fake `pynvml` as `import pynvml` sees it; afterwards MIG mode must be untouched."""
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    for name in [m for m in sys.modules if m == "pynvml" or m.startswith("_fake_")]:
        monkeypatch.delitem(sys.modules, name)
    mod = importlib.import_module("pynvml")
    yield mod
    if not getattr(mod, "_mig_change_allowed", False):
        assert not any(g["set_mig_mode_called"] for g in mod.fake_state()["gpus"])
        assert not any(e["call"] == "nvmlDeviceSetMigMode" for e in mod.fake_state()["log"])


def _changes(nv) -> list[dict]:
    return [e for e in nv.fake_state()["log"] if "Create" in e["call"] or "Destroy" in e["call"]]


def _layouts(nv) -> list[str]:
    return [",".join(f"{i['profile']}@{i['start']}" for i in g["instances"]) for g in nv.fake_state()["gpus"]]


def _gi_ids(nv, gpu: int) -> dict[int, int]:
    return {i["start"]: i["gi_id"] for i in nv.fake_state()["gpus"][gpu]["instances"]}


@pytest.fixture
def busy_process():
    """Start a real process pinned to a MIG device (CUDA_VISIBLE_DEVICES=MIG-<uuid>); yields its starter."""
    procs = []

    def start(mig_uuid: str) -> int:
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": mig_uuid})
        procs.append(p)
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


# ---- export -> apply -> assert ------------------------------------------------------------------
def test_export_apply_assert_round_trip(nv, tmp_path, capsys):
    nv.fake_reset(gpus=["A100-40GB", "A100-80GB"], instances={0: [("3g.20gb", 4), ("1g.5gb", 0)],
                                                              1: [("7g.80gb", 0)]})
    cfg = export_layouts(Nvml())
    assert [s.placements for s in cfg.specs] == [(("1g.5gb", 0), ("3g.20gb", 4)), (("7g.80gb", 0),)]
    assert [s.model for s in cfg.specs] == ["A100-40GB", "A100-80GB"]
    path = tmp_path / "now.yaml"
    assert run(capsys, "export", "--out", str(path))[0] == 0
    assert load_config(path) == cfg
    assert check(Nvml(), cfg) == []
    code, out, _ = run(capsys, "apply", str(path))
    assert code == 0 and "nothing to do" in out
    assert run(capsys, "assert", str(path))[0] == 0
    assert _changes(nv) == []  # applying the current layout touches nothing


def test_apply_moves_to_another_layout_with_explicit_placements_and_legal_steps(nv, tmp_path, capsys):
    nv.fake_reset(gpus=["A100-40GB"], instances={0: [("1g.5gb", s) for s in range(4)] + [("3g.20gb", 4)]})
    kept = _gi_ids(nv, 0)[4]
    path = tmp_path / "target.yaml"
    path.write_text("version: 1\ngpus:\n  - {index: 0, model: A100-40GB, instances: [4g.20gb@0, 3g.20gb@4]}\n")
    code, out, _ = run(capsys, "assert", str(path))
    assert code == 1 and "GPU 0: 4g.20gb@0 is missing" in out and "GPU 0: 1g.5gb@2 is not in gpus[0]" in out
    code, out, _ = run(capsys, "apply", str(path), "--dry-run")
    assert code == 0 and "create 4g.20gb@0" in out and "dry run" in out and _changes(nv) == []
    assert run(capsys, "apply", str(path))[0] == 0
    assert _layouts(nv) == ["4g.20gb@0,3g.20gb@4"]
    assert _gi_ids(nv, 0)[4] == kept  # the instance in both layouts was never touched
    # Replay the hardware's call log: every create names its placement, every state is legal.
    lay = Layout.of(A40, [("1g.5gb", s) for s in range(4)] + [("3g.20gb", 4)])
    for e in _changes(nv):
        if e["call"] == "nvmlGpuInstanceDestroy":
            lay = lay.release(e["args"][0]["start"])
        elif e["call"] == "nvmlDeviceCreateGpuInstanceWithPlacement":
            lay = lay.with_instance(A40.profile(e["args"][1]), e["args"][2]["start"])
        assert e["call"] != "nvmlDeviceCreateGpuInstance"  # never the driver's auto-placement
        assert lay.is_valid()
    assert str(lay) == "4g.20gb@0,3g.20gb@4"
    assert run(capsys, "assert", str(path))[0] == 0


def test_a_busy_instance_blocks_apply_and_names_the_pid(nv, tmp_path, capsys, busy_process):
    nv.fake_reset(gpus=["A100-40GB"], instances={0: [("3g.20gb", 4), ("1g.5gb", 0)]})
    uuid = next(i for i in Nvml().instances(0) if i.start == 4).mig_uuid
    pid = busy_process(uuid)
    exported = export_layouts(Nvml())
    assert exported.specs[0].in_use == (("3g.20gb@4", (pid,)),)
    assert f"- {pid}" in dump_config(exported)
    path = tmp_path / "whole.yaml"
    path.write_text("version: 1\ngpus: [{index: 0, instances: [7g.40gb@0]}]\n")
    code, _, err = run(capsys, "apply", str(path))
    assert code == 2 and f"pid {pid}" in err and "3g.20gb@4" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(PlanError, match=f"pid {pid}"):
        plan_apply(Nvml(), load_config(path))
    assert _changes(nv) == [] and _layouts(nv) == ["1g.5gb@0,3g.20gb@4"]
    # Changes elsewhere on the GPU go ahead: the busy instance is kept.
    path.write_text("version: 1\ngpus: [{index: 0, instances: [4g.20gb@0, 3g.20gb@4]}]\n")
    assert run(capsys, "apply", str(path))[0] == 0
    assert _layouts(nv) == ["4g.20gb@0,3g.20gb@4"]
    # --force plans the destroy, the busy instance first (if NVML refuses, nothing else changed yet).
    plan = plan_apply(Nvml(), parse_config({"version": 1, "gpus": [{"index": 0, "instances": ["7g.40gb@0"]}]}),
                      force=True)
    assert [str(op) for op in plan.gpus[0].ops] == ["destroy 3g.20gb@4", "destroy 4g.20gb@0", "create 7g.40gb@0"]
    assert f"pid {pid}" in plan.gpus[0].forced[0]


def test_a_mig_parted_file_is_read_and_applied(nv, tmp_path, capsys):
    nv.fake_reset(gpus=["A100-40GB", "A100-40GB"], instances={0: [("3g.20gb", 0)], 1: [("7g.40gb", 0)]})
    kept = _gi_ids(nv, 0)[0]
    path = tmp_path / "mig-parted.yaml"
    path.write_text(
        "version: v1\nmig-configs:\n"
        "  all-1g.5gb:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n"
        "  mixed:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"3g.20gb\": 1, \"1g.5gb\": 2}\n")
    code, _, err = run(capsys, "apply", str(path))
    assert code == 2 and "2 mig-configs" in err and "-c NAME" in err
    assert run(capsys, "assert", str(path), "-c", "mixed")[0] == 1
    code, out, _ = run(capsys, "apply", str(path), "-c", "mixed")
    assert code == 0, out
    # GPU 0 keeps its 3g at 0 (only the 1g instances are new); GPU 1's 7g makes room for the counts
    assert _layouts(nv) == ["3g.20gb@0,1g.5gb@4,1g.5gb@5", "1g.5gb@2,1g.5gb@3,3g.20gb@4"]
    assert _gi_ids(nv, 0)[0] == kept
    assert all(e["call"] != "nvmlDeviceCreateGpuInstance" for e in _changes(nv))  # explicit placements only
    code, out, _ = run(capsys, "assert", str(path), "-c", "mixed")
    assert code == 0, out
    code, out, _ = run(capsys, "assert", str(path), "-c", "all-1g.5gb")
    assert code == 1 and "GPU 0: 0 x 1g.5gb" not in out and "GPU 0: 2 x 1g.5gb; mig-configs.all-1g.5gb[0] wants 7" in out
    # and the export in mig-parted's format is mig-parted's own shape
    code, out, _ = run(capsys, "export", "--format", "mig-parted")
    assert code == 0
    assert yaml.safe_load(out) == {"version": "v1", "mig-configs": {"current": [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 2, "3g.20gb": 1}}]}}


def test_mig_mode_is_never_changed(nv, tmp_path, capsys):
    nv.fake_reset(gpus=["A100-40GB", "A100-40GB"], mig=[False, True], instances={1: [("7g.40gb", 0)]})
    on = tmp_path / "on.yaml"
    on.write_text("version: 1\ngpus: [{index: all, instances: [7g.40gb@0]}]\n")
    code, _, err = run(capsys, "apply", str(on))
    assert code == 2 and "GPU 0" in err and "nvidia-smi -i 0 -mig 1" in err and "resets the GPU" in err
    assert "--allow-mig-change" in err
    with pytest.raises(MigModeError):
        plan_apply(Nvml(), load_config(on))
    code, out, _ = run(capsys, "assert", str(on))
    assert code == 1 and "GPU 0: MIG is disabled; gpus[0] wants it enabled" in out
    off = tmp_path / "off.yaml"
    off.write_text("version: v1\nmig-configs:\n  all-off:\n    - {devices: all, mig-enabled: false}\n")
    code, _, err = run(capsys, "apply", str(off), "--dry-run")
    assert code == 2 and "nvidia-smi -i 1 -mig 0" in err and "destroys its 1 instances" in err
    assert _changes(nv) == []  # the fixture checks that SetMigMode was never called


def test_allow_mig_change_is_the_only_way_to_change_it(nv, tmp_path, capsys):
    nv._mig_change_allowed = True
    nv.fake_reset(gpus=["A100-40GB"], mig=False)
    path = tmp_path / "on.yaml"
    path.write_text("version: 1\ngpus: [{index: 0, instances: [3g.20gb@4]}]\n")
    code, out, _ = run(capsys, "apply", str(path), "--allow-mig-change")
    assert code == 0, out
    gpu = nv.fake_state()["gpus"][0]
    assert gpu["set_mig_mode_calls"] == [1] and _layouts(nv) == ["3g.20gb@4"]


# ---- failures -------------------------------------------------------------------------------------
def test_a_failed_step_says_what_was_done(nv):
    nv.fake_reset(gpus=["A100-40GB"], instances={0: [("1g.5gb", 0)]})
    nv.fake_fail_next("nvmlDeviceCreateGpuInstanceWithPlacement", nv.NVMLError_InsufficientResources)
    cfg = parse_config({"version": 1, "gpus": [{"index": 0, "instances": ["4g.20gb@0"]}]})
    with pytest.raises(ApplyError) as exc:
        apply(Nvml(), plan_apply(Nvml(), cfg))
    msg = str(exc.value)
    assert "create 4g.20gb@0 failed" in msg and "steps done before it: GPU 0: destroy 1g.5gb@0" in msg


def test_a_gpu_changed_since_the_plan_is_left_alone(nv):
    nv.fake_reset(gpus=["A100-40GB"], instances={0: [("1g.5gb", 0), ("1g.5gb", 1)]})
    plan = plan_apply(Nvml(), parse_config({"version": 1, "gpus": [{"index": 0, "instances": ["7g.40gb@0"]}]}))
    nv.fake_destroy_behind_back(0, 1)
    with pytest.raises(ApplyError, match="changed since the plan"):
        apply(Nvml(), plan)
    assert _layouts(nv) == ["1g.5gb@0"]


def test_configs_that_do_not_fit_the_gpus(nv, tmp_path, capsys):
    nv.fake_reset(gpus=["A100-40GB"])
    with pytest.raises(MigConfigError, match=r"gpus\[0\]: there is no GPU 3 \(GPUs: 0\)"):
        plan_apply(Nvml(), parse_config({"version": 1, "gpus": [{"index": 3, "instances": []}]}))
    path = tmp_path / "a80.yaml"
    path.write_text("version: 1\ngpus: [{index: 0, model: A100-80GB, instances: [7g.80gb@0]}]\n")
    code, _, err = run(capsys, "apply", str(path))
    assert code == 2 and "GPU 0 is a A100-40GB" in err and "for A100-80GB" in err
    code, out, _ = run(capsys, "assert", str(path))
    assert code == 1 and "GPU 0 is a A100-40GB" in out


# ---- CLI exit codes -----------------------------------------------------------------------------
def test_cli_exit_codes(nv, tmp_path, capsys, monkeypatch):
    nv.fake_reset(gpus=["A100-40GB"], instances={0: [("7g.40gb", 0)]})
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\ngpus: [{index: 0, instances: [7g.40gb@0]}]\n")
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\ngpus: [{index: 0, instances: [3g.20gb@4]}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 3\ngpus: []\n")
    assert run(capsys, "assert", str(good))[0] == 0
    code, out, _ = run(capsys, "assert", str(other))
    assert code == 1 and "3g.20gb@4 is missing" in out and "7g.40gb@0 is not in gpus[0]" in out
    for verb in ("assert", "apply"):
        code, _, err = run(capsys, verb, str(bad))
        assert code == 2 and "version" in err and "v1 (a mig-parted file)" in err and len(err.splitlines()) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(good.read_text()))
    assert run(capsys, "assert", "-")[0] == 0  # "-" reads the config from standard input
    code, _, err = run(capsys, "assert", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "export", "--format", "json")
    assert code == 2 and "json" in err and "mig-parted, migsched" in err


def test_cli_without_nvml_prints_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now fails
    code, _, err = run(capsys, "export")
    assert code == 2 and "nvidia-ml-py" in err and len(err.strip().splitlines()) == 1
