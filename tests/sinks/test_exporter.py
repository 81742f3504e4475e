"""The --export file: Hubble's exporter lines byte for byte (real exporter recordings), read back
by hushflow's reader; lumberjack's rotation (names, backups kept, gzip); filters and field mask
as Hubble's exporter applies them; a failing disk that is counted, retried and never holds the
caller."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format

from hushflow.filter import compile_filters
from hushflow.flow.field_mask import field_mask_tree, masked_response
from hushflow.flow.protojson import canonical_event
from hushflow.flow.reader import FlowEvent, FlowReader, events_from_bytes
from hushflow.proto import FLOW_DESCRIPTOR, observer_pb2
from hushflow.sinks.exporter import (
    BACKLOG_FULL,
    NOT_ENCODABLE,
    TOO_LARGE,
    UNWRITTEN_AT_EXIT,
    ExportEncoder,
    FlowExporter,
    RotatingFile,
    StreamTarget,
    backup_name,
    backups_of,
    check_export_path,
    compile_field_mask,
    mask_message,
    open_export,
    parse_field_mask,
)

REAL = Path("/work/shared/data/real-hubble-flows")
REAL_FLOWS = REAL / "real-flows.jsonl"
GOLDEN = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"
EXAMPLE_FLOWS = Path(__file__).parents[2] / "examples" / "telemetry-block" / "flows.jsonl"
#: Lines 1-6 of real-flows.jsonl are lines of real Hubble exporter files (provenance next to it):
#: two field-masked ones from Cilium's docs, three of a dynamic exporter (1.19.1), one static (1.19.2).
REAL_EXPORT_LINES = range(1, 7)
#: The field mask Cilium's export docs used for lines 1 and 2.
DOCS_MASK = ("time,source.namespace,source.pod_name,destination.namespace,destination.pod_name,l4,IP,"
             "node_name,is_reply,verdict,drop_reason_desc")


def real_lines() -> list[bytes]:
    return REAL_FLOWS.read_bytes().splitlines()


def read(path: Path | str) -> list[FlowEvent]:
    return list(FlowReader([str(path)]))


# -- the format -------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", REAL_EXPORT_LINES)
def test_a_real_exporter_line_is_written_back_byte_for_byte(number):
    raw = real_lines()[number - 1]
    (event,) = events_from_bytes(raw)
    assert ExportEncoder().line(event.data) == raw + b"\n"


def test_the_real_lines_keep_hubble_key_order_flow_then_node_name_then_time():
    for number in REAL_EXPORT_LINES:
        line = ExportEncoder().line(events_from_bytes(real_lines()[number - 1])[0].data)
        assert list(orjson.loads(line)) == ["flow", "node_name", "time"]


def test_every_flow_of_the_hubble_cli_recording_encodes_as_hubble_printed_it():
    # Hubble's jsonpb re-encoding of flows-4k is byte-identical to its input lines (README there),
    # and the exporter's json.Encoder writes the same bytes for a flow whose wrapper repeats it.
    raw = gzip.decompress(GOLDEN.read_bytes()).splitlines()
    encoder = ExportEncoder()
    checked = 0
    for event, line in zip(FlowReader([str(GOLDEN)]), raw, strict=True):
        data = event.data
        flow = data["flow"]
        if data.get("node_name") == flow.get("node_name") and data.get("time") == flow.get("time"):
            assert encoder.line(data) == line + b"\n", event.origin
            checked += 1
    assert checked > 3000


@pytest.mark.parametrize("number", REAL_EXPORT_LINES)
@pytest.mark.parametrize("proof", [True, False])
def test_a_flow_in_another_key_order_still_comes_out_canonical(number, proof):
    """Enrichment appends policy_log and *_denied_by to the flow: the line is Hubble's order
    whether the C proof takes it (it refuses this one) or the Python check does."""
    raw = real_lines()[number - 1]
    data = events_from_bytes(raw)[0].data
    flow = data["flow"]
    shuffled = {"flow": dict(reversed(list(flow.items())))}
    encoder = ExportEncoder()
    if not proof:
        encoder._prove = None
    assert encoder.line(shuffled) == raw + b"\n"


def test_a_flow_line_takes_node_name_and_time_from_the_flow_not_the_response():
    # cilium pkg/hubble/exporter: ExportEvent{Time: flow.GetTime(), NodeName: flow.GetNodeName()}.
    data = {"flow": {"time": "2026-01-01T00:00:01Z", "verdict": "DROPPED", "node_name": "kind-worker"},
            "node_name": "relay", "time": "2026-01-01T00:00:09Z"}
    assert ExportEncoder().line(data) == (b'{"flow":{"time":"2026-01-01T00:00:01Z","verdict":"DROPPED",'
                                          b'"node_name":"kind-worker"},"node_name":"kind-worker",'
                                          b'"time":"2026-01-01T00:00:01Z"}\n')


def test_a_flow_without_node_name_has_none_on_its_line():
    # The flows of Cilium's exporter filter tests (exporter-filters.jsonl; not in canonical field
    # order there, so compared as values): flow and time, no node_name.
    for raw in (REAL / "exporter-filters.jsonl").read_bytes().splitlines():
        (event,) = events_from_bytes(raw)
        line = ExportEncoder().line(event.data) or b""
        assert orjson.loads(line) == orjson.loads(raw) and list(orjson.loads(line)) == ["flow", "time"]


def test_lost_events_are_written_with_their_time_and_a_node_name_node_status_is_not():
    encoder = ExportEncoder(node_name="node-a")
    lost = {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "7"}, "time": "2026-01-01T00:00:02Z"}
    assert encoder.line(lost) == (b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7"},'
                                  b'"node_name":"node-a","time":"2026-01-01T00:00:02Z"}\n')
    relayed = {**lost, "node_name": "kind-worker"}
    assert b'"node_name":"kind-worker"' in (encoder.line(relayed) or b"")
    # Only Relay makes node-status events; an agent's exporter has none to write.
    assert encoder.line({"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["a"]}}) is None


def test_html_characters_are_escaped_as_go_json_encoder_does():
    data = {"flow": {"time": "2026-01-01T00:00:01Z", "node_name": "a<b>&c", "Summary": "x\u2028"}}
    line = ExportEncoder().line(data) or b""
    assert b"a\\u003cb\\u003e\\u0026c" in line and b"x\\u2028" in line


def test_an_event_that_is_no_valid_hubble_event_raises_for_the_exporter_to_count():
    with pytest.raises(ValueError):
        ExportEncoder().line({"flow": {"verdict": "NOT-A-VERDICT", "time": 5}})


def test_the_file_is_read_back_by_hushflow_as_the_same_events(tmp_path):
    path = tmp_path / "flows.log"
    exporter = open_export(str(path))
    sources = [*read(REAL_FLOWS)[:6], *read(EXAMPLE_FLOWS)]
    for event in sources:
        exporter.offer(event.data)
    assert exporter.close() == 0
    back = read(path)
    assert [event.data for event in back] == [canonical_event(event.data) for event in sources]
    assert exporter.stats.flows == exporter.stats.lines == len(sources)


# -- the field mask -------------------------------------------------------------------------------------


@pytest.mark.parametrize("paths", [
    DOCS_MASK,
    "time source.identity source.namespace source.pod_name destination.identity destination.namespace "
    "destination.pod_name source_service destination_service l4 IP ethernet l7 Type node_name is_reply "
    "event_type verdict Summary",
    "verdict,l4.TCP,source.labels,destination",
    "source.namespace,verdict",  # no time, no node_name: the line has neither
])
@pytest.mark.parametrize("number", REAL_EXPORT_LINES)
def test_the_field_mask_cuts_a_flow_as_hubble_does(paths, number):
    """The dict-level mask gives the message Hubble's fieldmask.Copy gives (the protobuf one of
    hushflow.flow.field_mask), and the line is that message's jsonpb."""
    data = events_from_bytes(real_lines()[number - 1])[0].data
    split = parse_field_mask(paths)
    line = ExportEncoder(mask=compile_field_mask(split)).line(data) or b""
    response = json_format.ParseDict(data, observer_pb2.GetFlowsResponse(), ignore_unknown_fields=True)
    expected = masked_response(response, field_mask_tree(FLOW_DESCRIPTOR, split))
    assert json_format.Parse(line, observer_pb2.GetFlowsResponse()) == expected
    if "time" not in split:
        assert b'"time"' not in line and b'"node_name"' not in line


