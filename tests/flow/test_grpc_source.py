"""GrpcFlowSource against the Observer test double: real gRPC on loopback (streams, resume, backoff)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import grpc
import orjson
import pytest
from google.protobuf import json_format

from hushflow.flow.grpc_source import Backoff, GrpcFlowSource, GrpcSourceError
from hushflow.flow.reader import FlowEvent
from hushflow.proto import observer_pb2
from tests.doubles.observer_server import EventInput, ObserverTestServer
from tests.flow.conftest import flow_line, numbered, summaries

NO_WAIT = Backoff(initial=0.0, maximum=0.0)


class Collector:
    """Iterates a source in a thread, like the pipeline's reader thread."""

    def __init__(self, source: GrpcFlowSource) -> None:
        self.source = source
        self.events: list[FlowEvent] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.source:
                self.events.append(event)
        except BaseException as e:  # reported by the test
            self.error = e

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        wait_until(lambda: len(self.events) >= count or self.error is not None, timeout)
        assert self.error is None, self.error
        assert len(self.events) >= count, f"{len(self.events)} of {count} events"

    def stop(self) -> None:
        self.source.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- streams -------------------------------------------------------------------------------------


def test_plain_stream_yields_the_recorded_lines_byte_for_byte(server: ObserverTestServer, lines: list[bytes]) -> None:
    source = GrpcFlowSource(server.address, follow=False)
    events = list(source)
    assert [e.raw for e in events] == lines
    assert [e.data for e in events] == [orjson.loads(line) for line in lines]
    assert {e.source for e in events} == {server.address}
    assert [e.line for e in events] == list(range(1, len(lines) + 1))
    assert source.stats.flows == source.stats.events == len(lines)
    assert source.stats.streams == 1 and source.stats.reconnects == 0
    assert source.stats.server_version == "hushflow-observer-test-double"
    assert source.last_event_time == orjson.loads(lines[-1])["time"]
    assert not source.connected
    assert server.requests[0].follow is False


def test_follow_receives_events_added_later_in_order() -> None:
    with ObserverTestServer(numbered(5)) as server:
        collector = Collector(GrpcFlowSource(server.address, follow=True))
        server.wait_for_streams(1)
        # Hubble: follow without since/number starts at the end; the recorded part is not sent.
        server.add_events(numbered(3, start=5))
        collector.wait_for(3)
        assert collector.source.connected
        server.add_events(numbered(4, start=8))
        collector.wait_for(7)
        collector.stop()
        assert summaries(collector.events) == [f"#{i}" for i in range(5, 12)]
        assert not collector.source.connected
        assert collector.source.stats.reconnects == 0


def test_follow_with_since_sends_the_recorded_part_then_follows() -> None:
    with ObserverTestServer(numbered(10)) as server:
        collector = Collector(GrpcFlowSource(server.address, since="2026-03-02T09:00:00.500Z"))
        collector.wait_for(5)
        server.add_events(numbered(2, start=10))
        collector.wait_for(7)
        collector.stop()
        assert summaries(collector.events) == [f"#{i}" for i in range(5, 12)]


def test_number_asks_for_the_last_flows_and_then_follows() -> None:
    with ObserverTestServer(numbered(10)) as server:
        assert summaries(list(GrpcFlowSource(server.address, follow=False, number=3))) == ["#7", "#8", "#9"]
        collector = Collector(GrpcFlowSource(server.address, number=2))
        collector.wait_for(2)
        server.add_events(numbered(1, start=10))
        collector.wait_for(3)
        collector.stop()
    assert summaries(collector.events) == ["#8", "#9", "#10"]
    assert [r.number for r in server.requests] == [3, 2]


# -- failures, reconnection, resume -----------------------------------------------------------------


def test_cut_stream_is_resumed_from_the_last_time_without_duplicates_or_loss() -> None:
    lines = numbered(10)
    # Flows 3, 4 and 5 share one timestamp; the cut comes after 4 (index 4): `since` is inclusive,
    # so the resumed stream sends 3 and 4 again, and 5, which was never delivered, must stay.
    same = "2026-03-02T09:00:00.300Z"
    lines[3:6] = [flow_line(i, same, f"uuid-{i}") for i in (3, 4, 5)]
    with ObserverTestServer(lines) as server:
        server.cut_streams_after(5)
        source = GrpcFlowSource(server.address, follow=False, backoff=NO_WAIT)
        events = list(source)
    assert summaries(events) == [f"#{i}" for i in range(10)]
    assert [e.line for e in events] == list(range(1, 11))
    assert source.stats.reconnects == 1 and source.stats.duplicates_dropped == 2
    assert source.stats.last_error == "UNAVAILABLE: stream cut by the test after 5 events"
    first, resumed = server.requests
    assert not first.HasField("since")
    assert json_format.MessageToJson(resumed.since) == f'"{same}"'


