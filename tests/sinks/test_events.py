"""Unexpected-drop events: deduplication per window, the webhook's retries, a non-blocking sink."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from hushflow.flow.connection import connection_of
from hushflow.sinks.events import BackgroundSink, StreamSink, UnexpectedDropEvents, WebhookSink
from hushflow.sinks.records import VerdictRecord


def drop(port: int = 443, src: str = "web", dst: str = "203.0.113.5", time_: str = "2026-01-01T00:00:00Z"):
    return {
        "time": time_,
        "verdict": "DROPPED",
        "drop_reason_desc": "POLICY_DENIED",
        "IP": {"source": "10.0.0.1", "destination": dst},
        "l4": {"TCP": {"source_port": 40000, "destination_port": port}},
        "source": {"namespace": "shop", "pod_name": f"{src}-0", "workloads": [{"name": src, "kind": "Deployment"}]},
        "destination": {"identity": 2, "labels": ["reserved:world"]},
        "traffic_direction": "EGRESS",
        "event_type": {"type": 5},
    }


def unexpected(flow: dict, now: float, tags: tuple[str, ...] = ()) -> VerdictRecord:
    conn = connection_of(flow, now)
    assert conn is not None
    return VerdictRecord.of(flow, conn, tags=tags, expected=False)


def test_repeats_in_a_window_are_counted_not_sent():
    out = io.StringIO()
    events = UnexpectedDropEvents([StreamSink(out)], window=60)
    assert events.offer(unexpected(drop(), 0.0), "why")
    assert not events.offer(unexpected(drop(), 10.0))  # the SYN retransmit
    assert events.offer(unexpected(drop(port=80), 11.0))  # another port: another key
    assert events.offer(unexpected(drop(src="api"), 12.0))  # another workload
    assert events.offer(unexpected(drop(), 61.0))  # the window is over
    sent = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["repeats_since_last"] for e in sent] == [0, 0, 0, 1]
    assert sent[0]["explain"] == "why" and sent[0]["source"]["workload"] == "web"
    assert sent[0]["destination"] == "world" and sent[0]["port"] == 443
    assert events.suppressed == 1


class _Receiver(BaseHTTPRequestHandler):
    fail_first = 2
    bodies: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
        else:
            cls.bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_retries_then_delivers():
    _Receiver.fail_first, _Receiver.bodies = 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits: list[float] = []
    try:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook", sleep=waits.append)
        assert sink.send({"kind": "unexpected-drop"})
    finally:
        server.shutdown()
    assert _Receiver.bodies == [{"kind": "unexpected-drop"}]
    assert len(waits) == 2 and waits[0] <= 0.5 and waits[1] <= 1.0  # full jitter, doubling caps


def test_webhook_gives_up_on_a_client_error_at_once():
    _Receiver.fail_first, _Receiver.bodies = 0, []

    class Reject(_Receiver):
        def do_POST(self):
            self.send_response(400)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits: list[float] = []
    try:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook", sleep=waits.append)
        assert not sink.send({"kind": "x"})
    finally:
        server.shutdown()
    assert waits == [] and sink.last_error == "HTTP 400"


def test_background_sink_never_blocks_and_counts_what_it_drops():
    release = threading.Event()
    results: list[tuple[str, str]] = []

    class Slow:
        name = "slow"

        def send(self, event):
            release.wait(10)
            return True

        def close(self):
            pass

    sink = BackgroundSink(Slow(), capacity=2, on_result=lambda name, outcome: results.append((name, outcome)))
    started = time.monotonic()
    outcomes = [sink.send({"n": i}) for i in range(5)]
    assert time.monotonic() - started < 1.0
    assert outcomes.count(False) >= 2 and sink.dropped == outcomes.count(False)
    release.set()
    sink.close()
    assert ("slow", "dropped") in results and ("slow", "delivered") in results
