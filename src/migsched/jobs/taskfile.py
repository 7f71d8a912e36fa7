"""Plain task files, as HPC users write them for GNU parallel or disBatch: one command per line.

    # sweep.txt
    python train.py --lr 0.1 --out runs/a
    python train.py --lr 0.01 \\
        --out runs/b
    OMP_NUM_THREADS=4 ./bfs graph.txt

Rules: blank lines and lines whose first non-blank character is `#` are ignored; a `#` that
starts a word later in a line starts a comment, as in the shell (quote it to pass it on); a
trailing backslash continues the command on the next line (the backslash and the newline are
removed, as in the shell). Each command is split shell-style (`shlex`) and later run without a
shell, so `|`, `>`, `;`, `&&`, `$VAR` and `*` are literal arguments, never operators. Leading
`NAME=value` words set the job's environment, as they would in a shell.

The jobs are `task-0001`, `task-0002`, ... in file order (at least 4 digits), with no memory hint
(left to estimation) and a `family` of the program's basename plus its first non-option argument
(`python train.py --lr 3` -> "python train.py"), so the lines running one script learn from
each other.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from migsched.errors import JobFileError, UnknownNameError
from migsched.jobs.model import Job, JobClass, JobSpec
from migsched.jobs.spec import load_jobs
from migsched.jobs.yaml_io import read_text
from migsched.limits import MAX_JOBS, MAX_TEXT_CHARS

JOB_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _commands(text: str, where: str) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each command, continuations joined, comment lines dropped."""
    out: list[tuple[int, int, str]] = []
    pending: list[str] = []
    first = 0
    for no, raw in enumerate(text.split("\n"), start=1):  # not splitlines: \f or \x1c are no line ends
        line = _strip_comment(raw.rstrip("\r"))  # per line, as a shell: `cmd # note \` continues nothing
        if not pending and not line.strip():
            continue
        if not pending:
            first = no
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd count: the last backslash escapes the newline
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append((first, no, "".join(pending)))
        pending = []
    if pending:
        raise JobFileError(f"{where} line {first}: the command {''.join(pending).strip()!r} ends with a backslash "
                           "at the end of the file; remove the backslash or add the line it continues to")
    return out


def _strip_comment(text: str) -> str:
    """`text` up to an unquoted `#` that starts a word (shell rules; shlex would cut `a#b` too)."""
    quote = ""
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i]
    return text


def _family(argv: tuple[str, ...]) -> str:
    """The program's basename plus its first non-option, non-number argument's basename."""
    def base(word: str) -> str:
        return os.path.basename(word.rstrip("/")) or word

    prog = base(argv[0])
    for word in argv[1:]:
        if word.startswith("-") or _NUMBER.fullmatch(word):
            continue  # options and option values like `--n 4` say nothing about what runs
        return f"{prog} {base(word)}"
    return prog


def _task(where: str, first: int, last: int, text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    try:
        words = shlex.split(text)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise JobFileError(f"{where} {lines}: cannot split {text.strip()!r}: {exc}; close the quote, or escape "
                           "a literal quote with a backslash (\\\" or \\')") from None
    env: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or not words[0].strip():
        what = "only sets environment variables" if env and not words else "has an empty program name"
        raise JobFileError(f"{where} {lines}: the command {text.strip()!r} {what}; start it with the program to "
                           "run (e.g. python script.py)")
    return tuple(words), tuple(sorted(env.items()))


def load_tasks(path: str | Path, job_class: JobClass | str = JobClass.SCIENTIFIC) -> list[Job]:
    """Read a task file into jobs `task-0001`, `task-0002`, ... (see the module docstring).

    Args:
        path: the task file.
        job_class: the declared class of every task (the task file cannot say).

    Raises:
        JobFileError: the file is missing, unreadable, binary or holds no task, or a line does not
            split (the message names the file, the line, the text and the fix).
        UnknownNameError: `job_class` is not a job class.
    """
    try:
        cls = JobClass(job_class)
    except ValueError:
        raise UnknownNameError("job class", job_class, [c.value for c in JobClass]) from None
    p = Path(path)
    where = f"task file {str(p)!r}"
    commands = _commands(read_text(p, "task file"), where)
    if not commands:
        raise JobFileError(f"{where} holds no task (only blank lines and # comments); write one command per line")
    if len(commands) > MAX_JOBS:
        raise JobFileError(f"{where} holds {len(commands):,} tasks; the limit is {MAX_JOBS:,} (docs/job-file.md, "
                           "Limits); split it into several runs")
    for first, last, text in commands:
        if len(text) > MAX_TEXT_CHARS:
            raise JobFileError(f"{where} line {first}: the command is {len(text):,} characters long; the limit is "
                               f"{MAX_TEXT_CHARS:,} (Linux's longest single argument)")
    width = max(4, len(str(len(commands))))
    jobs = []
    for k, (first, last, text) in enumerate(commands, start=1):
        argv, env = _task(where, first, last, text)
        job_id = f"task-{k:0{width}d}"
        spec = JobSpec(job_id=job_id, name=job_id, job_class=cls, hint_gib=None, command=shlex.join(argv),
                       argv=argv, env=env, family=_family(argv))
        jobs.append(Job(spec, truth=None))
    return jobs


def load_job_source(path: str | Path, *, require_model: bool = False,
                    job_class: JobClass | str = JobClass.SCIENTIFIC) -> list[Job]:
    """Read jobs from a YAML/JSON job file (`.yaml`, `.yml`, `.json`) or else a plain task file.

    Args:
        path: the file.
        require_model: every job must carry a simulation `model:` (a task file never does).
        job_class: the class of a task file's tasks (a job file names its own).

    Raises:
        JobFileError: the file is missing, unreadable, binary, empty or invalid.
    """
    p = Path(path)
    if p.suffix.lower() in JOB_FILE_SUFFIXES:
        return load_jobs(p, require_model=require_model)  # empty, binary and non-UTF-8 files are errors there
    jobs = load_tasks(p, job_class)
    if require_model:
        raise JobFileError(f"task file {str(p)!r} cannot be simulated: a task line has no `model:` (run time, "
                           "memory); write a YAML job file (docs/job-file.md) to simulate")
    return jobs
