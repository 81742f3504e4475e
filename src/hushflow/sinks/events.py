"""Unexpected drops as JSON events: stdout, a file, or an HTTP webhook with retries.

One event per (source workload, destination, port, tag) per window (flow time): the first drop
opens the window and is sent with its explanation; the repeats inside the window (SYN
retransmits, retries of the same call) are only counted, and the count goes out with the next
event for that key. Events are JSON objects, one per line:

    {"kind": "unexpected-drop", "time": ..., "direction": ..., "source": {"namespace", "workload",
     "pod"}, "destination": ..., "port": ..., "protocol": ..., "verdict": ..., "drop_reason": ...,
     "tag": [...], "repeats_since_last": N, "explain": "<hushflow explain text>", "flow": {...}}
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import urllib.error
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


class WebhookSink:
    """POST each event as JSON; retries with exponential backoff and jitter on errors and 5xx."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        retries: int = 4,
        timeout: float = 5.0,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.retries = retries
        self.timeout = timeout
        self.base_delay = base_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.last_error = ""

    def send(self, event: Mapping[str, Any]) -> bool:
        body = json.dumps(event, sort_keys=True).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
                    self.last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                self.last_error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return False  # the receiver will not take it however often we ask
            except (urllib.error.URLError, OSError) as exc:
                self.last_error = str(getattr(exc, "reason", exc))
            if attempt < self.retries:
                self.sleep(self.rng.uniform(0, self.base_delay * 2**attempt))
        return False

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
            delivered = self.inner.send(event)
            if self.on_result is not None:
                self.on_result(self.name, "delivered" if delivered else "failed")

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (bounded by `timeout`), then close the receiver."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.inner.close()


def make_sink(spec: str, on_result: Callable[[str, str], None] | None = None) -> EventSink:
    """`stdout`, `file:PATH`, or an `http(s)://` URL (sent from a background thread)."""
    import sys

    if spec == "stdout":
        return StreamSink(sys.stdout)
    if spec.startswith("file:"):
        return FileSink(spec[5:])
    if spec.startswith(("http://", "https://")):
        return BackgroundSink(WebhookSink(spec), on_result=on_result)
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