@pytest.mark.parametrize("number", [1, 2])
def test_the_docs_mask_on_the_docs_lines_changes_nothing(number):
    # Lines 1-2 were written with this mask: "source":{} and "destination":{} are its mark.
    raw = real_lines()[number - 1]
    encoder = ExportEncoder(mask=compile_field_mask(parse_field_mask(DOCS_MASK)))
    assert encoder.line(events_from_bytes(raw)[0].data) == raw + b"\n"


def test_a_masked_path_allocates_its_message_even_when_the_flow_has_none():
    mask = compile_field_mask(["source.namespace", "l4.TCP", "verdict"])
    assert mask_message({"verdict": "DROPPED"}, mask) == {"verdict": "DROPPED", "source": {}, "l4": {}}


@pytest.mark.parametrize("paths", ["source.nope", "nope", "source.labels.x", "l4.TCP.nope"])
def test_a_field_mask_path_that_names_no_field_is_refused(paths):
    with pytest.raises(ValueError, match="field mask path"):
        compile_field_mask(parse_field_mask(paths))


# -- filters -----------------------------------------------------------------------------------------------


def test_the_allowlist_and_denylist_decide_before_the_mask(tmp_path):
    path = tmp_path / "flows.log"
    keep = compile_filters([{"verdict": ["DROPPED"]}], [{"source_pod": ["default/xwing"]}]).matches
    exporter = open_export(str(path), keep=keep, field_mask=["time"])  # the mask drops verdict and pods
    for event in read(REAL_FLOWS)[:6]:
        exporter.offer(event.data)
    exporter.offer({"lost_events": {"num_events_lost": "1"}, "time": "2026-01-01T00:00:00Z"})
    exporter.close()
    # Line 1 is DROPPED, line 2 DROPPED from xwing (denied), 3-6 FORWARDED; with an allowlist a lost
    # event matches no filter (Hubble's filter functions need a flow).
    assert path.read_bytes() == b'{"flow":{"time":"2023-08-21T12:12:13.517394084Z"},"time":"2023-08-21T12:12:13.517394084Z"}\n'


