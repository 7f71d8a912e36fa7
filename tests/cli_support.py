"""Helpers shared by the CLI tests: run `migsched` in-process and capture what it printed."""

from __future__ import annotations

from migsched.cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `migsched ARGV` in-process; return (exit status, stdout, stderr); never a traceback."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err
