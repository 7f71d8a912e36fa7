"""Layout configs (migsched `version: 1`, mig-parted `version: v1`) and count maps -> placements: pure."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from migsched.errors import MigschedError
from migsched.hardware import get_model
from migsched.mig.config import (
    MIG_PARTED,
    MIGSCHED,
    GpuSpec,
    MigConfig,
    MigConfigError,
    dump_config,
    dump_mig_parted,
    load_config,
    parse_config,
    parse_mig_parted,
    place_counts,
    target_layout,
)
from migsched.partition import Layout
from migsched.partition.search import maximal_combinations

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")

MIGSCHED_DOC = {
    "version": 1,
    "gpus": [
        {"index": 0, "model": "A100-40GB", "mig": True, "instances": ["3g.20gb@4", "2g.10gb@0", "1g.5gb@2"]},
        {"index": "all", "mig": True, "instances": []},
        {"index": 2, "mig": False},
    ],
}

# Shaped like mig-parted's examples/config.yaml: several named configs, devices all or a list,
# device-filter as a string and as a list, mig-enabled false without mig-devices.
MIG_PARTED_TEXT = """\
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-balanced:
    - device-filter: ["0x20B010DE", "0x20B110DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 2
        "2g.10gb": 1
        "3g.20gb": 1
    - device-filter: "0x20B210DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 2
        "2g.20gb": 1
        "3g.40gb": 1
  custom:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices: {}
    - devices: [2]
      mig-enabled: true
      mig-devices: {"1c.1g.5gb": 7}
"""


def _err(data, name=None) -> str:
    with pytest.raises(MigschedError) as exc:
        parse_config(data, name, source="cfg.yaml")
    assert "\n" not in str(exc.value)  # the CLI prints it as one line
    return str(exc.value)


# ---- migsched format ----------------------------------------------------------------------------
def test_migsched_file_parses_into_specs():
    cfg = parse_config(MIGSCHED_DOC)
    assert cfg.format == MIGSCHED
    g0, every, g2 = cfg.specs
    assert g0.devices == (0,) and g0.model == "A100-40GB" and g0.mig
    assert g0.placements == (("3g.20gb", 4), ("2g.10gb", 0), ("1g.5gb", 2))
    assert every.devices is None and every.placements == ()
    assert g2.devices == (2,) and not g2.mig
    # the entry naming a GPU wins over `index: all`, which covers every other GPU
    assert cfg.spec_for(0, A40) is g0 and cfg.spec_for(2, A40) is g2 and cfg.spec_for(5, A40) is every
    assert str(target_layout(g0, A40)) == "2g.10gb@0,1g.5gb@2,3g.20gb@4"
    assert target_layout(g2, A40) is None


def test_migsched_instances_accept_the_cli_text_form():
    cfg = parse_config({"version": 1, "gpus": [{"index": 0, "instances": "3g.20gb@4, 4g.20gb@0"}]})
    assert cfg.specs[0].placements == (("3g.20gb", 4), ("4g.20gb", 0))


@pytest.mark.parametrize("change, field, words", [
    ({"version": 2}, "version", ["2", "1 (a migsched layout file)", "v1 (a mig-parted file)"]),
    ({"gpus": []}, "gpus", ["at least 1"]),
    ({"gpus": [{"index": -1}]}, "gpus[0].index", ["GPU index", "'all'", "-1"]),
    ({"gpus": [{"index": 0, "instance": []}]}, "gpus[0].instance", ["Extra inputs"]),
    ({"gpus": [{"index": 0, "instances": ["3g.20gb"]}]}, "gpus[0].instances[0]", ["PROFILE@START", "'3g.20gb'"]),
    ({"gpus": [{"index": 0, "model": "A100-50GB"}]}, "gpus[0].model", ["A100-50GB", "A100-40GB", "H100-80GB"]),
    ({"gpus": [{"index": 0, "model": "A100-40GB", "instances": ["9g.5gb@0"]}]}, "gpus[0].instances",
     ["9g.5gb", "1g.5gb", "7g.40gb"]),
    ({"gpus": [{"index": 0, "model": "A100-40GB", "instances": ["3g.20gb@0", "2g.10gb@2"]}]}, "gpus[0].instances",
     ["overlap", "[2, 3]"]),
    ({"gpus": [{"index": 0, "model": "A100-40GB", "instances": ["3g.20gb@2"]}]}, "gpus[0].instances",
     ["legal starts: 0, 4"]),
    ({"gpus": [{"index": 1, "mig": False, "instances": ["7g.40gb@0"]}]}, "gpus[0].instances", ["mig is false"]),
    ({"gpus": [{"index": 1}, {"index": 1}]}, "gpus[1].index", ["gpus[0]"]),
    ({"gpus": [{"index": 0, "mig": "yes"}]}, "gpus[0].mig", ["boolean"]),
])
def test_bad_migsched_configs_name_the_field_and_value(change, field, words):
    msg = _err({"version": 1, "gpus": [{"index": 0}], **change})
    assert "cfg.yaml" in msg and f"{field}:" in msg
    for w in words:
        assert w in msg


def test_top_level_must_be_a_mapping_and_name_needs_mig_parted():
    assert "mapping" in _err(["version", 1])
    assert "has no named configs" in _err(MIGSCHED_DOC, name="x")


# ---- mig-parted format --------------------------------------------------------------------------
def test_mig_parted_configs_parse_and_select():
    configs = parse_mig_parted(yaml.safe_load(MIG_PARTED_TEXT))
    assert list(configs) == ["all-disabled", "all-balanced", "custom"]
    bal = parse_config(yaml.safe_load(MIG_PARTED_TEXT), "all-balanced")
    assert bal.format == MIG_PARTED and bal.name == "all-balanced"
    a40, a80 = bal.specs
    assert a40.counts == (("1g.5gb", 2), ("2g.10gb", 1), ("3g.20gb", 1)) and a40.devices is None
    assert a40.device_filter == ("0x20B010DE", "0x20B110DE") and a80.device_filter == "0x20B210DE"
    # device-filter picks the group by PCI device id (A100-40GB SXM4 is 0x20B0, A100-80GB 0x20B2)
    assert bal.spec_for(0, A40) is a40 and bal.spec_for(3, A80) is a80
    assert bal.spec_for(0, get_model("H100-80GB")) is None
    assert str(target_layout(a40, A40)) == "2g.10gb@0,1g.5gb@2,1g.5gb@3,3g.20gb@4"
    assert str(target_layout(a80, A80)) == "2g.20gb@0,1g.10gb@2,1g.10gb@3,3g.40gb@4"
    custom = parse_config(yaml.safe_load(MIG_PARTED_TEXT), "custom")
    assert custom.spec_for(1, A40).counts == () and custom.spec_for(5, A40) is None  # no such index: skipped
    assert str(target_layout(custom.spec_for(2, A40), A40)) == ",".join(f"1g.5gb@{s}" for s in range(7))
    off = parse_config(yaml.safe_load(MIG_PARTED_TEXT), "all-disabled").specs[0]
    assert not off.mig and off.counts is None


def test_mig_parted_selection_errors():
    doc = yaml.safe_load(MIG_PARTED_TEXT)
    msg = _err(doc)
    assert "3 mig-configs" in msg and "all-disabled, all-balanced, custom" in msg and "-c NAME" in msg
    msg = _err(doc, "balanced")
    assert "'balanced'" in msg and "all-balanced" in msg and "custom" in msg
    one = {"version": "v1", "mig-configs": {"only": doc["mig-configs"]["custom"]}}
    assert parse_config(one).name == "only"  # a single config needs no -c


@pytest.mark.parametrize("group, field, words", [
    ({"devices": "all"}, "mig-configs.c[0].mig-enabled", ["Field required"]),
    ({"devices": "some", "mig-enabled": True, "mig-devices": {}}, "mig-configs.c[0].devices", ["'all'", "'some'"]),
    ({"devices": [0, "1"], "mig-enabled": True, "mig-devices": {}}, "mig-configs.c[0].devices", ["list of GPU"]),
    ({"devices": "all", "mig-enabled": True}, "mig-configs.c[0]", ["mig-devices is required"]),
    ({"devices": "all", "mig-enabled": False, "mig-devices": {"1g.5gb": 1}}, "mig-configs.c[0]", ["must be empty"]),
    ({"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": -1}}, "mig-configs.c[0].mig-devices.1g.5gb",
     ["greater than or equal to 0"]),
    ({"devices": "all", "mig-enabled": True, "mig-devices": {"big": 1}}, "mig-configs.c[0].mig-devices", ["'big'"]),
    ({"devices": "all", "mig-enabled": True, "mig-devices": {"1c.3g.20gb": 2}}, "mig-configs.c[0].mig-devices",
     ["1-slice compute instances", "'3g.20gb'"]),
    ({"devices": "all", "device-filter": "A100", "mig-enabled": False}, "mig-configs.c[0].device-filter",
     ["'A100'", "0x20B210DE"]),
    ({"devices": "all", "mig-enabled": False, "mig-device": {}}, "mig-configs.c[0].mig-device", ["Extra inputs"]),
])
def test_bad_mig_parted_configs_name_the_field_and_value(group, field, words):
    msg = _err({"version": "v1", "mig-configs": {"c": [group]}})
    assert f"{field}:" in msg, msg
    for w in words:
        assert w in msg


def test_mig_parted_needs_configs():
    assert "mig-configs:" in _err({"version": "v1"})
    assert "mig-configs.c:" in _err({"version": "v1", "mig-configs": {"c": []}})


# ---- count maps -> explicit placements ---------------------------------------------------------
def test_count_maps_become_explicit_placements_that_keep_room():
    assert str(place_counts(A40, {"3g.20gb": 1})) == "3g.20gb@4"  # 0..3 stay free for a 4g
    assert str(place_counts(A40, {"1g.5gb": 3})) == "1g.5gb@4,1g.5gb@5,1g.5gb@6"
    assert str(place_counts(A40, {"4g.20gb": 1, "3g.20gb": 1})) == "4g.20gb@0,3g.20gb@4"
    assert str(place_counts(A40, {"1g.5gb": 0})) == "(empty)"
    # 4 and 5, not 5 and 6: a 1g.10gb@6 still fits; names are geometry-matched and merged
    assert str(place_counts(A40, [("1g.5gb", 1), ("MIG 1g.5gb", 1)])) == "1g.5gb@4,1g.5gb@5"


def test_count_maps_prefer_keeping_existing_and_busy_instances():
    cur = Layout.of(A40, [("3g.20gb", 0)])
    assert str(place_counts(A40, {"3g.20gb": 1, "1g.5gb": 2}, cur)) == "3g.20gb@0,1g.5gb@4,1g.5gb@5"
    cur = Layout.of(A40, [("1g.5gb", 0), ("1g.5gb", 1)]).mark(1, True)
    # one of the two may stay: the busy one does
    assert str(place_counts(A40, {"1g.5gb": 1, "3g.20gb": 1, "2g.10gb": 1}, cur)) == "1g.5gb@1,2g.10gb@2,3g.20gb@4"
    cur = cur.mark(1, False).mark(0, True)
    assert str(place_counts(A40, {"1g.5gb": 1, "3g.20gb": 1, "2g.10gb": 1}, cur)) == "1g.5gb@0,2g.10gb@2,3g.20gb@4"


@pytest.mark.parametrize("model", [A40, A80, get_model("A30-24GB")], ids=lambda m: m.name)
def test_every_maximal_combination_is_placed_exactly_and_legally(model):
    for combo in maximal_combinations(model):
        lay = place_counts(model, dict(combo))
        assert lay.is_valid()
        assert Counter(i.profile.name for i in lay) == Counter(dict(combo))
        assert place_counts(model, dict(combo)).key == lay.key  # deterministic


@pytest.mark.parametrize("counts, words", [
    ({"3g.20gb": 3}, ["3 x 3g.20gb", "maximum of 2"]),
    ({"4g.20gb": 1, "3g.20gb": 2}, ["no legal A100-40GB layout", "1 x 4g.20gb, 2 x 3g.20gb", "migsched layouts"]),
    ({"2g.20gb": 1}, ["'2g.20gb'", "2g.10gb"]),
])
def test_unplaceable_count_maps_are_named(counts, words):
    with pytest.raises(MigConfigError) as exc:
        place_counts(A40, counts, where="mig-configs.x[0].mig-devices")
    assert "mig-configs.x[0].mig-devices:" in str(exc.value)
    for w in words:
        assert w in str(exc.value)


# ---- round trips --------------------------------------------------------------------------------
def test_migsched_round_trip():
    cfg = parse_config(MIGSCHED_DOC)
    again = parse_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    exported = MigConfig(MIGSCHED, (GpuSpec((0,), True, (("3g.20gb", 4),), None, "A100-40GB",
                                            in_use=(("3g.20gb@4", (4242,)),)),))
    text = dump_config(exported)
    assert "in_use" in text and parse_config(yaml.safe_load(text)) == exported


def test_mig_parted_written_back_unchanged(tmp_path):
    original = yaml.safe_load(MIG_PARTED_TEXT)
    configs = parse_mig_parted(original)
    text = dump_mig_parted(configs)
    assert yaml.safe_load(text) == original
    assert "devices: [0, 1]" in text  # lists inline, as mig-parted writes them
    path = tmp_path / "mp.yaml"
    path.write_text(text)
    assert load_config(path, "custom") == configs["custom"]


def test_migsched_layouts_become_mig_parted_counts_merged_like_mig_parted_export():
    def gpu(i, *items):
        return GpuSpec((i,), True, tuple(items), None, "A100-40GB")

    same = MigConfig(MIGSCHED, (gpu(0, ("3g.20gb", 4), ("1g.5gb", 0)), gpu(1, ("1g.5gb", 0), ("3g.20gb", 0))))
    doc = yaml.safe_load(dump_mig_parted({"current": same}))
    assert doc == {"version": "v1", "mig-configs": {"current": [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 1, "3g.20gb": 1}}]}}
    mixed = MigConfig(MIGSCHED, (gpu(0), gpu(1, ("7g.40gb", 0)), gpu(2),
                                 GpuSpec((3,), False, (), None, None)))
    groups = yaml.safe_load(dump_mig_parted({"current": mixed}))["mig-configs"]["current"]
    assert groups == [
        {"devices": [0, 2], "mig-enabled": True, "mig-devices": {}},
        {"devices": [1], "mig-enabled": True, "mig-devices": {"7g.40gb": 1}},
        {"devices": [3], "mig-enabled": False, "mig-devices": {}},
    ]
    back = parse_config({"version": "v1", "mig-configs": {"current": groups}})
    assert back.spec_for(2, A40).counts == () and back.spec_for(1, A40).counts == (("7g.40gb", 1),)


def test_count_maps_cannot_be_written_as_placements():
    cfg = parse_config(yaml.safe_load(MIG_PARTED_TEXT), "all-balanced")
    with pytest.raises(MigConfigError, match="gives counts, not placements"):
        dump_config(cfg)


def test_load_config_reports_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(MigConfigError, match="cannot read layout config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ngpus: [\n")
    with pytest.raises(MigConfigError) as exc:
        load_config(bad)
    assert "not valid YAML" in str(exc.value) and "\n" not in str(exc.value)