def test_with_only_a_denylist_lost_events_are_written(tmp_path):
    path = tmp_path / "flows.log"
    exporter = open_export(str(path), keep=compile_filters([], [{"verdict": ["FORWARDED"]}]).matches)
    for event in read(REAL_FLOWS)[:6]:
        exporter.offer(event.data)
    exporter.offer({"lost_events": {"num_events_lost": "1"}, "node_name": "n", "time": "2026-01-01T00:00:00Z"})
    exporter.close()
    assert [next(iter(event.data)) for event in read(path)] == ["flow", "flow", "lost_events"]
    assert exporter.stats.flows == 2 and exporter.stats.lines == 3


def test_a_cel_filter_sees_what_enrichment_filled(tmp_path):
    path = tmp_path / "flows.log"
    keep = compile_filters([{"experimental": {"cel_expression": ['"rule-x" in _flow.policy_log']}}], []).matches
    exporter = open_export(str(path), keep=keep)
    flow = {"time": "2026-01-01T00:00:01Z", "verdict": "DROPPED"}
    exporter.offer({"flow": dict(flow)})
    exporter.offer({"flow": {**flow, "policy_log": ["rule-x"]}})
    exporter.close()
    assert [event.data["flow"].get("policy_log") for event in read(path)] == [["rule-x"]]


# -- rotation ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def numbered(count: int, width: int = 200) -> list[bytes]:
    """Distinct canonical lines of `width` bytes, numbered in their uuid."""
    lines = []
    for index in range(count):
        head = b'{"flow":{"time":"2026-01-01T00:00:01Z","uuid":"'
        tail = b'"},"time":"2026-01-01T00:00:01Z"}\n'
        lines.append(head + str(index).zfill(width - len(head) - len(tail)).encode() + tail)
    return lines


def write_lines(target: RotatingFile, lines: list[bytes]) -> None:
    waiting = deque(lines)
    target.drain(waiting, lambda _line: None)
    assert not waiting
    target.close()


