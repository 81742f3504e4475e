"""The one parser of flow times: cached whole seconds must give what the full parser gives."""

from __future__ import annotations

import pytest

from hushflow.flow.times import (
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    FlowTimes,
    flow_time,
    format_timestamp,
    parse_go_duration_ns,
    parse_hubble_time,
    parse_timestamp,
)

EPOCH_2026_11_27_09 = 1795770000  # 2026-11-27T09:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T09:00:00Z", (EPOCH_2026_11_27_09, 0)),
        ("2026-11-27T09:00:00.558Z", (EPOCH_2026_11_27_09, 558_000_000)),
        ("2026-11-27T09:00:00.000000001Z", (EPOCH_2026_11_27_09, 1)),
        ("2026-11-27T10:00:00+01:00", (EPOCH_2026_11_27_09, 0)),
        ("2026-11-27T08:30:00.5-00:30", (EPOCH_2026_11_27_09, 500_000_000)),
    ],
)
def test_cached_and_full_parsers_agree(text: str, expected: tuple[int, int]) -> None:
    times = FlowTimes()
    assert parse_timestamp(text) == expected
    assert times.parse(text) == expected
    assert times.parse(text) == expected  # the second time from the cache


@pytest.mark.parametrize(
    "text",
    ["", "2026-11-27t09:00:00z", "2026-11-27T09:00:00z", "2026-02-30T00:00:00Z", "2026-11-27T24:00:00Z",
     "2026-11-27T09:00:00.1234567890Z", "2026-11-27 09:00:00Z",
     "2026-11-27T09:00:00.12aZ", "not a time",
     # outside a protobuf Timestamp (years 1 to 9999), as protojson refuses it
     "0000-01-01T00:00:00Z", "0000-12-31T23:59:59.999Z", "10000-01-01T00:00:00Z",
     "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01",
     # offsets Go's time.Parse refuses
     "2026-11-27T09:00:00+24:00", "2026-11-27T09:00:00+99:99", "2026-11-27T09:00:00-05:60"],
)
def test_invalid_times_are_rejected_by_both(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)
    with pytest.raises(ValueError):
        FlowTimes().parse(text)
    assert FlowTimes().nanos_of(text) == 0  # observe reads an unreadable time as the epoch, like Hubble


def test_a_new_second_after_a_cached_one_is_parsed_again() -> None:
    times = FlowTimes()
    assert times.seconds_of("2026-11-27T09:00:00.250Z") == EPOCH_2026_11_27_09 + 0.25
    assert times.seconds_of("2026-11-27T09:00:01Z") == EPOCH_2026_11_27_09 + 1
    assert times.nanos_of("2026-11-27T09:00:01.5Z") == (EPOCH_2026_11_27_09 + 1) * 10**9 + 500_000_000


def test_flow_time_falls_back_to_the_event_and_then_to_zero() -> None:
    assert flow_time({"time": "2026-11-27T09:00:00Z"}) == EPOCH_2026_11_27_09
    assert flow_time({}, {"time": "2026-11-27T09:00:00Z"}) == EPOCH_2026_11_27_09
    assert flow_time({}) == 0.0


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [(EPOCH_2026_11_27_09, 0, "2026-11-27T09:00:00Z"), (EPOCH_2026_11_27_09, 5_000_000, "2026-11-27T09:00:00.005Z"),
     (EPOCH_2026_11_27_09, 5_000, "2026-11-27T09:00:00.000005Z"), (EPOCH_2026_11_27_09, 5, "2026-11-27T09:00:00.000000005Z")],
)
def test_format_round_trips(seconds: int, nanos: int, text: str) -> None:
    assert format_timestamp(seconds, nanos) == text
    assert parse_timestamp(text) == (seconds, nanos)


def test_the_ends_of_a_timestamps_range_round_trip_with_four_digit_years() -> None:
    assert format_timestamp(MIN_TIMESTAMP_SECONDS, 0) == "0001-01-01T00:00:00Z"
    assert format_timestamp(MAX_TIMESTAMP_SECONDS, 999_999_999) == "9999-12-31T23:59:59.999999999Z"
    assert parse_timestamp("0001-01-01T00:00:00Z") == (MIN_TIMESTAMP_SECONDS, 0)
    assert parse_timestamp("9999-12-31T23:59:59.999999999Z") == (MAX_TIMESTAMP_SECONDS, 999_999_999)
    assert format_timestamp(-62104060800, 0) == "0002-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(MAX_TIMESTAMP_SECONDS + 1, 0), (MIN_TIMESTAMP_SECONDS - 1, 0), (1 << 62, 0), (-(1 << 63), 0),
     (0, -1), (0, 1_000_000_000)],
)
def test_a_time_out_of_a_timestamps_range_is_not_written(seconds: int, nanos: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        format_timestamp(seconds, nanos)


# --- --since/--until: Go durations and Hubble's time layouts --------------------------------

NOW_NS = 1_772_442_000 * 10**9  # 2026-03-02T09:00:00Z

DURATIONS = [("5m", 300 * 10**9), ("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000), ("0", 0), ("300ms", 3 * 10**8),
             ("2us", 2000), ("-1s", -(10**9)), ("5", None), ("", None), ("1d", None), ("m", None), (".s", None)]


@pytest.mark.parametrize(("text", "nanos"), DURATIONS)
def test_go_durations(text: str, nanos: int | None) -> None:
    assert parse_go_duration_ns(text) == nanos


TIMES = [
    ("5m", NOW_NS - 300 * 10**9),
    ("2026-03-02", 1_772_409_600 * 10**9),
    ("2026-03-02T09Z", NOW_NS),
    ("2026-03-02T10+01:00", NOW_NS),
    ("2026-03-02T09:00Z", NOW_NS),
    ("2026-03-02T09:00:00Z", NOW_NS),
    ("2026-03-02T09:00:00.5Z", NOW_NS + 5 * 10**8),
    ("2026-03-02T09:00:00.123456789-00:30", NOW_NS + 123_456_789 + 1800 * 10**9),
    ("Mon, 02 Mar 2026 10:00:00 +0100", NOW_NS),
    ("2026-02-30", None),
    ("2026-03-02 09:00:00", None),
]


@pytest.mark.parametrize(("text", "nanos"), TIMES)
def test_since_until_formats(text: str, nanos: int | None) -> None:
    assert parse_hubble_time(text, lambda: NOW_NS) == nanos
