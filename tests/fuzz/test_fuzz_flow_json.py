"""Fuzz: Hubble flow JSON lines, as every command reads them, and the daemon's per-flow code.

Properties of the reader (flow/reader.py): every non-blank line is an event or a counted bad line
(`lines == events + bad_lines`), numbered within the input and in order; how the input is cut
into chunks changes nothing; an event's `raw` is its `data`, and reading `raw` again gives the
same event (the canonical form is a fixed point); `strict` gives the same events or stops at the
first bad line, naming it.

Property of the daemon (app/daemon.py): `Daemon._process` on any event the reader hands out
returns, or raises only what the pipeline documents as a skipped flow (counted in
hushflow_malformed_input_total), and only for a flow that is not valid protojson; the periodic
round (metrics, expiry) still runs after it; only valid, deniable addresses reach the state.
"""

from __future__ import annotations

import io
import math
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.flow.dns import canonical_ip
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS, EventNormalizer, ProtoJSONError
from hushflow.flow.reader import FlowEvent, FlowReader, FlowReadError, ReadStats
from hushflow.flow.sources import FileSource
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import EXAMPLE, dumps, json_values, mutated_bytes, mutated_json, seed_lines

GZIP_MAGIC = b"\x1f\x8b"
_SPECIAL_LINES = (
    b"", b" ", b"\r", b"\t \t", b"\xef\xbb\xbf", b"null", b"[]", b"{}", b'"flow"', b"1e999", b'{"flow":null}',
    b'{"flow":{}}', b'{"flow":[]}', b'{"lost_events":{"num_events_lost":"x"}}',
    b'{"lost_events":{"num_events_lost":"18446744073709551615"}}', b'{"node_status":{"state_change":7}}',
    b'{"flow":{"verdict":12345}}', b'{"flow":{"time":"10000-01-01T00:00:00Z"}}', b'{"time":1e300}',
    b'{"flow":{"l7":{"dns":{"ips":"1.2.3.4"}}}}', b'{"flow":{"l4":{"TCP":{"destination_port":-1}}}}',
    b'{"flow":{"IP":{"source":"fe80::1%eth0"}}}', b'{"agent_event":{}}', b'{"debug_event":{"cpu":-1}}',
    b"\x00\x00", b"\xff\xfe", b"[" * 200, b'{"a":' * 200,
)


def _seed_json() -> st.SearchStrategy[Any]:
    return st.sampled_from(seed_lines()).map(orjson.loads)


flow_line = st.one_of(
    st.sampled_from(seed_lines()), st.sampled_from(seed_lines()), st.sampled_from(seed_lines()),
    st.sampled_from(_SPECIAL_LINES),
    st.sampled_from(seed_lines()).flatmap(mutated_bytes),
    _seed_json().flatmap(mutated_json).map(dumps),
    # the legacy `-o json` bare Flow, mutated
    _seed_json().map(lambda event: event.get("flow", event)).flatmap(mutated_json).map(dumps),
    json_values.map(dumps),
    st.binary(max_size=64),
)


@st.composite
def flow_document(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(flow_line, max_size=6))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    doc = newline.join(line.replace(b"\n", b" ") for line in lines)
    if draw(st.booleans()):
        doc += newline
    if draw(st.integers(0, 9)) == 0:
        doc = b"\xef\xbb\xbf" + doc
    return doc


def _read(doc: bytes, **options: Any) -> tuple[list[FlowEvent], ReadStats]:
    stats = ReadStats(max_reported=1000)
    events = list(FlowReader(["-"], stdin=io.BytesIO(doc), stats=stats, **options))
    return events, stats


def _summary(events: list[FlowEvent], stats: ReadStats) -> Any:
    return ([(e.line, e.data, e.raw) for e in events], [(b.line, b.reason) for b in stats.reported], stats.lines)


