"""The events `hubble observe` prints from files: time window, --first/--last/--all, and the
rules for combining them. End to end through the command line: test_time_window_and_counts in
tests/cli/test_observe.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from hushflow.filter.pflag import FlagError
from hushflow.filter.window import EventWindow, check_count_flags, check_file_window, select_events

T0 = 1_772_442_000 * 10**9  # 2026-03-02T09:00:00Z


@dataclass
class _Event:
    data: dict[str, Any]


EVENTS = [
    _Event({"time": "2026-03-02T08:59:59.999999999Z", "uuid": "a"}),
    _Event({"time": "2026-03-02T09:00:00Z", "uuid": "b"}),
    _Event({"uuid": "no-time"}),
    _Event({"time": "2026-03-02T09:00:00.000000001Z", "uuid": "c"}),
]

SELECT_ROWS = [
    ("no window: every match", EventWindow(), ["a", "b", "no-time", "c"]),
    ("since is inclusive; no time is the epoch", EventWindow(since_ns=T0), ["b", "c"]),
    ("until is inclusive", EventWindow(until_ns=T0), ["a", "b", "no-time"]),
    ("first", EventWindow(first=2), ["a", "b"]),
    ("last keeps the newest", EventWindow(last=2), ["no-time", "c"]),
    ("all wins over last", EventWindow(last=1, all=True), ["a", "b", "no-time", "c"]),
    ("first counts after the window", EventWindow(since_ns=T0, first=1), ["b"]),
]


@pytest.mark.parametrize(("window", "uuids"), [row[1:] for row in SELECT_ROWS], ids=[row[0] for row in SELECT_ROWS])
def test_select_events(window: EventWindow, uuids: list[str]) -> None:
    selected = select_events(iter(EVENTS), lambda _data: True, window)
    assert [event.data["uuid"] for event in selected] == uuids


def test_the_count_applies_to_matching_events_only() -> None:
    selected = select_events(iter(EVENTS), lambda data: data["uuid"] != "a", EventWindow(first=1))
    assert [event.data["uuid"] for event in selected] == ["b"]


CHECK_ROWS = [
    ((1, 1, False, False), "cannot set both --first and --last"),
    ((1, 0, True, False), "cannot set both --first and --all"),
    ((1, 0, False, True), "cannot set both --first and --follow"),
    ((0, 1, True, False), "cannot set both --last and --all"),
]


@pytest.mark.parametrize(("flags", "message"), CHECK_ROWS, ids=[row[1] for row in CHECK_ROWS])
def test_count_flag_conflicts(flags: tuple[int, int, bool, bool], message: str) -> None:
    first, last, all_flows, follow = flags
    with pytest.raises(FlagError) as error:
        check_count_flags(first, last, all_flows, follow=follow)
    assert str(error.value) == message


FILE_ROWS = [
    (EventWindow(last=1_000_001), False, "--last must be <= 1_000_000, got 1000001"),
    (EventWindow(last=1), True, "--last cannot be combined with --follow when reading files"),
]


@pytest.mark.parametrize(("window", "follow", "message"), FILE_ROWS, ids=[row[2] for row in FILE_ROWS])
def test_file_window_limits(window: EventWindow, follow: bool, message: str) -> None:
    with pytest.raises(FlagError) as error:
        check_file_window(window, follow=follow)
    assert str(error.value) == message


def test_last_up_to_the_limit_or_with_all_is_fine() -> None:
    for window in (EventWindow(last=1_000_000), EventWindow(last=1_000_001, all=True)):
        check_file_window(window, follow=False)