def test_follow_stream_cut_twice_is_resumed_and_keeps_following() -> None:
    with ObserverTestServer() as server:
        server.cut_streams_after(2, 0)
        collector = Collector(GrpcFlowSource(server.address, backoff=NO_WAIT))
        server.wait_for_streams(1)
        server.add_events(numbered(6))
        collector.wait_for(6)
        server.add_events(numbered(2, start=6))
        collector.wait_for(8)
        collector.stop()
    assert summaries(collector.events) == [f"#{i}" for i in range(8)]
    stats = collector.source.stats
    assert stats.reconnects == 2 and stats.streams == 3 and stats.duplicates_dropped == 1


def test_follow_from_now_cut_before_any_flow_resumes_from_the_clock_at_its_start() -> None:
    # Without `since`, a follow stream starts at the end of Hubble's ring; when it fails before any
    # flow, what happens during the outage is only recovered by asking from when it started.
    with ObserverTestServer() as server:
        server.cut_streams_after(0)
        source = GrpcFlowSource(server.address, backoff=NO_WAIT, clock=lambda: 1772442000.25)
        collector = Collector(source)
        server.wait_for_streams(1)
        server.add_events(numbered(3, start=10))  # 09:00:01.0 .. 01.2, after our start
        collector.wait_for(3)
        collector.stop()
    assert summaries(collector.events) == ["#10", "#11", "#12"]
    first, resumed = server.requests
    assert not first.HasField("since")
    assert resumed.since.ToJsonString() == "2026-03-02T08:59:50.250Z"  # minus RESUME_CLOCK_MARGIN


def test_follow_stream_ended_by_the_server_is_reopened() -> None:
    with ObserverTestServer() as server:
        collector = Collector(GrpcFlowSource(server.address, backoff=NO_WAIT))
        server.wait_for_streams(1)
        server.add_events(numbered(2))
        collector.wait_for(2)
        server.end_streams()
        server.wait_for_streams(2)
        server.add_events(numbered(2, start=2))
        collector.wait_for(4)
        collector.stop()
    assert summaries(collector.events) == ["#0", "#1", "#2", "#3"]
    assert collector.source.stats.reconnects == 1
    assert collector.source.stats.last_error == "the server ended the stream"


def test_deadline_exceeded_reconnects_and_resumes() -> None:
    with ObserverTestServer() as server:
        collector = Collector(GrpcFlowSource(server.address, backoff=NO_WAIT, stream_timeout=0.5))
        server.wait_for_streams(1)
        server.add_events(numbered(1))
        collector.wait_for(1)
        server.wait_for_streams(2)  # the deadline passed: a second call, resuming at #0's time
        server.add_events(numbered(1, start=1))
        collector.wait_for(2)
        collector.stop()
    assert summaries(collector.events) == ["#0", "#1"]
    assert collector.source.stats.reconnects >= 1
    assert (collector.source.stats.last_error or "").startswith("DEADLINE_EXCEEDED")
    assert server.requests[1].since.ToJsonString() == "2026-03-02T09:00:00Z"


def test_a_permanent_refusal_is_an_error_not_a_retry() -> None:
    with ObserverTestServer() as server:
        collector = Collector(GrpcFlowSource(server.address, backoff=NO_WAIT))
        server.wait_for_streams(1)
        server.end_streams(grpc.StatusCode.PERMISSION_DENIED, "not allowed")
        collector.thread.join(10)
    assert isinstance(collector.error, GrpcSourceError)
    assert str(collector.error) == f"{server.address}: GetFlows refused: PERMISSION_DENIED: not allowed"


def test_backoff_is_exponential_with_full_jitter_and_gives_up_after_max_retries() -> None:
    sleeps: list[float] = []
    jitter = iter([0.5, 1.0, 0.25, 0.5, 0.5])
    retries: list[str] = []
    source = GrpcFlowSource(
        f"127.0.0.1:{free_port()}", backoff=Backoff(initial=1.0, maximum=5.0, multiplier=2.0), max_retries=4,
        sleep=sleeps.append, random=lambda: next(jitter), on_retry=lambda error, delay: retries.append(error),
    )
    with pytest.raises(GrpcSourceError, match="giving up after 5 attempts: UNAVAILABLE"):
        list(source)
    assert sleeps == [0.5 * 1, 1.0 * 2, 0.25 * 4, 0.5 * 5]  # random() * min(max, initial * 2**n)
    assert len(retries) == 4 and all(r.startswith("UNAVAILABLE") for r in retries)
    assert source.stats.streams == 0 and source.stats.reconnects == 4 and source.last_event_time is None


def test_backoff_restarts_after_a_stream_that_delivered() -> None:
    sleeps: list[float] = []
    with ObserverTestServer(numbered(6)) as server:
        server.cut_streams_after(3, 0, 0)
        source = GrpcFlowSource(server.address, follow=False, backoff=Backoff(initial=1.0, maximum=60.0),
                                sleep=sleeps.append, random=lambda: 1.0)
        events = list(source)
    assert summaries(events) == [f"#{i}" for i in range(6)]
    assert sleeps == [1.0, 2.0, 4.0]  # after the 3 events: attempt 0 again, then 1, 2
    assert source.stats.reconnects == 3


