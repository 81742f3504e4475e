"""FlowReader: sources (files, stdin, gzip, several, follow), bad lines, lost events, pre-check."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from hushflow.flow.reader import FlowEvent, FlowReader, FlowReadError, ReadStats, events_from_bytes

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


def flow_line(n: int, verdict: str = "FORWARDED") -> bytes:
    """A canonical jsonpb line whose Summary carries n."""
    return orjson.dumps({"flow": {"time": "2026-03-02T09:00:00Z", "verdict": verdict, "Summary": f"#{n}"},
                         "node_name": "node", "time": "2026-03-02T09:00:00Z"})


def summaries(events: list[FlowEvent]) -> list[str]:
    return [e.data["flow"]["Summary"] for e in events if e.flow is not None]


def read(sources: list[Any], **kwargs: Any) -> tuple[list[FlowEvent], ReadStats]:
    stats = ReadStats()
    return list(FlowReader(sources, stats=stats, **kwargs)), stats


# -- sources -------------------------------------------------------------------------------------


def test_recorded_file_reads_every_line_on_the_fast_path() -> None:
    events, stats = read([RECORDED])
    lines = gzip.decompress(RECORDED.read_bytes()).splitlines()
    assert [e.raw for e in events] == lines
    assert [e.line for e in events] == list(range(1, 4001))
    assert {e.source for e in events} == {str(RECORDED)}
    assert (stats.events, stats.converted, stats.bad_lines) == (4000, 0, 0)


def test_plain_file_and_origin(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(flow_line(1) + b"\n" + flow_line(2) + b"\n")
    events, _ = read([path])
    assert summaries(events) == ["#1", "#2"]
    assert events[1].origin == f"{path}:2"
    assert events[0].raw == flow_line(1)


def test_stdin_is_dash() -> None:
    events, _ = read(["-"], stdin=io.BytesIO(flow_line(1) + b"\n"))
    assert summaries(events) == ["#1"]
    assert events[0].source == "-"


def test_gzip_is_detected_by_content_including_stdin(tmp_path: Path) -> None:
    data = gzip.compress(flow_line(1) + b"\n" + flow_line(2) + b"\n")
    path = tmp_path / "no-suffix"
    path.write_bytes(data)
    assert summaries(read([path])[0]) == ["#1", "#2"]
    assert summaries(read(["-"], stdin=io.BytesIO(data))[0]) == ["#1", "#2"]


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(flow_line(1) + b"\n") + gzip.compress(flow_line(2) + b"\n"))
    assert summaries(read([path])[0]) == ["#1", "#2"]


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(flow_line(1) * 100)[:-20])
    with pytest.raises(FlowReadError, match=f"{path}: truncated gzip stream"):
        read([path])


def test_several_files_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(flow_line(1) + b"\n")
    b.write_bytes(gzip.compress(flow_line(2) + b"\n" + flow_line(3)))  # no final newline
    events, _ = read([a, b])
    assert summaries(events) == ["#1", "#2", "#3"]
    assert [(Path(e.source).name, e.line) for e in events] == [("a", 1), ("b", 1), ("b", 2)]


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_unreadable_source_names_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(FlowReadError, match=f"^{path}: cannot open: "):
        read([path])


def test_chunk_boundaries_do_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"".join(flow_line(i) + b"\n" for i in range(50)))
    events, _ = read([path], chunk_size=7)
    assert summaries(events) == [f"#{i}" for i in range(50)]


def test_crlf_and_blank_lines() -> None:
    data = flow_line(1) + b"\r\n\r\n   \n" + flow_line(2) + b"\r\n"
    events, stats = read(["-"], stdin=io.BytesIO(data))
    assert summaries(events) == ["#1", "#2"]
    assert events[1].line == 4
    assert events[0].raw == flow_line(1)
    assert stats.bad_lines == 0


# -- every input form ------------------------------------------------------------------------------

FORMS = [
    ("jsonpb", flow_line(1), False),
    ("bare flow (legacy -o json)",
     b'{"time":"2026-03-02T09:00:00Z","verdict":"FORWARDED","node_name":"node","Summary":"#1"}', True),
    ("lowerCamel", b'{"flow":{"time":"2026-03-02T09:00:00Z","verdict":"FORWARDED","nodeName":"node",'
                   b'"Summary":"#1"},"nodeName":"node","time":"2026-03-02T09:00:00Z"}', True),
    ("enum numbers", b'{"flow":{"time":"2026-03-02T09:00:00Z","verdict":1,"Summary":"#1"},'
                     b'"node_name":"node","time":"2026-03-02T09:00:00Z"}', True),
]


@pytest.mark.parametrize(("line", "converted"), [r[1:] for r in FORMS], ids=[r[0] for r in FORMS])
def test_every_form_gives_the_canonical_event(line: bytes, converted: bool) -> None:
    events, stats = read(["-"], stdin=io.BytesIO(line + b"\n"))
    assert len(events) == 1
    assert events[0].data["flow"]["verdict"] == "FORWARDED"
    assert events[0].data["flow"]["Summary"] == "#1"
    assert events[0].data["time"] == "2026-03-02T09:00:00Z"
    assert stats.converted == int(converted)
    assert orjson.loads(events[0].raw) == events[0].data
    if converted:
        assert events[0].raw != line


def test_exporter_lines_of_every_kind() -> None:
    lines = b"\n".join([
        flow_line(1),
        b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"5","cpu":1},"node_name":"n"}',
        b'{"agent_event":{"type":"AGENT_STARTED","agent_start":{"time":"2026-03-02T09:00:00Z"}},"node_name":"n"}',
        b'{"debug_event":{"type":"DBG_LOCAL_DELIVERY","message":"m"},"node_name":"n"}',
        b'{"node_status":{"state_change":"NODE_CONNECTED","node_names":["a"]}}',
        b'{"lost_events":{"source":"OBSERVER_EVENTS_QUEUE","num_events_lost":7}}',
    ])
    events, stats = read(["-"], stdin=io.BytesIO(lines))
    assert [e.kind for e in events] == ["flow", "lost_events", "agent_event", "debug_event", "node_status",
                                        "lost_events"]
    assert (stats.lost_events_lines, stats.events_lost) == (2, 12)
    assert events[5].raw == b'{"lost_events":{"source":"OBSERVER_EVENTS_QUEUE","num_events_lost":"7"}}'
    assert "warning: 12 events lost (reported by 2 lost_events lines)" in stats.report_lines()


# -- bad lines ------------------------------------------------------------------------------------

BAD_LINES = [
    ("invalid JSON", b"{nope", "invalid JSON"),
    ("not an object", b"[1, 2]", "expected a JSON object, got array"),
    ("a string", b'"flow"', "expected a JSON object, got string"),
    ("wrong type", b'{"flow":{"source":"x"}}', "flow.source: expected an object, got string"),
    ("wrong nested type", b'{"flow":{"verdict":1,"source":{"labels":"x"}}}', "flow.source.labels: expected an array"),
    ("a key given twice", b'{"flow":{"verdict":"DROPPED","verdict":"FORWARDED"}}', "duplicate field 'verdict'"),
    ("no event", b'{"node_name":"n"}', "no flow or event in line"),
    ("invalid UTF-8", b'{"flow":{"Summary":"\xff"}}', "invalid JSON"),
]


@pytest.mark.parametrize(("bad", "reason"), [r[1:] for r in BAD_LINES], ids=[r[0] for r in BAD_LINES])
def test_bad_line_is_counted_reported_and_skipped(bad: bytes, reason: str) -> None:
    data = flow_line(1) + b"\n" + bad + b"\n" + flow_line(3) + b"\n"
    events, stats = read(["-"], stdin=io.BytesIO(data))
    assert summaries(events) == ["#1", "#3"]
    assert stats.bad_lines == 1
    assert str(stats.reported[0]).startswith("-:2: ")
    assert reason in stats.reported[0].reason


@pytest.mark.parametrize(("bad", "reason"), [r[1:] for r in BAD_LINES], ids=[r[0] for r in BAD_LINES])
def test_strict_mode_stops_at_the_first_bad_line(bad: bytes, reason: str) -> None:
    data = flow_line(1) + b"\n" + bad + b"\n" + flow_line(3) + b"\n"
    seen: list[FlowEvent] = []
    with pytest.raises(FlowReadError, match=r"^-:2: ") as info:
        seen.extend(FlowReader(["-"], strict=True, stdin=io.BytesIO(data)))
    assert reason in str(info.value)
    assert summaries(seen) == ["#1"]


def test_first_bad_lines_in_full_then_a_count() -> None:
    data = b"\n".join([b"{x"] * 8 + [flow_line(9)])
    events, stats = read(["-"], stdin=io.BytesIO(data))
    assert summaries(events) == ["#9"]
    report = stats.report_lines()
    assert report[:5] == [f"warning: -:{i}: " + stats.reported[i - 1].reason for i in range(1, 6)]
    assert report[5:] == ["warning: ... and 3 more bad lines skipped", "warning: 8 bad lines skipped"]


def test_line_over_64_kib_is_read() -> None:
    big = orjson.dumps({"flow": {"Summary": "x" * 200_000}})
    events, stats = read(["-"], stdin=io.BytesIO(flow_line(1) + b"\n" + big + b"\n" + flow_line(3)))
    assert [len(s) for s in summaries(events)] == [2, 200_000, 2]
    assert stats.bad_lines == 0


@pytest.mark.parametrize("chunk_size", [64, 1000, 1 << 20])
def test_line_over_the_limit_is_skipped_without_stopping(chunk_size: int) -> None:
    big = orjson.dumps({"flow": {"Summary": "x" * 5000}})
    data = flow_line(1) + b"\n" + big + b"\n" + flow_line(3) + b"\n" + big
    events, stats = read(["-"], stdin=io.BytesIO(data), max_line_bytes=1000, chunk_size=chunk_size)
    assert summaries(events) == ["#1", "#3"]
    assert stats.bad_lines == 2
    assert [(b.line, b.reason) for b in stats.reported] == [(2, "line longer than 1000 bytes"),
                                                           (4, "line longer than 1000 bytes")]


def test_unknown_fields_are_reported_once() -> None:
    data = b'{"flow":{"verdict":"DROPPED","new_field":1}}\n{"flow":{"new_field":2}}\n'
    events, stats = read(["-"], stdin=io.BytesIO(data))
    assert len(events) == 2
    assert stats.unknown_fields == {"flow.Flow.new_field"}
    assert "warning: unknown fields ignored: flow.Flow.new_field" in stats.report_lines()


# -- pre-check ------------------------------------------------------------------------------------


def dropped_only(raw: bytes) -> bool:
    return b'"verdict":"DROPPED"' in raw


def test_precheck_skips_parsing_after_the_first_chunk() -> None:
    data = b"".join(flow_line(i, "DROPPED" if i % 3 == 0 else "FORWARDED") + b"\n" for i in range(30))
    calls: list[bytes] = []

    def may_match(raw: bytes) -> bool:
        calls.append(raw)
        return dropped_only(raw)

    first_chunk = len(flow_line(0)) * 3 + 3  # lines 0, 1 and 2
    events, stats = read(["-"], stdin=io.BytesIO(data), may_match=may_match, chunk_size=first_chunk)
    # The first chunk is parsed in full; after it, only the lines the pre-check accepts are.
    assert summaries(events) == ["#0", "#1", "#2"] + [f"#{i}" for i in range(3, 30) if i % 3 == 0]
    assert stats.prechecked_out == 18
    assert len(calls) == 27


def test_precheck_is_dropped_for_a_source_in_another_spelling() -> None:
    numbers = b"".join(
        b'{"flow":{"verdict":%d,"Summary":"#%d"}}\n' % (2 if i % 2 else 1, i) for i in range(20)
    )
    events, stats = read(["-"], stdin=io.BytesIO(numbers), may_match=dropped_only, chunk_size=40)
    assert len(events) == 20
    assert stats.prechecked_out == 0


# -- follow ---------------------------------------------------------------------------------------


class Script:
    """A fake sleep that performs one scripted file change per call; stop() once all are done."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        self.steps = steps
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.steps:
            self.steps.pop(0)()

    def stop(self) -> bool:
        return not self.steps


