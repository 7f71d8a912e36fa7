"""Where reports go: output paths checked before any work, and a report folder kept clean.

Every output option is checked up front (`check_file`, `check_folder`), so a typo in a path
fails in a second instead of after a long comparison:

* a file's folder must exist (it is never created: the same rule as `migsched mix --out`), the
  path must not be a folder, and a file must be creatable in the folder (tried, not read from
  permission bits, which say yes for /proc or a read-only mount); "-" means standard output
  where allowed (`--json -`);
* a report folder is created if missing, but only inside an existing folder.

`clean_report_folder` removes the pictures a previous report left in a reused folder (only the
names migsched writes), so the folder never shows policies that did not run this time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from migsched.errors import MigschedError

STDOUT = "-"

#: File names `write_report` may write (globs); only these are ever removed from a folder.
REPORT_FILES = ("timeline-*.png", "cluster.png", "power.png", "summary.png", "results.md")


class OutputError(MigschedError, OSError):
    """A report, JSON or schedule file that cannot be written (the message names the path)."""


def _fail(option: str, target: Path | str, why: str) -> OutputError:
    return OutputError(f"cannot write {option} {str(target)!r}: {why}")


def _writable_dir(folder: Path, option: str, target: Path) -> None:
    if not folder.exists():
        raise _fail(option, target, f"folder {str(folder)!r} does not exist (create it first)")
    if not folder.is_dir():
        raise _fail(option, target, f"{str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(option, target, f"folder {str(folder)!r} is not writable")
    try:  # the permission bits can say yes where writing fails (/proc, a read-only mount, root's view)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".migsched-probe-"):
            pass
    except OSError as exc:
        raise _fail(option, target, f"nothing can be written in {str(folder)!r} ({exc.strerror or exc})") from None


def check_file(path: Path, option: str, allow_stdout: bool = False) -> None:
    """Raise `OutputError` (naming `option` and the path) unless `path` can be written.

    `allow_stdout` accepts "-" (standard output).
    """
    if str(path) == STDOUT:
        if allow_stdout:
            return
        raise _fail(option, path, "standard output is not supported here; give a file name")
    if path.is_dir():
        raise _fail(option, path, "it is a folder; give a file name")
    _writable_dir(path.parent if str(path.parent) else Path("."), option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(option, path, "the file exists and is not writable")


def check_folder(path: Path, option: str) -> None:
    """Raise `OutputError` unless `path` is a writable folder or can be created in an existing one."""
    if path.exists():
        if not path.is_dir():
            raise _fail(option, path, "it is a file, not a folder")
        _writable_dir(path, option, path)
        return
    _writable_dir(path.parent if str(path.parent) else Path("."), option, path)


def clean_report_folder(folder: Path, keep: set[str]) -> list[Path]:
    """Remove migsched's report files in `folder` whose names are not in `keep`; those removed."""
    removed = []
    for pattern in REPORT_FILES:
        for p in folder.glob(pattern):
            if p.name not in keep and p.is_file():
                p.unlink()
                removed.append(p)
    return removed