@fuzz_target(flow_document(), st.sampled_from([1, 3, 64, 4096]), st.sampled_from([80, 16 << 20]), ci_examples=400)
def test_fuzz_flow_lines(doc: bytes, chunk_size: int, max_line_bytes: int) -> None:
    """Every line an event or a counted bad line; chunking changes nothing; raw is a fixed point."""
    if doc[:2] == GZIP_MAGIC:  # read as gzip, which it is not: the whole read fails, naming the input
        with pytest.raises(FlowReadError, match=r"^-: "):
            _read(doc, max_line_bytes=max_line_bytes)
        note("not gzip after all")
        return
    events, stats = _read(doc, max_line_bytes=max_line_bytes)
    assert stats.lines == stats.events + stats.bad_lines == len(events) + len(stats.reported), stats
    last_line = doc.count(b"\n") + 1
    numbers = [e.line for e in events]
    assert numbers == sorted(set(numbers)), numbers
    assert all(1 <= n <= last_line for n in numbers + [b.line for b in stats.reported])
    assert not set(numbers) & {b.line for b in stats.reported}
    # The same input cut into other chunks.
    chunked, chunked_stats = _read(doc, max_line_bytes=max_line_bytes, chunk_size=chunk_size)
    assert _summary(chunked, chunked_stats) == _summary(events, stats)
    for event in events:
        assert isinstance(event.data, dict)
        assert orjson.loads(event.raw) == event.data
        assert event.kind in ("flow", "lost_events", "node_status", "agent_event", "debug_event", "empty")
        assert event.flow is None or isinstance(event.flow, dict)
        if len(event.raw) <= max_line_bytes:
            (again,), again_stats = _read(event.raw, max_line_bytes=max_line_bytes)
            assert (again.data, again.raw) == (event.data, event.raw), (event.raw, again.raw)
            assert again_stats.bad_lines == 0
    # strict: the same events, or stop at the first bad line and name it.
    try:
        strict, _ = _read(doc, max_line_bytes=max_line_bytes, strict=True)
    except FlowReadError as exc:
        assert stats.reported, exc
        first = stats.reported[0]
        assert str(exc).startswith(f"-:{first.line}: "), (str(exc), first)
        note("strict stopped")
    else:
        assert not stats.reported
        assert [(e.line, e.data) for e in strict] == [(e.line, e.data) for e in events]
    note("bad lines" if stats.bad_lines else "all events")


# -- the daemon's per-flow code ---------------------------------------------------------------------

#: What `Daemon._pipeline` documents as a skipped flow (counted, reported, the run goes on).
SKIPPED = FLOW_SHAPE_ERRORS


def _daemon() -> Daemon:
    options = RunOptions(policies=(str(EXAMPLE / "policies"),), resolve=False, clock="flows")
    return Daemon(options, source=FileSource(["(fuzz)"], False), stderr=io.StringIO(), clock=lambda: 1.8e9)


@fuzz_target(st.lists(flow_line, min_size=1, max_size=6), ci_examples=300)
def test_fuzz_daemon_per_flow(lines: list[bytes]) -> None:
    """The daemon takes any event the reader gives: processed, or a documented skip."""
    daemon = _daemon()
    doc = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    if doc[:2] == GZIP_MAGIC:
        return  # not gzip after all: the reader refuses the input (test_fuzz_flow_lines)
    events, _ = _read(doc)
    for event in events:
        try:
            daemon._process(event, 0.0)
        except SKIPPED as exc:
            skipped = daemon.summary.flows_skipped
            daemon._again(event, 0.0, exc)  # what the pipeline does: the canonical spelling once, else skip
            if daemon.summary.flows_skipped == skipped:
                note("processed in its canonical spelling")
                continue
            note(f"skipped ({type(exc).__name__})")
            # Only a flow that is no valid protojson may be skipped: a valid one is Hubble's own.
            try:
                EventNormalizer().normalize(event.data)
            except (ProtoJSONError, RecursionError):
                continue
            raise AssertionError(f"a valid flow was skipped: {event.raw[:300]!r}") from exc
        else:
            note("processed")
    daemon._periodic({"expire": -math.inf, "snapshot": -math.inf})
    # Whatever the answers said, only valid addresses that may be denied are in the state.
    for deny in daemon.denies:
        for ip in daemon.state.ips(deny.id):
            assert canonical_ip(ip) == ip, ip
            assert daemon.learner.protected.refusal(ip) is None, ip


@fuzz_target(flow_line, ci_examples=400)
def test_fuzz_jsonpb_proof(line: bytes) -> None:
    """The C proof (flow/_jsonpb_proof.c) is sound: a line it proves is exactly what the slow
    path (parse, normalize, encode) writes, so `observe -o jsonpb` may print it as it is."""
    from hushflow.flow.protojson import encode_event, go_json_escape, make_line_proof

    prove = make_line_proof()
    assert prove is not None  # make test builds the C module
    end = prove(line)
    if end < 0:
        note("not proven")
        return
    event = EventNormalizer().normalize(orjson.loads(line)).event
    assert encode_event(event) == line
    assert go_json_escape(orjson.dumps(event["flow"])) == line[8:end]
    note("proven")
