"""Entry point of the `migsched` console script."""

from __future__ import annotations

import sys
import warnings

import typer

from migsched.cli.app import EXIT_BROKEN_PIPE, app, quiet_stream
from migsched.errors import MigschedError

# Command modules register their verbs on `app` when imported; naming them in a tuple says so
# (and keeps pyflakes, which ignores noqa, from calling them unused).
from migsched.cli import hardware_cmds, mig_cmds, run_cmds, simulate_cmds, workload_cmds  # noqa: E402
from migsched.cli import history_cmds, validate_cmds  # noqa: E402

COMMAND_MODULES = (hardware_cmds, mig_cmds, run_cmds, simulate_cmds, workload_cmds, validate_cmds, history_cmds)

try:  # Typer >= 0.25 vendors click; older versions use the click package
    from typer._click import ClickException as _ClickException  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click import ClickException as _ClickException  # type: ignore[no-redef]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the CLI's own one line (`warning: ...`), not Python's file:line and source."""
    typer.echo(f"warning: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status.

    A user's mistake (unknown name, bad file, bad option) prints one line and returns 2; it
    never shows a traceback. Warnings (an unreadable history file, ...) print as one line each.
    """
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return _run(argv)
    finally:
        warnings.showwarning = shown


def _run(argv: list[str] | None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
    except MigschedError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except _ClickException as exc:
        exc.show()
        return 2
    except BrokenPipeError:  # `migsched ... | head` (typer.echo): the reader left; say nothing more
        quiet_stream(sys.stdout)
        return EXIT_BROKEN_PIPE
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
