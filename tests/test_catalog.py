"""The hardware catalogue (`gpus.yaml`) against the published MIG tables.

Every expected number below is copied from the project's reference notes (mig-hardware.md) so
that the test suite does not read them at run time; each table cites its section.
"""

from __future__ import annotations

import pytest

from migsched.errors import UnknownNameError
from migsched.hardware import all_models, get_model, model_names, resolve_nvml_name

# mig-hardware.md §2.1: placements of the 8-slot family (A100-40GB, A100-80GB, H100-80GB,
# H100-94GB, H200, B200; the catalogue also uses it for H100-96GB and GH200-144GB, whose
# profile IDs, counts and fractions are the same, §1.6/§1.7).
# geometry key -> (profile ID, allowed starts, size in memory slices, max count); the geometry
# key is (compute slices, memory slices, +me).
PLACEMENTS_8_SLOT = {
    (1, 1, False): (19, (0, 1, 2, 3, 4, 5, 6), 1, 7),
    (1, 1, True): (20, (0, 1, 2, 3, 4, 5, 6), 1, 1),
    (1, 2, False): (15, (0, 2, 4, 6), 2, 4),
    (2, 2, False): (14, (0, 2, 4), 2, 3),
    (3, 4, False): (9, (0, 4), 4, 2),
    (4, 4, False): (5, (0,), 4, 1),
    (7, 8, False): (0, (0,), 8, 1),
}

# mig-hardware.md §1.1: enum value -> nvidia-smi profile ID on A100/H100/H200/B200/GB200 (D).
NVML_ENUM_8_SLOT = {19: 0x0, 20: 0x7, 15: 0x9, 14: 0x1, 9: 0x2, 5: 0x3, 0: 0x4}

