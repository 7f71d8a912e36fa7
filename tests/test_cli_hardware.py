"""`migsched gpus`, `layouts` and `check-layout` through the real entry point."""

from __future__ import annotations

import json

import pytest

from migsched.cli.main import main
from migsched.hardware import get_model, model_names
from migsched.partition import Layout


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `migsched ARGV`; return (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # a verb may end the process with an explicit status
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---- gpus -----------------------------------------------------------------------------------------
def test_gpus_json_lists_every_model_with_profiles(capsys):
    code, out, _ = run(capsys, "gpus", "--json")
    assert code == 0
    data = json.loads(out)
    assert [m["name"] for m in data] == model_names()
    a80 = next(m for m in data if m["name"] == "A100-80GB")
    assert (a80["compute_slices"], a80["memory_slices"]) == (7, 8)
    g3 = next(p for p in a80["profiles"] if p["name"] == "3g.40gb")
    # mig-hardware.md §2.1: 3g.40gb is ID 9, starts 0 and 4, 4 memory slices, at most 2.
    assert (g3["id"], g3["starts"], g3["memory_slices"], g3["max_count"]) == (9, [0, 4], 4, 2)
    assert g3["nvml_enum"] == 2 and g3["compute_slices"] == 3 and g3["media"] is False
    assert {"memory_mib", "sm_count", "status", "source"} <= set(g3)


def test_gpus_table(capsys):
    code, out, _ = run(capsys, "gpus")
    assert code == 0
    for name in model_names():
        assert name in out
    for text in ("3g.40gb", "1g.10gb+me", "1_SLICE_REV2", "0,2,4,6", "UNVERIFIED"):
        assert text in out


def test_gpus_one_model(capsys):
    code, out, _ = run(capsys, "gpus", "a30-24gb", "--json")
    assert code == 0
    (m,) = json.loads(out)
    assert m["name"] == "A30-24GB"
    assert [p["name"] for p in m["profiles"]][:1] == ["1g.6gb"]


# ---- layouts --------------------------------------------------------------------------------------
def test_layouts_json_gives_28_legal_layouts(capsys):
    code, out, _ = run(capsys, "layouts", "A100-80GB", "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 28  # mig-hardware.md §2.4
    m = get_model("A100-80GB")
    keys = set()
    for items in data:
        assert all(set(item) == {"profile", "start"} for item in items)
        lay = Layout.of(m, [(item["profile"], item["start"]) for item in items])  # raises if illegal
        assert not any(lay.can_place(p) for p in m.usable_profiles())
        keys.add(lay.key)
    assert len(keys) == 28


def test_layouts_a30_table(capsys):
    code, out, _ = run(capsys, "layouts", "a30-24gb")
    assert code == 0
    assert "4 maximal layouts" in out
    # mig-hardware.md §2.2: {4g}; {2g x 2}; {2g, 1g x 2}; {1g x 4}
    assert "4g.24gb@0" in out
    assert "2g.12gb@0,2g.12gb@2" in out
    assert "1g.6gb@0,1g.6gb@1,2g.12gb@2" in out
    assert "1g.6gb@0,1g.6gb@1,1g.6gb@2,1g.6gb@3" in out
    assert "|2g.12gb----|2g.12gb----|" in out
    assert "4/4" in out


def test_layouts_drawing_and_usage(capsys):
    code, out, _ = run(capsys, "layouts", "A100-80GB")
    assert code == 0
    assert "28 maximal layouts" in out and "77 placeable" in out
    assert "|4g.40gb----------------|3g.40gb----------------|" in out
    assert "|1g---|1g---|1g---|1g---|1g---|1g---|1g---|.....|" in out  # 7 x 1g: slot 7 free
    assert "6/7" in out and "7/8" in out


def test_layouts_media(capsys):
    code, out, _ = run(capsys, "layouts", "A30-24GB", "--media", "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data) == 8
    assert all(sum(i["profile"].endswith("+me") for i in lay) <= 1 for lay in data)
    assert any(i["profile"] == "2g.12gb+me" for lay in data for i in lay)


# ---- check-layout ---------------------------------------------------------------------------------
def test_check_layout_valid(capsys):
    code, out, _ = run(capsys, "check-layout", "A100-80GB", "3g.40gb@4,2g.20gb@0,1g.10gb@2")
    assert code == 0
    assert "valid A100-80GB layout 2g.20gb@0,1g.10gb@2,3g.40gb@4" in out
    assert "placeable now: 1g.10gb" in out
    assert "stranded: 0 compute slices, 0 memory slots" in out


def test_check_layout_valid_json(capsys):
    code, out, _ = run(capsys, "check-layout", "a100-80gb", "3g.40gb@0,3g.40gb@4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True and data["violations"] == []
    assert data["layout"] == [{"profile": "3g.40gb", "start": 0}, {"profile": "3g.40gb", "start": 4}]
    assert data["fragmentation"]["stranded_compute"] == 1  # mig-hardware.md §2.3


def test_check_layout_invalid_names_every_conflict(capsys):
    code, out, _ = run(capsys, "check-layout", "A100-80GB", "3g.40gb@3,2g.20gb@0,1g.10gb@1")
    assert code == 1
    assert "INVALID" in out
    assert "3g.40gb@3" in out and "legal starts: 0, 4" in out
    assert "2g.20gb@0 and 1g.10gb@1 overlap" in out


def test_check_layout_invalid_json(capsys):
    code, out, _ = run(capsys, "check-layout", "A30-24GB", "4g.24gb@0,1g.6gb@3", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["valid"] is False and data["fragmentation"] is None
    assert any("4g.24gb@0 and 1g.6gb@3 overlap" in v for v in data["violations"])


@pytest.mark.parametrize("text", ["3g.40gb", "3g.40gb@four", "3g.40gb@4;2g.20gb@0"])
def test_check_layout_unparsable(capsys, text):
    code, _, err = run(capsys, "check-layout", "A100-80GB", text)
    assert code == 2
    assert "error:" in err and "PROFILE@START" in err


def test_unknown_model_exits_2_listing_models(capsys):
    for argv in (["layouts", "V100-16GB"], ["check-layout", "nope", "3g.40gb@4"], ["gpus", "x"]):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert "A100-80GB" in err and "H100-80GB" in err
        assert out == ""


def test_unknown_profile_exits_2_listing_profiles(capsys):
    code, _, err = run(capsys, "check-layout", "A100-80GB", "5g.40gb@0")
    assert code == 2
    assert "5g.40gb" in err and "3g.40gb" in err and "7g.80gb" in err


def test_missing_argument_is_a_usage_error(capsys):
    code, _, err = run(capsys, "layouts")
    assert code == 2
    assert "MODEL" in err and "Traceback" not in err
