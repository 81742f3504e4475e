"""Unexpected drops as JSON events: stdout, a file, or an HTTP webhook with retries.

One event per (source workload, destination, port, tag) per window (flow time): the first drop
opens the window and is sent with its explanation; the repeats inside the window (SYN
retransmits, retries of the same call) are only counted, and the count goes out with the next
event for that key. Events are JSON objects, one per line:

    {"kind": "unexpected-drop", "time": ..., "direction": ..., "source": {"namespace", "workload",
     "pod"}, "destination": ..., "port": ..., "protocol": ..., "verdict": ..., "drop_reason": ...,
     "tag": [...], "repeats_since_last": N, "explain": "<hushflow explain text>", "flow": {...}}

A webhook follows no redirect, not even to another path on the same host: a 3xx answer could
carry the events (flows, pod names, explanations) to another host, or from https to plain http,
and urllib would resend a POST as a GET without its body and call that a success. A redirect is
a failed delivery, not retried (it is an answer, not a hiccup), and reported once per target
with the scheme, host and port it pointed to (never the path, which may hold a webhook's token):
the fix is to give the URL the receiver expects.
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from hushflow.flow.connection import workload_of
from hushflow.sinks.records import VerdictRecord


class EventSink(Protocol):
    name: str

    def send(self, event: Mapping[str, Any]) -> bool: ...

    def close(self) -> None: ...


class StreamSink:
    name = "stdout"

    def __init__(self, stream: IO[str], name: str = "stdout") -> None:
        self.stream = stream
        self.name = name

    def send(self, event: Mapping[str, Any]) -> bool:
        self.stream.write(json.dumps(event, sort_keys=True) + "\n")
        self.stream.flush()
        return True

    def close(self) -> None:
        self.stream.flush()


class FileSink(StreamSink):
    def __init__(self, path: str) -> None:
        super().__init__(open(path, "a", encoding="utf-8"), "file")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.stream.close()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follows none: every 3xx reaches `send` as an HTTPError (see the module's docstring). It
    declines before urllib's own handler would parse the (hostile) Location."""

    def http_error_302(self, *args: Any, **kwargs: Any) -> None:
        return None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _say_on_stderr(message: str) -> None:
    sys.stderr.write(f"hushflow: {message}\n")


