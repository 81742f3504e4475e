"""Unexpected-drop events: deduplication per window, the webhook's retries, a non-blocking sink."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from hushflow.flow.connection import connection_of
from hushflow.sinks.events import BackgroundSink, StreamSink, UnexpectedDropEvents, WebhookSink, make_sink
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


# -- redirects ---------------------------------------------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that records every connection and request it gets, and answers each
    request with `answer(handler)`."""

    def __init__(self, answer) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.answer = answer
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.requests.append((self.command, self.path))
                recorder.answer(self)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1  # any connection at all, even one that never makes a request
        return True


@contextmanager
def recording(answer) -> Iterator[_Recorder]:
    server = _Recorder(answer)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _accept(handler):
    handler.send_response(204)
    handler.end_headers()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("http://127.0.0.1:{port}/elsewhere", id="another-port"),
        pytest.param("http://localhost:{port}/hook", id="another-host"),
        pytest.param("https://127.0.0.1:{port}/hook", id="another-scheme"),
    ],
)
def test_a_webhook_follows_no_redirect_and_counts_it_failed(code: int, where: str) -> None:
    with recording(_accept) as elsewhere:
        location = where.format(port=elsewhere.server_address[1])

        def redirect(handler):
            handler.send_response(code)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with recording(redirect) as hook:
            url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
            outcomes: list[tuple[str, str]] = []
            reports: list[str] = []
            waits: list[float] = []
            sink = WebhookSink(url, sleep=waits.append, report=reports.append)
            background = BackgroundSink(sink, on_result=lambda name, outcome: outcomes.append((name, outcome)))
            background.send({"kind": "unexpected-drop"})
            background.send({"kind": "unexpected-drop", "n": 2})
            background.close()
    assert elsewhere.connections == 0 and elsewhere.requests == []
    assert hook.requests == [("POST", "/hook"), ("POST", "/hook")]  # no retries: a redirect is no hiccup
    assert waits == []
    assert outcomes == [("webhook", "failed"), ("webhook", "failed")]
    assert sink.last_error.startswith(f"HTTP {code} redirect")
    (report,) = reports  # once, however many events it turns away
    assert str(code) in report and "redirect" in report
    assert location.rsplit("/", 1)[0] in report  # where it pointed (scheme, host and port)
    assert "/elsewhere" not in report and "/hook" not in report  # paths may hold a webhook's token


def test_a_redirect_on_the_same_host_is_not_followed_either() -> None:
    def redirect(handler):
        if handler.path == "/hook":
            handler.send_response(308)
            handler.send_header("Location", "/moved")
            handler.end_headers()
        else:
            _accept(handler)

    with recording(redirect) as hook:
        reports: list[str] = []
        sink = WebhookSink(f"http://127.0.0.1:{hook.server_address[1]}/hook", sleep=lambda _s: None,
                           report=reports.append)
        assert not sink.send({"kind": "x"})
    assert hook.requests == [("POST", "/hook")]
    assert len(reports) == 1 and "same host" in reports[0]


def test_a_hostile_location_reaches_the_report_escaped() -> None:
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", "http://evil.example\x1b[2J/")
        handler.end_headers()

    with recording(redirect) as hook:
        reports: list[str] = []
        sink = WebhookSink(f"http://127.0.0.1:{hook.server_address[1]}/hook", sleep=lambda _s: None,
                           report=reports.append)
        assert not sink.send({"kind": "x"})
    assert len(reports) == 1 and "\x1b" not in reports[0]


def test_make_sink_hands_the_webhook_its_report() -> None:
    def report(_message: str) -> None:
        pass

    sink = make_sink("http://127.0.0.1:9/hook", report=report)
    assert isinstance(sink, BackgroundSink) and isinstance(sink.inner, WebhookSink)
    assert sink.inner.report is report
    sink.close(timeout=0)


def test_a_receiver_that_answers_garbage_is_a_failed_delivery_not_a_crash() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage():
        for _ in range(2):
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"garbage\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    with listener:
        sink = WebhookSink(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", retries=1, sleep=lambda _s: None)
        assert not sink.send({"kind": "x"})
    assert sink.last_error == "not an HTTP answer (BadStatusLine)"


def test_a_sink_that_raises_does_not_end_the_background_thread() -> None:
    outcomes: list[str] = []

    class Flaky:
        name = "flaky"
        calls = 0

        def send(self, event):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("a bug in a sink")
            return True

        def close(self):
            pass

    sink = BackgroundSink(Flaky(), on_result=lambda _name, outcome: outcomes.append(outcome))
    sink.send({"n": 1})
    sink.send({"n": 2})
    sink.close()
    assert outcomes == ["failed", "delivered"]
    assert sink.errors == 1 and sink.last_exception == "RuntimeError: a bug in a sink"
