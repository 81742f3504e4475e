"""The daemon's HTTP port: Prometheus metrics, liveness and readiness (9965 by default).

- ``/metrics``: the registry, brought up to the last flow processed first;
- ``/healthz``: fails (503) once the pipeline has held one flow, or the main loop has not run
  its periodic round, for `STUCK_AFTER` seconds — a stuck process Kubernetes should restart;
- ``/readyz``: ready once set up and while the flow source is connected.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hushflow.flow.sources import FlowSource
from hushflow.sinks import metric_names

#: /healthz fails when one flow (or one periodic round) has been in hand this long.
STUCK_AFTER = 60.0


class Probed(Protocol):
    """What the probes read of a running daemon."""

    registry: CollectorRegistry
    ready: threading.Event
    stopping: threading.Event
    source: FlowSource

    def flush_metrics(self) -> None: ...

    def stuck_for(self) -> float: ...


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        daemon: Probed = self.server.daemon  # type: ignore[attr-defined]
        if self.path.startswith(metric_names.METRICS_PATH):
            daemon.flush_metrics()
            body = generate_latest(daemon.registry)
            self._reply(200, body, CONTENT_TYPE_LATEST)
        elif self.path.startswith(metric_names.LIVENESS_PATH):
            alive = daemon.stuck_for() < STUCK_AFTER or daemon.stopping.is_set()
            self._reply(200 if alive else 503, b"ok\n" if alive else b"processing is stuck\n")
        elif self.path.startswith(metric_names.READINESS_PATH):
            ready = daemon.ready.is_set() and daemon.source.connected() and not daemon.stopping.is_set()
            self._reply(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_http(daemon: Probed, address: str) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz; `address` is HOST:PORT (port 0 picks a free one)."""
    host, _, port = address.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _Handler)
    server.daemon = daemon  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="hushflow-http", daemon=True).start()
    return server