def _origin(url: str) -> str:
    """`scheme://host:port` of `url`, printable: what a report may show of a hostile Location."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "an invalid URL"
    origin = f"{parts.scheme}://" + (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return "".join(c if c.isascii() and c.isprintable() else f"\\x{ord(c):02x}" for c in origin[:200])


class WebhookSink:
    """POST each event as JSON; retries with exponential backoff and jitter on errors and 5xx.
    Follows no redirect: a 3xx is a failure, reported once per place it pointed to."""

    name = "webhook"
    _MAX_REPORTED = 16

    def __init__(
        self,
        url: str,
        *,
        retries: int = 4,
        timeout: float = 5.0,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        report: Callable[[str], None] = _say_on_stderr,
    ) -> None:
        self.url = url
        self.retries = retries
        self.timeout = timeout
        self.base_delay = base_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.report = report
        self.last_error = ""
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._reported: set[tuple[int, str]] = set()

    def send(self, event: Mapping[str, Any]) -> bool:
        body = json.dumps(event, sort_keys=True).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
                    self.last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                exc.close()
                self.last_error = f"HTTP {exc.code}"
                if 300 <= exc.code < 400:
                    self._redirected(exc.code, exc.headers.get("Location") or "")
                    return False
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return False  # the receiver will not take it however often we ask
            except (urllib.error.URLError, OSError) as exc:
                self.last_error = str(getattr(exc, "reason", exc))
            except http.client.HTTPException as exc:  # an answer that is not HTTP: retried like a reset
                self.last_error = f"not an HTTP answer ({type(exc).__name__})"
            if attempt < self.retries:
                self.sleep(self.rng.uniform(0, self.base_delay * 2**attempt))
        return False

    def _redirected(self, code: int, location: str) -> None:
        try:
            target = urllib.parse.urljoin(self.url, location) if location else ""
        except ValueError:
            target = location  # unparseable: shown as "an invalid URL"
        here, there = _origin(self.url), _origin(target) if target else "nowhere (no Location)"
        self.last_error = f"HTTP {code} redirect to {there}"
        key = (code, there)
        if key in self._reported or len(self._reported) >= self._MAX_REPORTED:
            return
        self._reported.add(key)
        where = "another path on the same host" if target and there == here else there
        self.report(
            f"webhook {here}/... answered HTTP {code}, a redirect to {where}: events are not delivered "
            "(hushflow follows no webhook redirect: one could carry them to another host or to plain "
            "http); give the webhook the URL it redirects to"
        )

    def close(self) -> None:
        return None


class BackgroundSink:
    """Sends through `inner` on a thread of its own, so a slow or failing receiver (a webhook
    retrying for seconds) never holds up flow processing. At most `capacity` events wait; past
    that, new events are dropped and counted (`dropped`), never silently lost."""

    def __init__(
        self, inner: EventSink, capacity: int = 1000, on_result: Callable[[str, str], None] | None = None
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.on_result = on_result
        self.dropped = 0
        #: Sends that raised (a bug in a sink), counted as failed; the last one's text.
        self.errors = 0
        self.last_exception = ""
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._work, name=f"hushflow-events-{inner.name}", daemon=True)
        self._thread.start()

    def send(self, event: Mapping[str, Any]) -> bool:
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self.dropped += 1
            if self.on_result is not None:
                self.on_result(self.name, "dropped")
            return False

    @property
    def waiting(self) -> int:
        """Events queued and not yet sent."""
        return self._queue.qsize()

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                delivered = self.inner.send(event)
            except Exception as exc:  # one bad send must not end the thread (and every later event)
                self.errors += 1
                self.last_exception = f"{type(exc).__name__}: {exc}"
                delivered = False
            if self.on_result is not None:
                self.on_result(self.name, "delivered" if delivered else "failed")

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (bounded by `timeout`), then close the receiver."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.inner.close()


def make_sink(
    spec: str,
    on_result: Callable[[str, str], None] | None = None,
    report: Callable[[str], None] = _say_on_stderr,
) -> EventSink:
    """`stdout`, `file:PATH`, or an `http(s)://` URL (sent from a background thread; `report`
    says what a webhook's receiver got wrong, such as a redirect)."""
    if spec == "stdout":
        return StreamSink(sys.stdout)
    if spec.startswith("file:"):
        return FileSink(spec[5:])
    if spec.startswith(("http://", "https://")):
        return BackgroundSink(WebhookSink(spec, report=report), on_result=on_result)
    raise ValueError(f"unknown event sink {spec!r}: use stdout, file:PATH or an http(s):// URL")


@dataclass(slots=True)
class _Window:
    opened: float
    repeats: int = 0


@dataclass(slots=True)
class UnexpectedDropEvents:
    sinks: list[EventSink]
    window: float = 300.0
    max_keys: int = 50_000
    on_emit: Callable[[str, bool], None] | None = None  # (sink name, delivered) for synchronous sinks
    _windows: dict[tuple[str, str, int, str], _Window] = field(default_factory=dict)
    sent: int = 0
    suppressed: int = 0

    def offer(self, record: VerdictRecord, explain: str = "") -> bool:
        """Consider one unexpected drop; True when an event went out."""
        flow, now, conn, tags = record.flow, record.time, record.connection, record.tags
        destination = record.destination
        source = flow.get("source") or {}
        key = (f"{source.get('namespace', '')}/{workload_of(source)}", destination, conn.port, ",".join(tags))
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.window:
            window.repeats += 1
            self.suppressed += 1
            return False
        repeats = window.repeats if window is not None else 0
        if len(self._windows) >= self.max_keys:
            self._windows = {k: w for k, w in self._windows.items() if now - w.opened < self.window}
        self._windows[key] = _Window(now)
        event = {
            "kind": "unexpected-drop",
            "time": flow.get("time", ""),
            "direction": conn.direction,
            "source": {
                "namespace": source.get("namespace", ""),
                "workload": workload_of(source),
                "pod": source.get("pod_name", ""),
            },
            "destination": destination,
            "destination_ip": conn.peer_ip if conn.direction == "egress" else conn.local_ip,
            "port": conn.port,
            "protocol": conn.protocol,
            "verdict": flow.get("verdict", ""),
            "drop_reason": flow.get("drop_reason_desc", ""),
            "tag": list(tags),
            "repeats_since_last": repeats,
            "explain": explain,
            "flow": flow,
        }
        for sink in self.sinks:
            delivered = sink.send(event)
            if self.on_emit is not None and not isinstance(sink, BackgroundSink):
                self.on_emit(sink.name, delivered)  # a background sink reports when it is done
        self.sent += 1
        return True

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
