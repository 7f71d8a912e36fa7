"""Plain task files (migsched.jobs.taskfile): one command per line, comments, continuations,
shell-style splitting without a shell, families, errors that name the line; and the dispatcher
`load_job_source` between task files and YAML/JSON job files."""

from __future__ import annotations

import json
import shlex

import pytest

from migsched.errors import JobFileError, UnknownNameError
from migsched.jobs.model import JobClass
from migsched.jobs.taskfile import load_job_source, load_tasks


def tasks(tmp_path, text: str, name="tasks.txt", **kw):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return load_tasks(p, **kw)


def argvs(jobs):
    return [j.spec.argv for j in jobs]


def error(tmp_path, text: str, name="tasks.txt") -> str:
    with pytest.raises(JobFileError) as exc:
        tasks(tmp_path, text, name)
    return str(exc.value)


def test_one_job_per_command_numbered_in_order(tmp_path):
    jobs = tasks(tmp_path, "python train.py --lr 0.1\n./bfs graph.txt\necho done\n")
    assert [j.job_id for j in jobs] == ["task-0001", "task-0002", "task-0003"]
    s = jobs[0].spec
    assert (s.name, s.job_class, s.hint_gib, s.env, s.cwd, jobs[0].truth) == \
        ("task-0001", JobClass.SCIENTIFIC, None, (), None, None)
    assert s.argv == ("python", "train.py", "--lr", "0.1") and s.command == "python train.py --lr 0.1"


def test_ids_widen_past_9999_tasks(tmp_path):
    jobs = tasks(tmp_path, "true\n" * 10000)
    assert (jobs[0].job_id, jobs[-1].job_id) == ("task-00001", "task-10000")
    assert tasks(tmp_path, "true\n" * 9999)[-1].job_id == "task-9999"


def test_the_class_applies_to_every_task_and_an_unknown_one_lists_the_valid(tmp_path):
    assert {j.spec.job_class for j in tasks(tmp_path, "a\nb\n", job_class="llm")} == {JobClass.LLM}
    with pytest.raises(UnknownNameError, match="'quantum'.*ml-train"):
        tasks(tmp_path, "a\n", job_class="quantum")


def test_blank_lines_and_comments_are_ignored(tmp_path):
    text = "# a sweep\n\n   \n  # indented comment\npython a.py  # the baseline\n\t\n#python b.py\n"
    assert argvs(tasks(tmp_path, text)) == [("python", "a.py")]


def test_a_hash_inside_a_word_or_quotes_is_literal(tmp_path):
    jobs = tasks(tmp_path, "run --tag=#1 x#y '#quoted' \"# too\" \\#escaped\n")
    assert argvs(jobs) == [("run", "--tag=#1", "x#y", "#quoted", "# too", "#escaped")]


def test_a_trailing_backslash_continues_the_command(tmp_path):
    text = "python train.py --lr 0.01 \\\n    --out runs/b \\\n    --seed 3\necho next\n"
    assert argvs(tasks(tmp_path, text)) == [("python", "train.py", "--lr", "0.01", "--out", "runs/b", "--seed", "3"),
                                           ("echo", "next")]


def test_backslash_newline_is_removed_as_in_the_shell(tmp_path):
    # no space before the backslash: the words join, as `sh` would join them
    assert argvs(tasks(tmp_path, "echo ab\\\ncd\n")) == [("echo", "abcd")]


def test_an_escaped_backslash_at_the_end_does_not_continue(tmp_path):
    assert argvs(tasks(tmp_path, "echo a\\\\\necho b\n")) == [("echo", "a\\"), ("echo", "b")]


def test_a_comment_ends_the_line_even_before_a_backslash(tmp_path):
    assert argvs(tasks(tmp_path, "echo a # note \\\necho b\n")) == [("echo", "a"), ("echo", "b")]


