"""Tests of the workload catalogue, the mix generators and the `workloads`/`mix` CLI verbs."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from migsched.errors import MigschedError, UnknownNameError
from migsched.workloads import (
    MixParameterError,
    catalog_constants,
    get_template,
    list_mixes,
    list_templates,
    make_mix,
    mix_parameters,
    mix_summary,
    parse_ratio,
    split_counts,
    template_names,
    to_job_entry,
)
from migsched.workloads.catalog import ENTRY_FIELDS

GiB = 2**30
TEMPLATES = list_templates()
MIX_NAMES = [name for name, _ in list_mixes()]
PAPER_RATIOS = ["1:0", "1:1", "3:1", "5:3", "7:1", "1:3", "3:5", "1:7"]


def _template_of(job_name: str):
    """Mix job names are '<template>-<index>'."""
    return get_template(job_name.rsplit("-", 1)[0])


# ---------------------------------------------------------------------------------------- catalogue


def test_catalogue_is_not_empty_and_names_are_unique():
    names = template_names()
    assert len(names) >= 30
    assert len(names) == len(set(names))


@pytest.mark.parametrize("t", TEMPLATES, ids=lambda t: t.name)
def test_every_template_is_complete(t):
    assert t.source.strip(), "every template names its source"
    assert all(isinstance(g, str) and g for g in t.guess)
    assert t.job_class in ("scientific", "ml-train", "ml-infer", "llm")
    assert t.kind in ("compute", "memory")
    assert t.size in ("small", "large")
    assert t.family
    assert set(t.speedup) <= {1, 2, 3, 4, 7}
    assert t.speedup[7] == 1.0
    assert all(0 < s <= 1.2 for s in t.speedup.values())
    assert t.peak_gib > 0
    assert 0 <= t.start_gib <= t.peak_gib
    assert t.runtime_s > 0
    assert t.power_w >= 0
    assert t.hint_gib is None or t.hint_gib > 0


@pytest.mark.parametrize("t", TEMPLATES, ids=lambda t: t.name)
def test_runtime_is_step_time_times_steps_and_steps_are_guesses(t):
    if t.timing is None:
        return
    assert t.runtime_s == pytest.approx(t.timing["step_s"] * t.timing["steps"], abs=0.05)
    if t.job_class == "llm":  # one decode step per generated token; the token count is the guess
        assert t.timing["steps"] == t.describe["generated_tokens"]
        assert t.is_guess("describe.generated_tokens") and t.is_guess("timing.step_s")
    else:
        assert t.is_guess("timing.steps")


def test_memory_shape_per_class():
    for t in TEMPLATES:
        shape = t.model["memory"]
        if t.job_class == "scientific":
            assert shape == "constant", t.name
        elif t.job_class == "llm":
            assert shape == "linear", t.name
        elif t.job_class == "ml-train":
            assert shape == "ramp" and t.model["ramp_fraction"] <= 0.1, t.name


def test_static_hints_are_close_and_llm_hints_are_the_initial_memory():
    for t in TEMPLATES:
        if t.job_class == "llm":
            assert t.hint_gib == pytest.approx(t.start_gib), t.name
            assert t.hint_gib < t.peak_gib, f"{t.name}: the LLM hint must be too low"
            assert t.reports_progress
        else:
            assert abs(t.hint_gib - t.peak_gib) <= 0.15 * t.peak_gib, t.name


def test_llm_memory_follows_weights_plus_kv_cache():
    ctx = catalog_constants()["llm_context_gib"]
    for t in list_templates(job_class="llm"):
        d = t.describe
        bytes_per = {"fp16": 2, "bf16": 2, "fp32": 4, "int8": 1, "int4": 0.5}[d["dtype"]]
        weights = d["params_m"] * 1e6 * bytes_per / GiB
        kv_per_token = 2 * d["layers"] * d["kv_heads"] * d["head_dim"] * 2
        start = weights + ctx + kv_per_token * d["batch_size"] * d["context_tokens"] / GiB
        peak = start + kv_per_token * d["batch_size"] * d["generated_tokens"] / GiB
        assert t.start_gib == pytest.approx(start, abs=0.01), t.name
        assert t.peak_gib == pytest.approx(peak, abs=0.01), t.name


def test_llm_sizes_span_several_profiles():
    peaks = sorted(t.peak_gib for t in list_templates(job_class="llm"))
    assert peaks[0] < 9.6 < peaks[-1] and any(p > 19.5 for p in peaks) and peaks[-1] > 39.3


def test_rodinia_peaks_follow_the_input_sizes():
    ctx = catalog_constants()["cuda_context_gib"]
    n = 32 * 2**20
    assert get_template("bfs-graph32M").peak_gib == pytest.approx((15 * n + 4 * 6 * n) / GiB + ctx, abs=0.01)
    for size in (11000, 15000):
        assert get_template(f"srad_v1-{size}").peak_gib == pytest.approx(32 * size**2 / GiB + ctx, abs=0.01)
    for size in (8192, 16384):
        assert get_template(f"srad_v2-{size}").peak_gib == pytest.approx(24 * size**2 / GiB + ctx, abs=0.01)
        assert get_template(f"dwt2d-{size}").peak_gib == pytest.approx(31 * size**2 / GiB + ctx, abs=0.01)
    for label, inputs in (("8M", 8388608), ("16M", 16777216), ("32M", 33554432), ("64M", 67108864)):
        assert get_template(f"backprop-{label}").peak_gib == pytest.approx(140 * inputs / GiB + ctx, abs=0.01)
    for size in (16384, 32768):
        assert get_template(f"nw-{size}").peak_gib == pytest.approx(8 * (size + 1) ** 2 / GiB + ctx, abs=0.01)


def test_the_groups_rodinia_inputs_are_all_there_with_both_kinds():
    rodinia = list_templates(family="rodinia")
    assert {t.name for t in rodinia} == {
        "bfs-graph32M", "backprop-8M", "backprop-16M", "backprop-32M", "backprop-64M", "lavaMD-boxes100",
        "dwt2d-8192", "dwt2d-16384", "nw-16384", "nw-32768", "srad_v1-11000", "srad_v1-15000",
        "srad_v2-8192", "srad_v2-16384",
    }
    for kind in ("compute", "memory"):
        for size in ("small", "large"):
            assert any(t.kind == kind and t.size == size for t in rodinia), (kind, size)
    # memory-bound ones barely slow down on one slice; compute-bound ones scale with slices
    assert all(t.speed_1g >= 0.8 for t in rodinia if t.kind == "memory")
    assert all(t.speed_1g <= 0.3 for t in rodinia if t.kind == "compute")


def test_calibrated_numbers_match_the_reference_tables():
    assert get_template("resnet50-cifar-bs256").speedup == {1: 0.32, 2: 0.58, 3: 0.85, 4: 0.93, 7: 1.0}
    assert get_template("bert-base-bs4").speedup[2] == 0.33 and get_template("bert-base-bs4").is_guess("model.speedup.1")
    assert get_template("resnet50-cifar-bs64").runtime_s == pytest.approx(0.028 * 20000)
    assert get_template("gromacs-md").speedup[3] == pytest.approx(115.5 / 118.6, abs=0.001)
    assert get_template("matmul-fp16").speed_1g == pytest.approx(38.7 / (286.2 * 98 / 108), abs=0.001)
    assert get_template("bert-squad-infer").speed_1g == 0.21


def test_get_template_unknown_and_case_insensitive():
    with pytest.raises(UnknownNameError) as info:
        get_template("no-such-job")
    assert "bfs-graph32M" in info.value.valid
    assert get_template("BFS-GRAPH32M").name == "bfs-graph32M"


def test_to_job_entry_gives_plain_independent_dicts():
    t = get_template("qwen2.5-7b-gen")
    e = to_job_entry(t, name="x-001", arrival_s=5.0, model={"power_w": 1.0})
    assert set(e) <= set(ENTRY_FIELDS)
    assert e["name"] == "x-001" and e["arrival_s"] == 5.0 and e["class"] == "llm"
    assert e["model"]["power_w"] == 1.0 and e["model"]["peak_gib"] == t.peak_gib
    assert type(e["model"]["speedup"]) is dict
    e["model"]["speedup"][1] = 0.99
    assert t.speedup[1] != 0.99
    yaml.safe_dump(e), json.dumps(e)
    assert "hint_gib" not in to_job_entry(t, hint_gib=None)
    with pytest.raises(UnknownNameError):
        to_job_entry(t, colour="red")


def test_no_template_or_entry_reads_the_shared_reference_tree():
    src = Path(__file__).resolve().parents[1] / "src" / "migsched" / "workloads"
    for path in src.iterdir():
        if path.suffix in (".py", ".yaml"):
            assert "/work/shared" not in path.read_text(encoding="utf-8"), path


# ---------------------------------------------------------------------------------------- mixes


def test_list_mixes():
    assert MIX_NAMES == ["scientific", "ml", "llm", "mixed", "online"]
    assert all(desc for _, desc in list_mixes())
    assert mix_parameters("online")["arrival_mean_s"] > 0


@pytest.mark.parametrize("name", MIX_NAMES)
def test_mix_is_deterministic_per_seed_and_differs_across_seeds(name):
    a, b, c = make_mix(name, 32, seed=11), make_mix(name, 32, seed=11), make_mix(name, 32, seed=12)
    assert a == b
    assert a != c
    assert a["version"] == 1 and len(a["jobs"]) == 32


@pytest.mark.parametrize("name", MIX_NAMES)
def test_mix_names_are_unique_and_entries_plain(name):
    doc = make_mix(name, 40, seed=3)
    names = [j["name"] for j in doc["jobs"]]
    assert len(set(names)) == len(names)
    assert all(j["count"] == 1 for j in doc["jobs"])
    json.loads(json.dumps(doc))
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc


def test_mix_does_not_touch_the_global_random_state():
    random.seed(5)
    state = random.getstate()
    make_mix("online", 16, seed=1)
    assert random.getstate() == state


@pytest.mark.parametrize("ratio", PAPER_RATIOS)
@pytest.mark.parametrize("jobs", [16, 32])
def test_scientific_ratio_is_honoured(ratio, jobs):
    doc = make_mix("scientific", jobs, seed=1, ratio=ratio)
    kinds = Counter(_template_of(j["name"]).kind for j in doc["jobs"])
    c, m = parse_ratio(ratio)
    assert kinds["compute"] == jobs * c // (c + m)
    assert kinds["memory"] == jobs * m // (c + m)
    assert all(_template_of(j["name"]).family == "rodinia" for j in doc["jobs"])


def test_three_to_one_over_32_jobs_gives_24_and_8():
    doc = make_mix("scientific", 32, seed=0, ratio="3:1")
    assert Counter(_template_of(j["name"]).kind for j in doc["jobs"]) == {"compute": 24, "memory": 8}


def test_size_ratio_is_honoured_within_each_kind():
    doc = make_mix("scientific", 32, seed=2, ratio="1:1", size_ratio="1:3")
    counts = Counter((_template_of(j["name"]).kind, _template_of(j["name"]).size) for j in doc["jobs"])
    assert counts == {("compute", "small"): 4, ("compute", "large"): 12, ("memory", "small"): 4, ("memory", "large"): 12}


def test_mixed_class_ratio_and_ml_train_infer_ratio():
    doc = make_mix("mixed", 32, seed=4, class_ratio="2:1:1")
    by_class = mix_summary(doc)["by_class"]
    assert by_class["scientific"] == 16 and by_class["llm"] == 8
    assert by_class.get("ml-train", 0) + by_class.get("ml-infer", 0) == 8
    ml = mix_summary(make_mix("ml", 32, seed=4, class_ratio="1:1"))["by_class"]
    assert ml == {"ml-train": 16, "ml-infer": 16}


def test_llm_mix_has_growing_memory_and_low_hints():
    for j in make_mix("llm", 12, seed=9)["jobs"]:
        assert j["class"] == "llm" and j["reports_progress"] is True
        assert j["model"]["memory"] == "linear" and j["hint_gib"] < j["model"]["peak_gib"]


def test_online_arrivals_are_poisson_like_and_batch_mixes_arrive_at_zero():
    doc = make_mix("online", 200, seed=8, arrival_mean_s=30)
    times = [j["arrival_s"] for j in doc["jobs"]]
    assert times[0] == 0.0 and times == sorted(times)
    mean_gap = times[-1] / (len(times) - 1)
    assert 20 < mean_gap < 40
    for name in ("scientific", "ml", "llm", "mixed"):
        assert all(j["arrival_s"] == 0.0 for j in make_mix(name, 8, seed=1)["jobs"])


def test_default_scientific_mix_is_a_meaningful_batch():
    s = mix_summary(make_mix("scientific", 32, seed=0))
    assert 10 * 60 < s["serial_runtime_s"] < 2 * 3600  # one job at a time on a whole GPU
    assert s["max_peak_gib"] < 78.5  # fits an A100-80GB


def test_split_counts_and_parse_ratio():
    assert split_counts(32, (3, 1)) == [24, 8]
    assert split_counts(32, (1, 0)) == [32, 0]
    assert split_counts(7, (1, 1, 1)) == [3, 2, 2]
    assert sum(split_counts(33, (5, 3))) == 33
    assert parse_ratio("5 : 3") == (5, 3)
    for bad in ("3", "a:b", "-1:2", "0:0", "1:2:3"):
        with pytest.raises(MixParameterError):
            parse_ratio(bad)


def test_make_mix_rejects_bad_arguments():
    with pytest.raises(UnknownNameError):
        make_mix("no-such-mix", 4, seed=0)
    with pytest.raises(UnknownNameError):
        make_mix("llm", 4, seed=0, ratio="1:1")
    for bad_jobs in (0, -3, 2.5, True):
        with pytest.raises(MixParameterError):
            make_mix("scientific", bad_jobs, seed=0)
    with pytest.raises(MixParameterError):
        make_mix("online", 4, seed=0, arrival_mean_s=0)
    with pytest.raises(MigschedError):
        make_mix("scientific", 4, seed=0, ratio="3")


def test_every_mix_and_template_validates_as_a_job_file():
    jobs_mod = pytest.importorskip("migsched.jobs")
    load = getattr(jobs_mod, "load_jobs_dict", None)
    if load is None:
        pytest.skip("migsched.jobs has no load_jobs_dict")
    for name in MIX_NAMES:
        for seed in (0, 1):
            assert len(load(make_mix(name, 32, seed=seed), require_model=True)) == 32
    entries = [to_job_entry(t) for t in TEMPLATES]
    assert len(load({"version": 1, "jobs": entries}, require_model=True)) == len(TEMPLATES)


# ---------------------------------------------------------------------------------------- CLI


def _main(argv):
    from migsched.cli.main import main

    return main(argv)


def test_cli_mix_writes_a_parseable_yaml_file(tmp_path):
    out = tmp_path / "mix.yaml"
    assert _main(["mix", "scientific", "--jobs", "16", "--seed", "5", "--ratio", "3:1", "--out", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc == make_mix("scientific", 16, seed=5, ratio="3:1")


def test_cli_mix_writes_json_and_stdout_yaml(tmp_path, capsys):
    out = tmp_path / "mix.json"
    assert _main(["mix", "online", "--jobs", "6", "--seed", "2", "--arrival-mean-s", "15", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert len(doc["jobs"]) == 6 and doc["jobs"][1]["arrival_s"] > 0
    capsys.readouterr()
    assert _main(["mix", "llm", "--jobs", "3", "--seed", "1"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == make_mix("llm", 3, seed=1)


def test_cli_lists_templates_and_mixes(capsys):
    assert _main(["workloads", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(template_names())
    assert all({"name", "class", "kind", "peak_gib", "runtime_s", "speed_1g", "source"} <= set(r) for r in rows)
    assert _main(["workloads"]) == 0
    assert "bfs-graph32M" in capsys.readouterr().out
    assert _main(["workloads", "lavaMD-boxes100"]) == 0
    assert "lavaMD-boxes100" in capsys.readouterr().out
    assert _main(["mixes"]) == 0
    assert "scientific" in capsys.readouterr().out
    assert _main(["mix", "--list"]) == 0
    assert "online" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["mix", "no-such-mix"],
        ["workloads", "no-such-template"],
        ["workloads", "--family", "nope"],
        ["mix", "llm", "--ratio", "1:1"],
        ["mix", "scientific", "--ratio", "3"],
        ["mix", "scientific", "--out", "mix.txt"],
        ["mix"],
    ],
)
def test_cli_mistakes_exit_2(argv, capsys):
    assert _main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_every_template_is_documented():
    doc = Path(__file__).resolve().parents[1] / "docs" / "workloads.md"
    if not doc.exists():
        pytest.skip("docs/workloads.md not present")
    text = doc.read_text(encoding="utf-8")
    missing = [n for n in template_names() if f"`{n}`" not in text]
    assert not missing, f"templates missing from docs/workloads.md: {missing}"