# Profile names per model, in the order of the §2.1 rows:
# 1g, 1g+me, 1g two-slot, 2g, 3g, 4g, 7g (mig-hardware.md §1.3-§1.8).
NAMES_8_SLOT = {
    "A100-40GB": ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    "A100-80GB": ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100-80GB": ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100-94GB": ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
    "H100-96GB": ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
    "H200-141GB": ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
    "GH200-144GB": ("1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb"),
    "B200-180GB": ("1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
}
_GEOMETRY_ORDER = list(PLACEMENTS_8_SLOT)

# mig-hardware.md §1.2 and §2.2: A30-24GB, 4 compute x 4 memory slices.
# name -> (ID, NVML enum, compute, memory, SMs, max count, starts)
A30_PROFILES = {
    "1g.6gb": (14, 0x0, 1, 1, 14, 4, (0, 1, 2, 3)),
    "1g.6gb+me": (21, 0x7, 1, 1, 14, 1, (0, 1, 2, 3)),
    "2g.12gb": (5, 0x1, 2, 2, 28, 2, (0, 2)),
    "2g.12gb+me": (6, 0x8, 2, 2, 28, 1, (0, 2)),
    "4g.24gb": (0, 0x3, 4, 4, 56, 1, (0,)),
}

# SM counts from real `-lgip` output (mig-hardware.md §1.3-§1.8), same row order as
# NAMES_8_SLOT. None = the reference marks the value UNVERIFIED (B200 3g/4g/7g, §1.8).
SMS_8_SLOT = {
    "A100-40GB": (14, 14, 14, 28, 42, 56, 98),
    "A100-80GB": (14, 14, 14, 28, 42, 56, 98),
    "H100-80GB": (16, 16, 26, 32, 60, 64, 132),
    "H100-94GB": (16, 16, 26, 32, 60, 64, 132),
    "H200-141GB": (16, 16, 26, 32, 60, 64, 132),
    "B200-180GB": (18, 18, 30, 36, None, None, None),
}

# NVML `memorySizeMB` of A100-40GB (go-nvml's A100 mock, "real values"; mig-hardware.md §1.3).
A100_40GB_MIB = {
    "1g.5gb": 4864, "1g.5gb+me": 4864, "1g.10gb": 9856, "2g.10gb": 9856,
    "3g.20gb": 19968, "4g.20gb": 19968, "7g.40gb": 40192,
}

EIGHT_SLOT_MODELS = sorted(NAMES_8_SLOT)


def _rows_8_slot():
    for model in EIGHT_SLOT_MODELS:
        for geometry, name in zip(_GEOMETRY_ORDER, NAMES_8_SLOT[model], strict=True):
            yield pytest.param(model, name, geometry, id=f"{model}-{name}")


def test_catalogue_lists_every_model_of_the_reference():
    assert set(model_names()) == set(NAMES_8_SLOT) | {"A30-24GB"}


@pytest.mark.parametrize(("model", "name", "geometry"), list(_rows_8_slot()))
def test_8_slot_profile_matches_placement_table(model, name, geometry):
    m = get_model(model)
    p = m.profile(name)
    pid, starts, size, max_count = PLACEMENTS_8_SLOT[geometry]
    assert p.name == name
    assert (p.compute_slices, p.memory_slices, p.media) == geometry
    assert p.profile_id == pid
    assert p.nvml_enum == NVML_ENUM_8_SLOT[pid]
    assert p.starts == starts
    assert p.size == size
    assert p.max_count == max_count


@pytest.mark.parametrize("model", EIGHT_SLOT_MODELS)
def test_8_slot_models_have_exactly_the_tabled_profiles(model):
    m = get_model(model)
    assert (m.compute_slices, m.memory_slices, m.max_instances) == (7, 8, 7)  # §0 "Max instances"
    assert sorted(m.profile_names()) == sorted(NAMES_8_SLOT[model])


@pytest.mark.parametrize("name", sorted(A30_PROFILES))
def test_a30_profile_matches_placement_table(name):
    m = get_model("A30-24GB")
    pid, enum, compute, memory, sms, max_count, starts = A30_PROFILES[name]
    p = m.profile(name)
    assert (p.profile_id, p.nvml_enum) == (pid, enum)
    assert (p.compute_slices, p.memory_slices, p.size) == (compute, memory, memory)
    assert (p.sm_count, p.max_count, p.starts) == (sms, max_count, starts)
    assert p.media == name.endswith("+me")


def test_a30_shape():
    m = get_model("A30-24GB")
    assert (m.compute_slices, m.memory_slices, m.max_instances) == (4, 4, 4)  # §0, §1.2
    assert sorted(m.profile_names()) == sorted(A30_PROFILES)


@pytest.mark.parametrize("model", sorted(SMS_8_SLOT))
def test_sm_counts(model):
    m = get_model(model)
    for name, sms in zip(NAMES_8_SLOT[model], SMS_8_SLOT[model], strict=True):
        p = m.profile(name)
        if sms is None:
            assert p.status == "UNVERIFIED", f"{model} {name}: SMs are unverified in §1.8"
        else:
            assert p.sm_count == sms, f"{model} {name}"


def test_a100_sms_are_14_per_compute_slice():
    # mig-hardware.md §1.3: "A100 SM counts are strictly 14 x compute slices".
    for model in ("A100-40GB", "A100-80GB"):
        for p in get_model(model).profiles:
            assert p.sm_count == 14 * p.compute_slices


def test_a100_40gb_memory_mib():
    m = get_model("A100-40GB")
    assert {p.name: p.memory_mib for p in m.profiles} == A100_40GB_MIB


def test_catalogue_self_consistency():
    for m in all_models():
        ids = [p.profile_id for p in m.profiles]
        assert len(ids) == len(set(ids)), m.name
        assert sum(p.media for p in m.profiles) >= 1
        for p in m.profiles:
            assert p.status in {"V", "C", "D", "UNVERIFIED"}, (m.name, p.name)
            assert p.compute_slices <= m.compute_slices
            assert p.memory_mib <= m.memory_mib
            assert 1 <= p.max_count <= m.max_instances
            for s in p.starts:
                assert 0 <= s and s + p.size <= m.memory_slices, (m.name, p.name, s)
        assert m.status in {"V", "C", "D", "UNVERIFIED"}
        assert m.largest.compute_slices == m.compute_slices
        assert m.whole_gpu.memory_mib == m.memory_mib


# ---- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nvml_name", "model"),
    [
        # Exact names NVML reports (mig-hardware.md §1.3-§1.8, §8).
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA H100 PCIe", "H100-80GB"),
        ("NVIDIA H100 NVL", "H100-94GB"),
        ("NVIDIA H200", "H200-141GB"),
        ("NVIDIA H200 NVL", "H200-141GB"),
        ("NVIDIA GH200 144G HBM3e", "GH200-144GB"),
        ("NVIDIA A30", "A30-24GB"),
        ("NVIDIA B200", "B200-180GB"),
        # Case and spacing do not matter.
        ("nvidia a100-sxm4-80gb", "A100-80GB"),
        ("  NVIDIA A30 ", "A30-24GB"),
        # Unlisted variants fall back on family + memory size in the name.
        ("NVIDIA A100-SXM-80GB", "A100-80GB"),
        ("NVIDIA A100 40GB SXM", "A100-40GB"),
    ],
)
def test_resolve_nvml_name(nvml_name, model):
    resolved = resolve_nvml_name(nvml_name)
    assert resolved is not None and resolved.name == model
    assert get_model(nvml_name).name == model


