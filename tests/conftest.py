"""Settings every test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_terminal_size_from_the_environment(monkeypatch):
    """pytest-xdist's workers export COLUMNS=80 and LINES=24, and the CLI honours COLUMNS when
    its output is piped (cli/app.py): without this, a test would see another width under `-n 2`
    than alone. A test that wants a width sets COLUMNS itself."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