def append(path: Path, data: bytes) -> Callable[[], None]:
    def step() -> None:
        with open(path, "ab") as f:
            f.write(data)

    return step


def follow(path: Path, script: Script) -> list[FlowEvent]:
    return list(FlowReader([path], follow=True, sleep=script.sleep, stop=script.stop, poll_interval=0.5))


def test_follow_reads_appended_lines_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "hubble.log"
    path.write_bytes(flow_line(1) + b"\n")
    line2 = flow_line(2) + b"\n"
    script = Script([append(path, line2[:10]), append(path, line2[10:]), lambda: None])
    events = follow(path, script)
    assert summaries(events) == ["#1", "#2"]
    assert [e.line for e in events] == [1, 2]
    assert script.sleeps == [0.5, 0.5, 0.5]


def test_follow_survives_rotation_like_lumberjack(tmp_path: Path) -> None:
    path = tmp_path / "hubble.log"
    path.write_bytes(flow_line(1) + b"\n")

    def rotate() -> None:
        with open(path, "ab") as f:
            f.write(flow_line(2) + b"\n")  # written just before the rename, not yet read
        path.rename(tmp_path / "hubble-2026-03-02T09-00-00.000.log")
        path.write_bytes(flow_line(3) + b"\n")

    script = Script([rotate, append(path, flow_line(4) + b"\n"), lambda: None])
    events = follow(path, script)
    assert summaries(events) == ["#1", "#2", "#3", "#4"]
    assert [e.line for e in events] == [1, 2, 1, 2]