def test_backup_names_are_lumberjacks():
    when = 1_764_601_445.123456  # 2025-12-01T15:04:05.123 UTC
    assert backup_name("/var/run/cilium/hubble/events.log", when) == \
        "/var/run/cilium/hubble/events-2025-12-01T15-04-05.123.log"
    assert backup_name("flows", when) == "flows-2025-12-01T15-04-05.123"
    assert backup_name("/x/a.json.log", when) == "/x/a.json-2025-12-01T15-04-05.123.log"


def test_rotation_keeps_max_backups_newest_first_and_no_file_passes_the_size(tmp_path):
    path = tmp_path / "flows.log"
    clock = Clock()
    target = RotatingFile(str(path), max_bytes=1000, max_backups=3, clock=clock)
    lines = numbered(30)  # 200 bytes each: 5 a file, 6 files, 2 of the oldest deleted
    write_lines(target, lines)
    backups = backups_of(str(path))
    assert [os.path.basename(name) for name in backups] == [
        os.path.basename(backup_name(str(path), clock.now - step)) for step in range(3)]
    files = [*reversed(backups), str(path)]
    assert all(os.path.getsize(name) <= 1000 for name in files)
    written = b"".join(Path(name).read_bytes() for name in files)
    assert written == b"".join(lines[10:])  # the oldest two files went, nothing else, in order
    assert target.rotations == 5


def test_compressed_backups_are_gzip_that_hushflow_reads(tmp_path):
    path = tmp_path / "flows.log"
    target = RotatingFile(str(path), max_bytes=1000, max_backups=2, compress=True, clock=Clock())
    lines = numbered(20)
    write_lines(target, lines)
    backups = backups_of(str(path))
    assert len(backups) == 2 and all(name.endswith(".log.gz") for name in backups)
    assert not [name for name in os.listdir(tmp_path) if name.endswith("0.log") and name != "flows.log"]
    assert gzip.decompress(Path(backups[0]).read_bytes()) == b"".join(lines[10:15])
    assert [event.data["flow"]["uuid"] for event in read(backups[1])] == \
        [json.loads(line)["flow"]["uuid"] for line in lines[5:10]]


def test_zero_backups_keeps_every_rotated_file(tmp_path):
    path = tmp_path / "flows.log"
    write_lines(RotatingFile(str(path), max_bytes=1000, max_backups=0, clock=Clock()), numbered(30))
    assert len(backups_of(str(path))) == 5


def test_two_rotations_in_one_millisecond_keep_both_files(tmp_path):
    path = tmp_path / "flows.log"
    write_lines(RotatingFile(str(path), max_bytes=400, max_backups=0, clock=lambda: 1_780_000_000.0),
                numbered(6))
    assert len(backups_of(str(path))) == 2  # lumberjack would have renamed the second over the first
    assert sum(len(read(name)) for name in [*backups_of(str(path)), str(path)]) == 6


def test_an_existing_file_is_appended_to_or_rotated_first_when_full(tmp_path):
    path = tmp_path / "flows.log"
    lines = numbered(6)
    path.write_bytes(b"".join(lines[:2]))
    write_lines(RotatingFile(str(path), max_bytes=1000, clock=Clock()), lines[2:4])
    assert path.read_bytes() == b"".join(lines[:4]) and not backups_of(str(path))
    write_lines(RotatingFile(str(path), max_bytes=1000, clock=Clock()), lines[4:6])  # 800 + 200 >= 1000
    assert path.read_bytes() == b"".join(lines[4:6]) and len(backups_of(str(path))) == 1


def test_a_line_longer_than_the_limit_is_dropped_and_counted(tmp_path):
    path = tmp_path / "flows.log"
    exporter = FlowExporter(RotatingFile(str(path), max_bytes=300, clock=Clock()))
    small = {"flow": {"time": "2026-01-01T00:00:01Z", "verdict": "DROPPED"}}
    exporter.offer({"flow": {"time": "2026-01-01T00:00:01Z", "Summary": "x" * 400}})
    exporter.offer(small)
    exporter.close()
    assert exporter.stats.not_exported == {TOO_LARGE: 1}
    assert [event.data for event in read(path)] == [{**small, "time": "2026-01-01T00:00:01Z"}]