def test_stop_interrupts_a_backoff_wait() -> None:
    source = GrpcFlowSource(f"127.0.0.1:{free_port()}", backoff=Backoff(initial=60.0, maximum=60.0), random=lambda: 1.0)
    collector = Collector(source)
    wait_until(lambda: source.stats.last_error is not None)
    started = time.monotonic()
    collector.stop()
    assert time.monotonic() - started < 5


def test_setting_the_callers_stop_event_ends_a_quiet_follow_stream() -> None:
    stop = threading.Event()
    with ObserverTestServer() as server:
        collector = Collector(GrpcFlowSource(server.address, stop_event=stop))
        server.wait_for_streams(1)
        wait_until(lambda: collector.source.connected)
        stop.set()
        collector.thread.join(10)
        assert not collector.thread.is_alive() and collector.error is None
        wait_until(lambda: server.open_streams == 0)


# -- lost events, node status, slow peers ------------------------------------------------------------


def test_lost_events_and_node_status_are_counted() -> None:
    events: list[EventInput] = [
        {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["a", "b"]}},
        *numbered(2),
        {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "40", "cpu": 1},
         "node_name": "a", "time": "2026-03-02T09:00:00.150Z"},
        {"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["b"], "message": "gone"}},
        {"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "2"}},
        {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["b"]}},
    ]
    with ObserverTestServer(events) as server:
        source = GrpcFlowSource(server.address, follow=False)
        got = list(source)
    assert [e.kind for e in got] == ["flow", "flow", "lost_events", "lost_events"]
    assert got[2].raw == (b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"40","cpu":1},'
                          b'"node_name":"a","time":"2026-03-02T09:00:00.150Z"}')
    stats = source.stats
    assert stats.lost_events == 42 and stats.lost_events_messages == 2
    assert stats.node_status == {"NODE_CONNECTED": 2, "NODE_UNAVAILABLE": 1}
    assert stats.node_states == {"a": "NODE_CONNECTED", "b": "NODE_CONNECTED"}


def test_lost_events_are_not_counted_twice_after_a_resume() -> None:
    lines = [*numbered(2), orjson.dumps({"lost_events": {"num_events_lost": "7"}, "time": "2026-03-02T09:00:00.150Z"}),
             *numbered(2, start=2)]
    with ObserverTestServer(lines) as server:
        server.cut_streams_after(4)
        source = GrpcFlowSource(server.address, follow=False, backoff=NO_WAIT)
        got = list(source)
    assert [e.kind for e in got].count("lost_events") == 1 and source.stats.lost_events == 7
    assert summaries([e for e in got if e.flow is not None]) == ["#0", "#1", "#2", "#3"]


def test_slow_consumer_gets_everything_in_order() -> None:
    lines = numbered(2000)
    with ObserverTestServer(lines) as server:
        source = GrpcFlowSource(server.address, follow=False)
        events = []
        for event in source:
            events.append(event)
            if len(events) == 1:
                time.sleep(0.5)  # the server fills the flow-control windows meanwhile
            elif len(events) % 50 == 0:
                time.sleep(0.01)
    assert summaries(events) == [f"#{i}" for i in range(2000)]
    assert source.stats.reconnects == 0 and source.stats.duplicates_dropped == 0


def test_slow_server_is_waited_for() -> None:
    with ObserverTestServer(numbered(10)) as server:
        server.send_delay = 0.05
        events = list(GrpcFlowSource(server.address, follow=False))
    assert summaries(events) == [f"#{i}" for i in range(10)]


def test_server_status() -> None:
    with ObserverTestServer(numbered(3)) as server:
        status = GrpcFlowSource(server.address).server_status()
    assert status.num_flows == 3 and status.version == "hushflow-observer-test-double"
    assert status.num_connected_nodes.value == 1


# -- messages with no JSON form ------------------------------------------------------------------


def _flow_at(summary: str, seconds: int, nanos: int = 0) -> observer_pb2.GetFlowsResponse:
    message = observer_pb2.GetFlowsResponse(node_name="node-a")
    message.flow.Summary = summary
    message.flow.time.seconds = seconds
    message.flow.time.nanos = nanos
    message.time.CopyFrom(message.flow.time)
    return message


@pytest.mark.parametrize(("seconds", "nanos"), [
    (253402300800, 0),  # 10000-01-01T00:00:00Z: one second past what protojson writes
    (-62135596801, 0),  # before 0001-01-01
    (1 << 62, 0),  # past what the C library's gmtime takes
    (-(1 << 63), 0),
    (1772442000, -1),
    (1772442000, 1_000_000_000),
])
def test_a_timestamp_out_of_range_is_a_counted_bad_event_not_the_end_of_the_stream(seconds: int, nanos: int) -> None:
    events = [_flow_at("#0", 1772442000), _flow_at("bad", seconds, nanos), _flow_at("#2", 1772442001)]
    with ObserverTestServer(events) as server:
        source = GrpcFlowSource(server.address, follow=False)
        got = list(source)
    assert summaries(got) == ["#0", "#2"]
    assert source.stats.bad_events == 1
    assert source.stats.last_bad_event is not None and "out of range" in source.stats.last_bad_event
    assert source.stats.reconnects == 0