def test_crlf_line_ends_and_a_bom_are_accepted(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes("\ufeffpython a.py \\\r\n  --x 1\r\necho b\r\n".encode())
    assert argvs(load_tasks(p)) == [("python", "a.py", "--x", "1"), ("echo", "b")]


def test_quotes_group_words_and_are_removed(tmp_path):
    jobs = tasks(tmp_path, """python run.py --name "two words" --msg 'it said "hi"' --path a\\ b\n""")
    assert argvs(jobs) == [("python", "run.py", "--name", "two words", "--msg", 'it said "hi"', "--path", "a b")]
    assert shlex.split(jobs[0].spec.command) == list(jobs[0].spec.argv)  # command is the quoted display form


@pytest.mark.parametrize("line, argv", [
    ("./sim < in.txt > out.txt 2>&1", ("./sim", "<", "in.txt", ">", "out.txt", "2>&1")),
    ("a | b ; c && d || e &", ("a", "|", "b", ";", "c", "&&", "d", "||", "e", "&")),
    ("echo $HOME ${USER} *.py ~ $(rm -rf x) `id`", ("echo", "$HOME", "${USER}", "*.py", "~", "$(rm", "-rf", "x)", "`id`")),
    ("echo a>b c;d", ("echo", "a>b", "c;d")),
])
def test_shell_metacharacters_stay_literal_words(tmp_path, line, argv):
    assert argvs(tasks(tmp_path, line + "\n")) == [argv]


def test_leading_assignments_set_the_environment(tmp_path):
    jobs = tasks(tmp_path, "OMP_NUM_THREADS=4 DATA='/a b' ./bfs X=1\n")
    s = jobs[0].spec
    assert s.env == (("DATA", "/a b"), ("OMP_NUM_THREADS", "4")) and s.argv == ("./bfs", "X=1")


@pytest.mark.parametrize("line, family", [
    ("python train.py --lr 3", "python train.py"),
    ("python -u /home/me/exp/train.py --lr 3", "python train.py"),
    ("/usr/bin/python3 -m pkg.mod", "python3 pkg.mod"),
    ("./nbody --n 4000 --steps 10", "nbody"),
    ("./bfs --n 4 data/graph1M.txt", "bfs graph1M.txt"),
    ("bash scripts/run/ 3", "bash run"),
    ("./solver", "solver"),
])
def test_family_is_the_program_and_its_first_non_option_argument(tmp_path, line, family):
    assert tasks(tmp_path, line + "\n")[0].spec.family == family


def test_lines_running_one_script_share_a_family(tmp_path):
    jobs = tasks(tmp_path, "python train.py --lr 0.1\npython train.py --lr 0.01\npython eval.py\n")
    assert [j.spec.family for j in jobs] == ["python train.py", "python train.py", "python eval.py"]


# ---- errors name the file, the line, the text and the fix ---------------------------------
def test_unbalanced_quotes_name_the_line_text_and_fix(tmp_path):
    msg = error(tmp_path, "# header\necho ok\npython a.py --name 'oops\n")
    assert "tasks.txt" in msg and "line 3" in msg and "python a.py --name 'oops" in msg
    assert "No closing quotation" in msg and "close the quote" in msg


def test_an_error_in_a_continued_command_names_its_lines(tmp_path):
    msg = error(tmp_path, "echo ok\npython a.py \\\n  --msg \"unclosed\n")
    assert "lines 2-3" in msg and "--msg" in msg


@pytest.mark.parametrize("line, fragment", [('"" --flag', "empty program name"), ("''", "empty program name"),
                                            ("A=1 B=2", "only sets environment variables")])
def test_a_command_without_a_program_is_an_error(tmp_path, line, fragment):
    msg = error(tmp_path, "echo ok\n" + line + "\n")
    assert "line 2" in msg and fragment in msg and line in msg and "start it with the program" in msg


def test_a_backslash_on_the_last_line_is_an_error(tmp_path):
    msg = error(tmp_path, "echo a\npython b.py \\")
    assert "line 2" in msg and "ends with a backslash" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n  # comments\n"])
def test_a_file_without_tasks_says_so(tmp_path, text):
    assert "holds no task" in error(tmp_path, text)


def test_missing_unreadable_and_binary_files_are_named(tmp_path):
    with pytest.raises(JobFileError, match="cannot read task file .*missing.txt.*No such file"):
        load_tasks(tmp_path / "missing.txt")
    with pytest.raises(JobFileError, match="Is a directory"):
        load_tasks(tmp_path)
    (tmp_path / "a.out").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    with pytest.raises(JobFileError, match=r"a.out.*not a text file.*NUL byte at offset 7"):
        load_tasks(tmp_path / "a.out")
    (tmp_path / "latin1.txt").write_bytes("echo caf\xe9\n".encode("latin-1"))
    with pytest.raises(JobFileError, match=r"latin1.txt.*not UTF-8.*0xe9"):
        load_tasks(tmp_path / "latin1.txt")


# ---- load_job_source ----------------------------------------------------------------------
YAML = "version: 1\njobs:\n  - name: bfs\n    class: scientific\n    command: ./bfs g.txt\n"


@pytest.mark.parametrize("name", ["jobs.yaml", "jobs.YML", "jobs.json"])
def test_job_files_go_to_the_job_file_loader(tmp_path, name):
    p = tmp_path / name
    text = YAML if not name.endswith("json") else json.dumps(
        {"version": 1, "jobs": [{"name": "bfs", "class": "scientific", "command": "./bfs g.txt"}]})
    p.write_text(text)
    jobs = load_job_source(p)
    assert [j.job_id for j in jobs] == ["bfs"] and jobs[0].spec.argv == ("./bfs", "g.txt")


@pytest.mark.parametrize("name", ["tasks.txt", "tasks", "sweep.sh", "jobs.yaml.txt"])
def test_anything_else_is_a_task_file(tmp_path, name):
    p = tmp_path / name
    p.write_text(YAML)  # even YAML text: the name decides
    jobs = load_job_source(p)
    assert jobs[0].job_id == "task-0001" and jobs[0].spec.argv == ("version:", "1")


def test_the_task_class_passes_through(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a\n")
    assert load_job_source(p, job_class=JobClass.ML_INFER)[0].spec.job_class == JobClass.ML_INFER


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_an_empty_job_file_says_so(tmp_path, text):
    p = tmp_path / "jobs.yaml"
    p.write_text(text)
    with pytest.raises(JobFileError, match="jobs.yaml.*is empty"):
        load_job_source(p)


def test_a_binary_job_file_is_a_job_file_error(tmp_path):
    p = tmp_path / "jobs.yaml"
    p.write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(JobFileError, match="jobs.yaml.*not UTF-8"):
        load_job_source(p)


def test_an_empty_task_file_says_so_through_the_dispatcher(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# nothing yet\n")
    with pytest.raises(JobFileError, match="holds no task"):
        load_job_source(p)


def test_require_model_refuses_a_task_file_and_checks_a_job_file(tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("python a.py\n")
    with pytest.raises(JobFileError, match="cannot be simulated.*YAML job file"):
        load_job_source(t, require_model=True)
    y = tmp_path / "jobs.yaml"
    y.write_text(YAML)
    with pytest.raises(JobFileError, match="field model: required to simulate"):
        load_job_source(y, require_model=True)