def test_the_writer_flushes_while_the_run_goes_on(tmp_path):
    """`tail -F` sees a flow without waiting for more: the writer writes what waits every
    flush interval, before the exporter is closed."""
    path = tmp_path / "flows.log"
    exporter = open_export(str(path))
    exporter.flush_interval = 0.05
    exporter.start()
    try:
        exporter.offer(read(EXAMPLE_FLOWS)[0].data)
        deadline = time.monotonic() + 30
        while not (path.exists() and path.read_bytes().endswith(b"\n")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(read(path)) == 1
    finally:
        exporter.close()


def test_stdout_gets_the_same_lines():
    out = io.BytesIO()
    exporter = open_export("-", stdout=out)
    events = read(REAL_FLOWS)[:6]
    for event in events:
        exporter.offer(event.data)
    exporter.close()
    assert out.getvalue() == b"".join(line + b"\n" for line in real_lines()[:6])
    assert isinstance(exporter.target, StreamTarget)


# -- failures --------------------------------------------------------------------------------------------------


class FailingTarget:
    """A disk that is full for the first `failures` writes, then writes into `lines`."""

    def __init__(self, failures: int, code: int = errno.ENOSPC) -> None:
        self.failures = failures
        self.code = code
        self.lines: list[bytes] = []
        self.mill_errors: list[str] = []
        self.attempts = 0

    def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(self.code, os.strerror(self.code))
        while lines:
            line = lines.popleft()
            self.lines.append(line)
            written(line)

    def close(self) -> None:
        pass


def test_a_full_disk_is_counted_reported_once_retried_and_loses_nothing():
    target = FailingTarget(failures=3)
    said: list[str] = []
    exporter = FlowExporter(target, report=said.append)  # type: ignore[arg-type]
    events = read(EXAMPLE_FLOWS)
    for round_ in range(4):
        for event in events[round_ * 5 : round_ * 5 + 5]:
            exporter.offer(event.data)
        exporter.flush()
    exporter.offer(events[20].data)
    assert exporter.close() == 0
    assert exporter.stats.write_failures == 3
    assert len(target.lines) == 21 and exporter.stats.flows == 21 and not exporter.stats.not_exported
    assert [line.split(" (")[0] for line in said] == [
        "export: cannot write the export", "export: writes work again"]
    assert "No space left on device" in said[0]


def test_a_disk_failing_until_the_backlog_is_full_drops_and_counts_never_blocks():
    target = FailingTarget(failures=10**9, code=errno.EIO)
    said: list[str] = []
    exporter = FlowExporter(target, max_backlog_bytes=10_000, report=said.append)  # type: ignore[arg-type]
    exporter.flush_interval = 0.01
    exporter.start()
    events = read(EXAMPLE_FLOWS)
    for _ in range(20):
        for event in events:
            exporter.offer(event.data)  # returns at once whatever the disk does
    left = exporter.close(timeout=0.2)
    stats = exporter.stats
    assert stats.not_exported[BACKLOG_FULL] > 0 and left > 0
    assert stats.not_exported[BACKLOG_FULL] + stats.not_exported[UNWRITTEN_AT_EXIT] == 20 * len(events)
    assert stats.write_failures >= 1 and not target.lines
    assert sum("behind its file" in line for line in said) == 1  # reported once, counted always


def test_a_real_write_error_is_counted_and_the_lines_written_once_the_place_is_back(tmp_path):
    directory = tmp_path / "export"
    path = directory / "flows.log"
    check_export_path(str(path))
    exporter = open_export(str(path))
    directory.rmdir()  # the check made it (lumberjack makes it too) and left no file in it
    directory.write_text("a file where the directory was\n")  # the next open fails: ENOTDIR
    event = read(EXAMPLE_FLOWS)[0]
    exporter.offer(event.data)
    exporter.flush()
    assert exporter.stats.write_failures == 1 and exporter.stats.lines == 0
    directory.unlink()
    exporter.flush()  # lumberjack makes the directory again
    exporter.close()
    assert [e.data for e in read(path)] == [canonical_event(event.data)] and exporter.stats.flows == 1


def test_an_event_that_does_not_encode_is_counted_and_skipped(tmp_path):
    path = tmp_path / "flows.log"
    exporter = open_export(str(path))
    exporter.offer({"flow": {"verdict": ["not", "an", "enum"]}})
    exporter.offer(read(EXAMPLE_FLOWS)[0].data)
    exporter.close()
    assert exporter.stats.not_exported == {NOT_ENCODABLE: 1} and len(read(path)) == 1


def test_offer_does_not_wait_for_a_slow_disk(tmp_path):
    """A disk that hangs holds the writer thread only: the caller's offers all return."""
    release = threading.Event()

    class HangingTarget(FailingTarget):
        def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
            release.wait(60)
            super().drain(lines, written)

    target = HangingTarget(failures=0)
    exporter = FlowExporter(target)  # type: ignore[arg-type]
    exporter.flush_interval = 0.01
    exporter.start()
    events = read(EXAMPLE_FLOWS)
    for _ in range(40):
        for event in events:
            exporter.offer(event.data)
    release.set()
    assert exporter.close() == 0
    assert len(target.lines) == 40 * len(events)


@pytest.mark.parametrize(("path", "problem"), [
    ("{tmp}", "is a directory"),
    ("/dev/null", "not a regular file"),
    ("/proc/hushflow-export.log", "cannot write"),
    ("{tmp}/a-file/flows.log", "cannot write"),
])
def test_a_place_the_export_cannot_be_is_refused(tmp_path, path, problem):
    (tmp_path / "a-file").write_text("x\n")
    with pytest.raises(ValueError, match=problem):
        check_export_path(path.format(tmp=tmp_path))


def test_checking_the_path_leaves_no_file_behind(tmp_path):
    check_export_path(str(tmp_path / "new" / "flows.log"))
    assert not (tmp_path / "new" / "flows.log").exists()


class SlowTarget(FailingTarget):
    """A disk that works, slowly."""

    def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
        time.sleep(0.01)
        super().drain(lines, written)


def test_a_writer_behind_but_working_holds_the_caller_and_loses_nothing():
    # A replay reads faster than a disk writes: the caller waits for room instead of dropping.
    target = SlowTarget(failures=0)
    exporter = FlowExporter(target, max_backlog_bytes=5_000)  # type: ignore[arg-type]
    exporter.flush_interval = 0.01
    exporter.start()
    events = read(EXAMPLE_FLOWS)
    for _ in range(4):
        for event in events:
            exporter.offer(event.data)
    assert exporter.close() == 0
    assert len(target.lines) == 4 * len(events) and not exporter.stats.not_exported


def test_a_hung_writer_is_waited_for_once_then_lines_are_dropped_and_counted():
    release = threading.Event()

    class HangingTarget(FailingTarget):
        def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
            release.wait(60)
            super().drain(lines, written)

    target = HangingTarget(failures=0)
    said: list[str] = []
    exporter = FlowExporter(target, max_backlog_bytes=5_000, report=said.append)  # type: ignore[arg-type]
    exporter.flush_interval = 0.01
    exporter.start()
    events = read(EXAMPLE_FLOWS)
    for _ in range(4):
        for event in events:
            exporter.offer(event.data)  # one of them waits (a second), the others drop at once
    dropped = exporter.stats.not_exported[BACKLOG_FULL]
    release.set()
    assert exporter.close() == 0
    assert dropped > 0 and len(target.lines) + dropped == 4 * len(events)
    assert sum("behind its file" in line for line in said) == 1


def test_a_new_export_file_is_the_owners_only_and_rotation_keeps_the_mode(tmp_path):
    """A new file is 0600 (flows name pods, IPs, DNS names and policies; lumberjack's is 0644),
    and rotation keeps a replaced file's mode, as lumberjack does."""
    import stat

    path = tmp_path / "flows.log"
    write_lines(RotatingFile(str(path), max_bytes=1000, max_backups=3, clock=Clock()), numbered(2))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)  # the operator's choice survives rotation
    write_lines(RotatingFile(str(path), max_bytes=1000, max_backups=3, clock=Clock()), numbered(12))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