def test_resolve_nvml_name_uses_memory_when_the_name_has_none():
    assert resolve_nvml_name("NVIDIA H100 SXM5", memory_mib=81559).name == "H100-80GB"
    assert resolve_nvml_name("NVIDIA H100 SXM5", memory_mib=95830).name == "H100-94GB"


@pytest.mark.parametrize(
    "nvml_name",
    ["NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB", "", "NVIDIA A100 160GB", "NVIDIA H100 SXM"],
)
def test_resolve_nvml_name_unknown(nvml_name):
    assert resolve_nvml_name(nvml_name) is None


@pytest.mark.parametrize("spelling", ["A100-80GB", "a100-80gb", "A100-80gb", " a100-80GB "])
def test_model_names_are_case_insensitive(spelling):
    assert get_model(spelling).name == "A100-80GB"


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        get_model("A100-160GB")
    msg = str(err.value)
    assert "A100-160GB" in msg
    for name in model_names():
        assert name in msg


@pytest.mark.parametrize(
    ("model", "spelling", "profile"),
    [
        # Drivers 535/545 printed 3g.39gb on some A100-80GB (ISS-mp31, §1.4); nos uses 7g.79gb.
        ("A100-80GB", "3g.39gb", "3g.40gb"),
        ("A100-80GB", "7g.79gb", "7g.80gb"),
        # Some GB200/B200 systems report the 1g as 1g.24gb or 1g.23gb (ISS-mp227, §1.8).
        ("B200-180GB", "1g.24gb", "1g.23gb"),
        # Case, the "MIG " prefix of full names and the CI prefix (§0 name format).
        ("A100-80GB", "3G.40GB", "3g.40gb"),
        ("A100-80GB", "MIG 3g.40gb", "3g.40gb"),
        ("A100-80GB", "1c.3g.40gb", "3g.40gb"),
        ("A100-80GB", "1g.10gb+ME", "1g.10gb+me"),
        ("A100-40GB", "1g.10gb", "1g.10gb"),  # the REV2 1-slice, not the 2g
        ("H100-94GB", "3g.46gb", "3g.47gb"),
        # By profile ID (what nvidia-smi -lgip prints).
        ("A100-80GB", 9, "3g.40gb"),
        ("A100-80GB", "15", "1g.20gb"),
        ("A30-24GB", 6, "2g.12gb+me"),
    ],
)
def test_profile_lookup_by_geometry(model, spelling, profile):
    assert get_model(model).profile(spelling).name == profile


@pytest.mark.parametrize("spelling", ["5g.40gb", "3g.80gb", "1g.10gb+me.all", "banana", 42])
def test_unknown_profile_lists_valid_names(spelling):
    m = get_model("A100-80GB")
    with pytest.raises(UnknownNameError) as err:
        m.profile(spelling)
    for name in m.profile_names():
        assert name in str(err.value)


def test_compute_instance_profiles():
    # mig-hardware.md §3: CI profiles in an empty GI, as (slices, count).
    m = get_model("A100-80GB")
    ci = {p.compute_slices: [(c.slices, c.count) for c in m.ci_profiles_for(p)] for p in m.profiles}
    assert ci[3] == [(1, 3), (2, 1), (3, 1)]
    assert ci[7] == [(1, 7), (2, 3), (3, 2), (4, 1), (7, 1)]
