"""`migsched validate`: what would run, each entry's need and smallest instance, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import run_cli as run
from migsched.cli.validate_cmds import smallest_fit
from migsched.hardware import get_model

JOBS = """version: 1
jobs:
  - name: small
    class: scientific
    count: 3
    model: {runtime_s: 10, peak_gib: 3, power_w: 250}
  - {name: hinted, class: ml-train, hint_gib: 12}
"""
HUGE = "  - {name: huge, class: llm, model: {runtime_s: 5, peak_gib: 500}}\n"


def write(tmp_path: Path, text: str, name: str = "jobs.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_smallest_fit_takes_the_least_memory_that_holds_the_need():
    a80 = get_model("A100-80GB")
    assert smallest_fit(a80, 3.0).name == "1g.10gb"
    assert smallest_fit(a80, 15.0).name == "1g.20gb"
    assert smallest_fit(a80, 500.0) is None


def test_every_entry_fits_exits_0_with_per_model_answers(tmp_path, capsys):
    code, out, _ = run(capsys, "validate", write(tmp_path, JOBS), "--gpu", "A100-80GB", "--gpu", "A30-24GB", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["jobs"] == 4 and doc["models"] == ["A100-80GB", "A30-24GB"] and doc["fits_nowhere"] == []
    small, hinted = doc["entries"]
    assert small["count"] == 3 and small["need_source"] == "model peak"
    assert small["fits"]["A100-80GB"] == {"need_gib": 3.0, "profile": "1g.10gb"}
    assert small["fits"]["A30-24GB"]["profile"] == "1g.6gb"
    assert hinted["need_source"] == "hint" and hinted["fits"]["A100-80GB"]["need_gib"] > 12  # hint x margin
    assert any("A30-24GB" in n and "caps" in n for n in doc["notes"])  # 250 W > A30's 135 W range


def test_an_entry_that_fits_nowhere_exits_1_and_is_named(tmp_path, capsys):
    code, out, _ = run(capsys, "validate", write(tmp_path, JOBS + HUGE))
    assert code == 1 and "fits nowhere on any catalogued GPU: 'huge'" in out
    assert "4 jobs" not in out and "5 jobs in 3 entries" in out


def test_fits_nowhere_is_per_named_model(tmp_path, capsys):
    big = JOBS + "  - {name: big, class: llm, model: {runtime_s: 5, peak_gib: 60}}\n"
    code, out, _ = run(capsys, "validate", write(tmp_path, big), "--gpu", "A30-24GB")
    assert code == 1 and "fits nowhere on A30-24GB: 'big'" in out
    code, _, _ = run(capsys, "validate", write(tmp_path, big), "--gpu", "A100-80GB")
    assert code == 0


def test_an_invalid_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "validate", write(tmp_path, "version: 2\njobs: []\n"))
    assert code == 2 and "version must be 1" in err


def test_an_unknown_model_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "validate", write(tmp_path, JOBS), "--gpu", "Z9000")
    assert code == 2 and "valid GPU models" in err


def test_a_task_file_is_validated_with_its_class(tmp_path, capsys):
    code, out, _ = run(capsys, "validate", write(tmp_path, "python a.py\npython b.py\n", "t.txt"),
                       "--class", "ml-train", "--gpu", "A100-80GB", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["jobs"] == 2 and {e["class"] for e in doc["entries"]} == {"ml-train"}
    assert doc["entries"][0]["command"] == "python a.py"


def test_text_output_is_bounded(tmp_path, capsys):
    many = "version: 1\njobs:\n" + "".join(f"  - {{name: j{i}, class: scientific}}\n" for i in range(120))
    code, out, _ = run(capsys, "validate", write(tmp_path, many), "--gpu", "A100-80GB")
    assert code == 0 and "... and 70 more entries" in out
    assert "j49" in out and "j50 " not in out


def test_an_estimate_at_the_describe_bounds_prints_in_a_few_digits(tmp_path, capsys):
    """A `describe:` at its bounds gives a 1.7e10 GiB analytic estimate: the cell says so in
    three significant digits, not twelve (the table is narrow); the JSON keeps the figure."""
    huge = ("version: 1\njobs:\n  - {name: big, class: ml-train, command: train, "
            "describe: {params_m: 1.0e9, batch_size: 4096, dtype: fp32, optimizer: adam}}\n")
    code, out, _ = run(capsys, "validate", write(tmp_path, huge), "--gpu", "A100-80GB")
    assert code == 1 and "- (1.68e+10)" in out and "16801059246" not in out
    code, out, _ = run(capsys, "validate", write(tmp_path, huge), "--gpu", "A100-80GB", "--json")
    assert json.loads(out)["entries"][0]["fits"]["A100-80GB"]["need_gib"] > 1e10


def test_fmt_gib_keeps_one_decimal_below_ten_thousand():
    from migsched.report.table import fmt_gib
    assert [fmt_gib(x) for x in (0.825, 17.0, 9999.9, 10000.0, 1.68e10)] == [
        "0.8", "17.0", "9999.9", "1e+04", "1.68e+10"]
