"""The shared Typer application every command module registers on, and the CLI's consoles.

Help is tidied for operators (`_TidyGroup`): flags show no `<bool>` type, arguments appear in
usage lines as `JOBS` / `[JOBS]` rather than `{JOBS}`, and single line breaks inside a help
paragraph are joined so that rich re-wraps sentences to the terminal instead of breaking them
mid-line. `migsched --version` prints the installed version.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperGroup, TyperOption

from migsched.errors import UnknownNameError
from migsched.jobs.model import JobClass

#: Console width when the output is not a terminal: wide enough that no table is ever cut
#: (rich would otherwise assume 80 columns and truncate cells).
PIPE_WIDTH = 1000


def console(stderr: bool = False, *, adapt: bool = False) -> Console:
    """A console on stdout (or stderr) as wide as the terminal, or `PIPE_WIDTH` when piped (a
    file gets every cell whole). With `adapt` (a command that fits its tables to the width:
    `gpus`, `validate`, the comparison table) a piped console is `COLUMNS` wide where the user
    set it; elsewhere COLUMNS would only cut cells.

    Built per call so that tests capturing sys.stdout see the output.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else (_pipe_width() if adapt else PIPE_WIDTH)
    return _Console(file=stream, width=width, highlight=False)


#: The exit status when the reader of a pipe leaves (`migsched validate x | head`): 128 +
#: SIGPIPE, what a shell reports; never 1, which `validate` uses for "an entry fits nowhere".
EXIT_BROKEN_PIPE = 141


def quiet_stream(stream: Any) -> None:
    """Point `stream` (stdout after its reader left) at /dev/null, so that Python's exit-time
    flush does not fail again; a stream with no file descriptor (a test's capture) is left."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(fd, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(fd)


class _Console(Console):
    """A rich console that ends the program with `EXIT_BROKEN_PIPE` when the reader of a pipe
    leaves; rich's own exit status would be 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_stream(self.file)
        raise SystemExit(EXIT_BROKEN_PIPE)


def _pipe_width() -> int:
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and 20 <= int(cols) <= PIPE_WIDTH else PIPE_WIDTH


def _join_lines(text: str | None) -> str | None:
    """Join single line breaks inside paragraphs; keep blank lines and `\\b` (verbatim) blocks."""
    if not text:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else re.sub(r"\s*\n\s*", " ", p.strip()) for p in paragraphs)


def _usage_name(arg: TyperArgument) -> str:
    name = arg.metavar or (arg.name or "").upper()
    name = name if arg.required else f"[{name}]"
    return name + ("..." if arg.nargs != 1 else "")


def _tidy(cmd: Any) -> None:
    """Tidy one command's help in place (see the module docstring)."""
    cmd.help = _join_lines(getattr(cmd, "help", None))
    for param in getattr(cmd, "params", []):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # the rich help shows the metavar instead of "<bool>"
        elif isinstance(param, TyperArgument):
            param.get_usage_pieces = (lambda ctx, p=param: [_usage_name(p)])  # type: ignore[method-assign]
    if hasattr(cmd, "get_help_option"):
        cmd.get_help_option = _quiet_help_flag(cmd.get_help_option)
    for sub in getattr(cmd, "commands", {}).values():
        _tidy(sub)


def _quiet_help_flag(get_help_option: Any) -> Any:
    def wrapped(ctx: Any) -> Any:
        opt = get_help_option(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt
    return wrapped


class _TidyGroup(TyperGroup):
    """The top-level group: tidies every command's help when the CLI is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self)


def _version() -> str:
    try:
        return version("migsched")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


app = typer.Typer(
    name="migsched",
    help="Dynamic NVIDIA MIG partitioning and scheduling: simulate, compare and run GPU job batches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_TidyGroup,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"migsched {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                               help="Print the installed version and exit.")] = False,
) -> None:
    """Dynamic NVIDIA MIG partitioning and scheduling: simulate, compare and run GPU job batches."""


def job_class_option(value: str) -> str:
    """`--class`, checked whatever the file turns out to be (a job file ignores it, but a typo
    should not pass silently): the value, or `UnknownNameError` listing the classes."""
    valid = [c.value for c in JobClass]
    if value not in valid:
        raise UnknownNameError("job class", value, valid)
    return value
