"""Times in flows and on the command line: the one parser every stage uses.

A flow's ``time`` is an RFC 3339 string as protojson writes it (``2026-11-27T09:00:09.558Z``).
Flows arrive in time order, so consecutive flows share their whole second: `FlowTimes` parses
that ``YYYY-MM-DDTHH:MM:SS`` prefix once and only the fraction per flow; anything unusual (an
offset instead of ``Z``, a malformed value) goes through the full parser. Each consumer (a run,
a filter's message builder, an observe printer) keeps its own `FlowTimes`: one per stream.

``--since``/``--until`` take what Hubble's CLI takes (hubble ``pkg/time``): a Go duration back
from now, or an absolute time in one of a few layouts.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

# Go's time.Parse(time.RFC3339Nano), as protojson reads a Timestamp: "T" and "Z" in upper case
# only (hubble 1.19.4 refuses "2026-03-02t09:00:00z"), at most 9 fraction digits.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z"
)


#: The range of a protobuf Timestamp (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z), in
#: unix seconds: protojson refuses to write or read a time outside it, and so does hushflow.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799


def _epoch_seconds(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    """Seconds since the epoch of a UTC calendar time, or None when it names no real time
    (Go's time.Parse rejects February 30th as protojson does; there is no year 0)."""
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def _nanos(fraction: str) -> int:
    return int((fraction + "000000000")[:9]) if fraction else 0


def parse_timestamp(text: str) -> tuple[int, int]:
    """RFC 3339 string -> (unix seconds, nanos). Raises ValueError."""
    m = _RFC3339.match(text)
    seconds = None
    if m is not None:
        seconds = _epoch_seconds(*(int(m.group(i)) for i in range(1, 7)))
    if m is None or seconds is None:
        raise ValueError(f"invalid timestamp {text!r}")
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        if offset >= 24 * 3600 or int(m.group(11)) > 59:
            raise ValueError(f"invalid timestamp {text!r}: offset out of range")
        seconds -= offset if m.group(9) == "+" else -offset
        if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
            raise ValueError(f"invalid timestamp {text!r}: out of the range of a protobuf Timestamp")
    return seconds, _nanos(m.group(7) or "")


def check_timestamp(seconds: int, nanos: int) -> None:
    """Raise ValueError unless (seconds, nanos) is a protobuf Timestamp protojson can write."""
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        raise ValueError(f"Timestamp seconds {seconds} out of range (years 1 to 9999)")
    if not 0 <= nanos <= 999_999_999:
        raise ValueError(f"Timestamp nanos {nanos} out of range (0 to 999999999)")


def format_timestamp(seconds: int, nanos: int) -> str:
    """protojson's Timestamp spelling: UTC, ``Z``, 0/3/6/9 fraction digits. Raises ValueError
    for a time out of a Timestamp's range, as protojson does."""
    check_timestamp(seconds, nanos)
    t = time.gmtime(seconds)  # not strftime: its %Y writes year 1 as "1", not "0001"
    base = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{base}.{nanos // 1_000:06d}Z"
    return f"{base}.{nanos:09d}Z"


class FlowTimes:
    """Flow times, parsing each whole second only once (keep one per stream of flows)."""

    __slots__ = ("prefix", "seconds")

    def __init__(self) -> None:
        self.prefix = ""
        self.seconds = 0

    def _split(self, text: str) -> tuple[int, str] | None:
        """(whole second, fraction digits) of the usual ``...THH:MM:SS[.fff]Z`` spelling, the
        second parsed once per distinct value; None for any other spelling."""
        if len(text) >= 20 and text[-1] == "Z" and text[19] in ".Z":
            prefix = text[:19]
            if prefix != self.prefix:
                self.seconds = parse_timestamp(prefix + "Z")[0]
                self.prefix = prefix
            fraction = text[20:-1]
            if not fraction or (fraction.isdigit() and len(fraction) <= 9):
                return self.seconds, fraction
        return None

    def parse(self, text: str) -> tuple[int, int]:
        """(unix seconds, nanos) of an RFC 3339 string. Raises ValueError."""
        split = self._split(text)
        if split is None:
            return parse_timestamp(text)
        return split[0], _nanos(split[1])

    def seconds_of(self, text: str) -> float:
        """Seconds since the epoch, with the fraction. Raises ValueError."""
        split = self._split(text)
        if split is None:
            seconds, nanos = parse_timestamp(text)
            return seconds + nanos / 1e9
        seconds, fraction = split
        return seconds + int(fraction) / 10 ** len(fraction) if fraction else float(seconds)

    def time_of(self, flow: Mapping[str, Any], event: Mapping[str, Any] | None = None) -> float:
        """The flow's time (or its event's) in seconds since the epoch (0.0 when it has none)."""
        text = flow.get("time") or (event or {}).get("time")
        return self.seconds_of(text) if text else 0.0

    def nanos_of(self, value: Any) -> int:
        """An event's time in unix nanoseconds; 0 when missing or unreadable, as Hubble reads a
        missing time as the epoch."""
        if not value or not isinstance(value, str):
            return 0
        try:
            seconds, nanos = self.parse(value)
        except ValueError:
            return 0
        return seconds * 10**9 + nanos


def flow_time(flow: Mapping[str, Any], event: Mapping[str, Any] | None = None) -> float:
    """The flow's time in seconds since the epoch (0.0 when it has none); for one-off use."""
    return FlowTimes().time_of(flow, event)


# -- the command line: Go durations and Hubble's --since/--until layouts ---------------------

_NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
                "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")
_ZONE = r"(Z|[+-]\d{2}:\d{2})"
_LAYOUTS = (
    re.compile(r"(\d{4})-(\d{2})-(\d{2})()()()()()"),
    re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})()()()" + _ZONE),
    re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})()()" + _ZONE),
    re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?" + _ZONE),
)
_RFC1123Z = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_go_duration_ns(text: str) -> int | None:
    """Go's `time.ParseDuration` in nanoseconds, or None if it does not parse."""
    sign, body = 1, text
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return 0
    if not body:
        return None
    total, position = 0, 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            return None
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if unit not in _NS_PER_UNIT or not (whole or fraction):
            return None
        scale = _NS_PER_UNIT[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    return sign * total


def _timestamp_ns(year: int, month: int, day: int, hour: int, minute: int, second: int, fraction: str,
                  offset_seconds: int) -> int | None:
    seconds = _epoch_seconds(year, month, day, hour, minute, second)
    if seconds is None:
        return None
    return (seconds - offset_seconds) * 10**9 + _nanos(fraction)


def _zone_offset(zone: str) -> int:
    if zone in ("", "Z"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    return sign * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60)


def parse_hubble_time(text: str, now_ns: Callable[[], int] = time.time_ns) -> int | None:
    """`--since/--until` value → Unix nanoseconds: a duration back from now, or an absolute time."""
    duration = parse_go_duration_ns(text)
    if duration is not None:
        return now_ns() - duration
    for layout in _LAYOUTS:
        match = layout.fullmatch(text)
        if match:
            year, month, day, hour, minute, second, fraction, zone = match.groups()
            return _timestamp_ns(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                                 int(second or 0), fraction or "", _zone_offset(zone or ""))
    match = _RFC1123Z.fullmatch(text)
    if match:
        day, month_name, year, hour, minute, second, zone = match.groups()
        offset = (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        return _timestamp_ns(int(year), _MONTHS.index(month_name) + 1, int(day), int(hour), int(minute),
                             int(second), "", offset)
    return None