def test_follow_waits_for_a_file_being_recreated(tmp_path: Path) -> None:
    path = tmp_path / "hubble.log"
    path.write_bytes(flow_line(1) + b"\n")
    script = Script([
        lambda: path.rename(tmp_path / "old.log"),
        lambda: None,
        lambda: path.write_bytes(flow_line(2) + b"\n"),
        lambda: None,
    ])
    assert summaries(follow(path, script)) == ["#1", "#2"]


def test_follow_survives_truncation(tmp_path: Path) -> None:
    path = tmp_path / "hubble.log"
    path.write_bytes(flow_line(1) + b"\n" + flow_line(2) + b"\n")

    def truncate() -> None:
        with open(path, "r+b") as f:
            f.truncate(0)
        path.write_bytes(flow_line(3) + b"\n")

    events = follow(path, Script([truncate, lambda: None]))
    assert summaries(events) == ["#1", "#2", "#3"]
    assert [e.line for e in events] == [1, 2, 1]


def test_follow_applies_to_the_last_source_only(tmp_path: Path) -> None:
    old, current = tmp_path / "old.log", tmp_path / "current.log"
    old.write_bytes(flow_line(1) + b"\n")
    current.write_bytes(flow_line(2) + b"\n")
    script = Script([append(current, flow_line(3) + b"\n"), lambda: None])
    events = list(FlowReader([old, current], follow=True, sleep=script.sleep, stop=script.stop))
    assert summaries(events) == ["#1", "#2", "#3"]


