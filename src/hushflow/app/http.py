"""The daemon's HTTP port: Prometheus metrics, liveness and readiness (9965 by default).

- ``/metrics``: the registry, brought up to the last flow processed first;
- ``/healthz``: fails (503) once the pipeline has held one flow, or the main loop has not run
  its periodic round, for `STUCK_AFTER` seconds — a stuck process Kubernetes should restart;
- ``/readyz``: ready once set up and while the flow source is connected.

The port faces the network, so its edges are bounded:

- **Where it listens.** ``[::]:PORT`` (the default) and ``:PORT`` listen on every IPv6 and IPv4
  address (one dual-stack socket, ``IPV6_V6ONLY`` off), so the kubelet's probes and Prometheus
  reach the pod on an IPv4, IPv6-only or dual-stack cluster; a host without IPv6 falls back to
  ``0.0.0.0`` and says so. ``0.0.0.0:PORT`` is IPv4 only; ``[2001:db8::1]:PORT`` and
  ``host:PORT`` one address.
- **How many connections.** At most `MAX_CONNECTIONS` are served at once, each on one of as many
  worker threads (never a thread per socket). When all are taken, the connection that has waited
  longest without sending its whole request is closed to make room: idle sockets cannot lock
  the scraper or the probes out. When every slot is answering a request, new connections wait
  in the listen backlog.
- **How long one request may take.** Reading the request (at most `MAX_REQUEST_BYTES`) has one
  deadline, `REQUEST_TIMEOUT` after the connection was taken, however slowly the bytes come (a
  client trickling a byte a second is cut off); writing the answer has another.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import itertools
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import TCPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hushflow.flow.sources import FlowSource
from hushflow.sinks import metric_names

#: /healthz fails when one flow (or one periodic round) has been in hand this long.
STUCK_AFTER = 60.0
#: Connections served at once (Prometheus, the kubelet's three probes, a curl: a handful).
MAX_CONNECTIONS = 64
#: Seconds to read one request, and again to write its answer.
REQUEST_TIMEOUT = 10.0
#: A scrape or probe request is a few hundred bytes; more is not one of ours.
MAX_REQUEST_BYTES = 32 * 1024
#: The name of the threads that serve connections (at most `MAX_CONNECTIONS` of them).
CONNECTION_THREAD_NAME = "hushflow-http-connection"

# A host name as resolvers take it: dot-separated labels of letters, digits and hyphens.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
# The errors of a host that has no IPv6 at all (a kernel booted with ipv6.disable=1).
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL})


class Probed(Protocol):
    """What the probes read of a running daemon."""

    registry: CollectorRegistry
    ready: threading.Event
    stopping: threading.Event
    source: FlowSource

    def flush_metrics(self) -> None: ...

    def stuck_for(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the port listens: `host` is an IP address, a host name, or "" for every address."""

    host: str
    port: int

    @property
    def every_address(self) -> bool:
        """`[::]` or no host: every IPv6 and IPv4 address (`0.0.0.0` is every IPv4 one only)."""
        return self.host in ("", "::")


