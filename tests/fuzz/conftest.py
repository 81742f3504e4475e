"""The fuzz targets' session hooks: count the targets (to share FUZZ_SECONDS), print the figures."""

from __future__ import annotations

import pytest

from tests.fuzz import harness


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    harness.COLLECTED[0] = sum(1 for item in items if item.get_closest_marker("fuzz") is not None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in harness.summary_lines():
        terminalreporter.write_line(line)