def test_events_from_bytes() -> None:
    assert summaries(events_from_bytes(flow_line(1) + b"\n")) == ["#1"]


def test_memory_stays_flat_for_a_large_input(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "big"
    with open(path, "wb") as f:
        for _ in range(20):
            f.write(gzip.decompress(RECORDED.read_bytes()))  # 80,000 flows, ~150 MB
    tracemalloc.start()
    count = sum(1 for _ in FlowReader([path]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 80_000
    assert peak < 20 * 1024 * 1024, peak
    assert os.path.getsize(path) > 100 * 1024 * 1024


def test_a_wrong_value_deep_in_a_line_is_a_bad_line() -> None:
    # A line the C proof does not vouch for is validated at every level, as protojson (and so
    # Hubble) reads it; only with prove_lines=False is the one-level check trusted (for speed).
    line = b'{"flow":{"source":{"labels":"x"}}}\n'
    events, stats = read(["-"], stdin=io.BytesIO(line))
    assert events == [] and stats.bad_lines == 1
    assert "flow.source.labels: expected an array" in stats.reported[0].reason
    trusted = list(FlowReader(["-"], stdin=io.BytesIO(line), prove_lines=False))
    assert trusted[0].data == {"flow": {"source": {"labels": "x"}}}


class Pipe(io.RawIOBase):
    """A pipe delivering one write at a time: read1 must not wait for a whole chunk."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.parts:
            return 0
        part = self.parts.pop(0)
        buffer[: len(part)] = part
        return len(part)


def test_stdin_pipe_hands_on_lines_as_they_arrive() -> None:
    parts = [flow_line(1) + b"\n", flow_line(2) + b"\n"]
    pipe = io.BufferedReader(Pipe(parts))
    reader = iter(FlowReader(["-"], stdin=pipe))  # type: ignore[list-item]
    assert summaries([next(reader)]) == ["#1"]
    assert parts == [flow_line(2) + b"\n"]  # the second write was not needed for the first flow


def test_utf8_bom_at_the_start_is_ignored() -> None:
    events, stats = read(["-"], stdin=io.BytesIO(b"\xef\xbb\xbf" + flow_line(1) + b"\n"))
    assert summaries(events) == ["#1"]
    assert stats.bad_lines == 0


def test_follow_reads_a_compressed_file_once(tmp_path: Path) -> None:
    path = tmp_path / "old.log.gz"
    path.write_bytes(gzip.compress(flow_line(1) + b"\n"))
    script = Script([lambda: None])
    assert summaries(follow(path, script)) == ["#1"]


def test_with_data_re_encodes_in_declaration_order() -> None:
    event = events_from_bytes(flow_line(1) + b"\n")[0]
    data = orjson.loads(event.raw)
    data["flow"]["policy_log"] = ["app-explicit-traffic-blocked"]
    data["flow"]["uuid"] = "u-1"  # a field declared before verdict
    changed = event.with_data(data)
    assert changed.raw == (
        b'{"flow":{"time":"2026-03-02T09:00:00Z","uuid":"u-1","verdict":"FORWARDED","Summary":"#1",'
        b'"policy_log":["app-explicit-traffic-blocked"]},"node_name":"node","time":"2026-03-02T09:00:00Z"}'
    )
    assert changed.origin == event.origin