def _shown(text: str) -> str:
    """`text` quoted for a message: control characters escaped, never reaching a terminal raw."""
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def parse_listen_address(text: str) -> ListenAddress:
    """`[IPV6]:PORT`, `IPV4:PORT`, `HOST:PORT` or `:PORT`; ValueError says what is wrong."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"{_shown(text)}: an IPv6 address needs its closing bracket, as in [::1]:9965")
        if not rest.startswith(":"):
            raise ValueError(f"{_shown(text)}: expected [IPV6]:PORT or HOST:PORT, e.g. [::]:9965")
        port_text = rest[1:]
        try:
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise ValueError(f"{_shown(text)}: {_shown(inside)} in brackets is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"{_shown(text)}: expected HOST:PORT, e.g. [::]:9965, 0.0.0.0:9965 or :9965")
        if ":" in host:
            raise ValueError(f"{_shown(text)}: an IPv6 address goes in brackets, as in [{host}]:{port_text}")
        if host and not _is_ipv4(host) and not _is_host_name(host):
            raise ValueError(f"{_shown(text)}: {_shown(host)} is not an IP address or a host name")
    if not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise ValueError(f"{_shown(text)}: the port must be a number from 0 to 65535, not {_shown(port_text)}")
    return ListenAddress(host, int(port_text))


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _is_host_name(host: str) -> bool:
    # A name whose last label is all digits is a mistyped IPv4 address (300.1.1.1), not a name.
    last_label = host.rstrip(".").rsplit(".", 1)[-1]
    return len(host) <= 253 and _HOST_NAME.fullmatch(host) is not None and not last_label.isdigit()


class _RequestReader(io.RawIOBase):
    """The connection's bytes, with one deadline for the whole request and a cap on its size:
    a socket timeout alone restarts with every byte, so a trickling client would never end."""

    def __init__(self, connection: socket.socket, timeout: float, limit: int) -> None:
        self.connection = connection
        self.deadline = time.monotonic() + timeout
        self.left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not read in time")
        if self.left <= 0:
            return 0  # past the size cap: read as the end of the request
        self.connection.settimeout(remaining)
        view = memoryview(buffer)[: self.left]
        count = self.connection.recv_into(view)
        self.left -= count
        return count


class _Handler(BaseHTTPRequestHandler):
    server: ProbeServer

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(
            _RequestReader(self.connection, self.server.request_timeout, self.server.max_request_bytes)
        )

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.server.request_read(self.connection)  # answering now: no longer an idle connection
        return parsed

    def flush_headers(self) -> None:
        # Every answer (ours and the base class's errors) goes out under a fresh write deadline.
        self.connection.settimeout(self.server.request_timeout)
        super().flush_headers()

    def do_GET(self) -> None:
        daemon = self.server.daemon
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


class ProbeServer(HTTPServer):
    """The HTTP server of the probes: bounded workers, idle connections evicted oldest first."""

    request_queue_size = 128  # the listen backlog: where connections wait while every slot answers

    def __init__(
        self,
        family: socket.AddressFamily,
        address: tuple[Any, ...],
        daemon: Probed,
        *,
        dual_stack: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.address_family = family
        self.daemon = daemon
        self.dual_stack = dual_stack
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.max_request_bytes = max_request_bytes
        #: Connections closed to make room, and turned away because no slot freed in time.
        self.evicted = 0
        self.rejected = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._reading: dict[socket.socket, int] = {}  # connections still sending their request
        self._in_hand = 0
        self._workers: list[threading.Thread] = []
        self._connections: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        super().__init__(address, _Handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        if self.dual_stack:
            # Linux's default is dual-stack already (net.ipv6.bindv6only=0), but not everywhere.
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                self.dual_stack = False
        TCPServer.server_bind(self)  # not HTTPServer's: it looks the host's name up in DNS
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    @property
    def url(self) -> str:
        """Where the port is served, as a URL (`http://[::]:9965`)."""
        host = str(self.server_address[0])
        return f"http://[{host}]:{self.server_port}" if ":" in host else f"http://{host}:{self.server_port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._evict_longest_idle()
            if not self._slots.acquire(timeout=self.request_timeout):
                self.rejected += 1  # every slot is answering a request; this one can try again
                self.shutdown_request(request)
                return
        with self._lock:
            self._reading[request] = next(self._order)
            self._in_hand += 1
            if self._in_hand > len(self._workers):
                worker = threading.Thread(target=self._work, name=CONNECTION_THREAD_NAME, daemon=True)
                self._workers.append(worker)
                worker.start()
        self._connections.put((request, client_address))

    def request_read(self, connection: socket.socket) -> None:
        with self._lock:
            self._reading.pop(connection, None)

    def _evict_longest_idle(self) -> None:
        with self._lock:
            if not self._reading:
                return
            victim = min(self._reading, key=self._reading.__getitem__)
            del self._reading[victim]
            self.evicted += 1
        with contextlib.suppress(OSError):
            victim.shutdown(socket.SHUT_RDWR)  # its worker reads the end of the stream and moves on

    def _work(self) -> None:
        while (item := self._connections.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.request_read(request)
                self.shutdown_request(request)
                with self._lock:
                    self._in_hand -= 1
                self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanishes mid-answer is the network, not a bug: no traceback for it.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            for _worker in self._workers:
                self._connections.put(None)
            self._workers.clear()


def _say_on_stderr(message: str) -> None:
    sys.stderr.write(f"hushflow: {message}\n")


def serve_http(
    daemon: Probed,
    address: str,
    *,
    say: Callable[[str], None] = _say_on_stderr,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
) -> ProbeServer:
    """Serve /metrics, /healthz and /readyz on `address` (see `parse_listen_address`; port 0 picks
    a free one) from a thread of its own. ValueError for an address that does not parse, OSError
    when it cannot be served."""
    listen = parse_listen_address(address)
    limits: dict[str, Any] = {"max_connections": max_connections, "request_timeout": request_timeout}
    if listen.every_address:
        try:
            server = ProbeServer(socket.AF_INET6, ("::", listen.port), daemon, dual_stack=True, **limits)
        except OSError as exc:
            if exc.errno not in _NO_IPV6:
                raise
            say(f"this host has no IPv6 ({exc.strerror or exc}): serving metrics and probes on "
                f"0.0.0.0:{listen.port}, IPv4 only")
            server = ProbeServer(socket.AF_INET, ("0.0.0.0", listen.port), daemon, **limits)
        else:
            if not server.dual_stack:
                say(f"this host refuses dual-stack sockets: serving metrics and probes on [::]:{listen.port} "
                    "for IPv6 clients only (pass --metrics-address 0.0.0.0:PORT for IPv4 ones)")
    else:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        server = ProbeServer(family, sockaddr, daemon, **limits)
    threading.Thread(target=server.serve_forever, name="hushflow-http", daemon=True).start()
    return server
