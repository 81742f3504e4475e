"""Which events `hubble observe` prints when it reads files: the time window and the counts.

`--since`/`--until` keep the events in a time window (both ends inclusive, to the nanosecond);
`--first N` stops after N matching events, `--last N` keeps the newest N, `--all` every one.
`EventWindow` is that choice as a value, `select_events` applies it to a stream of events
after the filters, and the `check_*` functions are Hubble's rules for combining the flags,
with its messages (`FlagError`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hushflow.filter.pflag import FlagError
from hushflow.flow.times import FlowTimes

MAX_LAST = 1_000_000  # Hubble's limit for --last with --input-file


@dataclass(frozen=True)
class EventWindow:
    """The events to print: a time window, then a count."""

    since_ns: int | None = None
    """Unix time in nanoseconds; events before it are skipped."""
    until_ns: int | None = None
    """Unix time in nanoseconds; events after it are skipped."""
    first: int = 0
    last: int = 0
    all: bool = False


def check_count_flags(first: int, last: int, all_flows: bool, *, follow: bool) -> None:
    """Hubble's checks of --first/--last/--all/--follow right after parsing, in its order."""
    if first and last:
        raise FlagError("cannot set both --first and --last")
    if first and all_flows:
        raise FlagError("cannot set both --first and --all")
    if first and follow:
        raise FlagError("cannot set both --first and --follow")
    if last and all_flows:
        raise FlagError("cannot set both --last and --all")


def check_file_window(window: EventWindow, *, follow: bool) -> None:
    """Hubble's checks of --last once it reads files (after the filters are compiled)."""
    if window.last and not window.first and not window.all and window.last > MAX_LAST:
        raise FlagError(f"--last must be <= 1_000_000, got {window.last}")
    if follow and window.last:
        raise FlagError("--last cannot be combined with --follow when reading files")


def every_event(_data: dict[str, Any]) -> bool:
    """The predicate that selects every event (``select_events`` then reads none of them)."""
    return True


def select_events(
    events: Iterator[Any],
    matches: Callable[[dict[str, Any]], bool],
    window: EventWindow,
) -> Iterator[Any]:
    """Hubble's io-reader selection: time window, filters, then --first / --last."""
    since, until = window.since_ns, window.until_ns
    event_time = FlowTimes().nanos_of

    def selected() -> Iterator[Any]:
        if since is None and until is None and matches is every_event:
            yield from events  # nothing to read: a line proven canonical stays unparsed
            return
        for event in events:
            data = event.data
            if since is not None or until is not None:
                at = event_time(data.get("time"))
                if since is not None and at < since:
                    continue
                if until is not None and at > until:
                    continue
            if matches(data):
                yield event

    if window.first:
        remaining = window.first
        for event in selected():
            yield event
            remaining -= 1
            if remaining == 0:
                return
        return
    if window.last and not window.all:
        yield from collections.deque(selected(), maxlen=window.last)
        return
    yield from selected()
