"""The probes and metrics port at its network edge: IPv6 and dual-stack listening, clear errors for
a bad --metrics-address, and a bounded number of connections with a deadline for each request."""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Counter

from hushflow.app import http
from hushflow.app.http import ListenAddress, parse_listen_address, serve_http
from hushflow.cli.run import run
from hushflow.sinks.metric_names import METRICS_PORT


class _Connected:
    def connected(self) -> bool:
        return True


class FakeDaemon:
    """What the probes read of a daemon, and nothing else."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        Counter("hushflow_probe_test", "a series the scrape must see", registry=self.registry).inc()
        self.ready = threading.Event()
        self.ready.set()
        self.stopping = threading.Event()
        self.source = _Connected()

    def flush_metrics(self) -> None:
        return None

    def stuck_for(self) -> float:
        return 0.0


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


@contextlib.contextmanager
def serving(address: str, **limits: float) -> Iterator[http.ProbeServer]:
    server = serve_http(FakeDaemon(), address, **limits)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def scrape(host: str, port: int) -> None:
    """/metrics and /healthz answer a client of `host`'s family."""
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    status, body = get(base + "/metrics")
    assert status == 200 and "hushflow_probe_test_total 1.0" in body
    assert get(base + "/healthz") == (200, "ok\n")


# -- the address -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[::]:9965", ListenAddress("::", 9965), id="ipv6-any"),
        pytest.param("[2001:db8::1]:8080", ListenAddress("2001:db8::1", 8080), id="ipv6-literal"),
        pytest.param("[::1]:0", ListenAddress("::1", 0), id="ipv6-loopback-any-port"),
        pytest.param("0.0.0.0:9965", ListenAddress("0.0.0.0", 9965), id="ipv4-any"),
        pytest.param("127.0.0.1:65535", ListenAddress("127.0.0.1", 65535), id="ipv4-top-port"),
        pytest.param(":9965", ListenAddress("", 9965), id="port-only-is-every-interface"),
        pytest.param("localhost:9965", ListenAddress("localhost", 9965), id="host-name"),
        pytest.param("metrics.example.com:1", ListenAddress("metrics.example.com", 1), id="dotted-name"),
    ],
)
def test_listen_addresses_that_parse(text: str, expected: ListenAddress) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[::]:99999", "port", id="port-too-big"),
        pytest.param("0.0.0.0:-1", "port", id="negative-port"),
        pytest.param("0.0.0.0:http", "port", id="port-not-a-number"),
        pytest.param("0.0.0.0:", "port", id="no-port"),
        pytest.param("9965", "HOST:PORT", id="no-colon"),
        pytest.param("::1:9965", "brackets", id="unbracketed-ipv6"),
        pytest.param("[::1:9965", "closing bracket", id="unclosed-bracket"),
        pytest.param("[::1]9965", "HOST:PORT", id="nothing-between-bracket-and-port"),
        pytest.param("[10.0.0.1]:9965", "IPv6", id="ipv4-in-brackets"),
        pytest.param("[fe80::zz]:9965", "IPv6", id="bad-ipv6"),
        pytest.param("300.1.1.1:9965", "address", id="bad-ipv4"),
        pytest.param("bad host:9965", "address", id="space-in-name"),
        pytest.param("x\x1b[31m:9965", "address", id="terminal-escape"),
        pytest.param("", "HOST:PORT", id="empty"),
    ],
)
def test_listen_addresses_that_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_listen_address(text)
    assert "\x1b" not in str(refused.value)


@pytest.mark.parametrize(
    ("value", "said"),
    [("[::1]:99999", "port"), ("::1:9965", "brackets"), ("nonsense", "HOST:PORT")],
)
def test_run_refuses_a_bad_metrics_address_with_a_message_naming_the_option(value: str, said: str) -> None:
    result = CliRunner().invoke(run, ["--metrics-address", value])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "--metrics-address" in result.output and said in result.output
    assert "Traceback" not in result.output


def test_run_listens_on_every_ipv6_and_ipv4_address_by_default() -> None:
    context = run.make_context("hushflow run", [])
    assert context.params["metrics_address"] == f"[::]:{METRICS_PORT}"


def test_an_address_the_host_does_not_have_is_an_os_error_not_a_traceback() -> None:
    # 2001:db8::/32 is the documentation range: no interface here holds it.
    with pytest.raises(OSError) as refused:
        serve_http(FakeDaemon(), "[2001:db8::1]:0")  # type: ignore[arg-type]
    assert refused.value.errno == errno.EADDRNOTAVAIL


# -- IPv6 and dual-stack ------------------------------------------------------------------------------


def test_ipv6_loopback_serves_metrics_and_health() -> None:
    with serving("[::1]:0") as server:
        assert server.socket.family == socket.AF_INET6
        scrape("::1", server.server_address[1])


def test_ipv6_any_is_dual_stack_ipv4_and_ipv6_clients_both_reach_it() -> None:
    with serving("[::]:0") as server:
        assert server.socket.family == socket.AF_INET6
        assert server.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        port = server.server_address[1]
        scrape("127.0.0.1", port)
        scrape("::1", port)
        assert server.url == f"http://[::]:{port}"


def test_port_only_listens_dual_stack_too() -> None:
    with serving(":0") as server:
        port = server.server_address[1]
        scrape("127.0.0.1", port)
        scrape("::1", port)


def test_ipv4_any_stays_ipv4() -> None:
    with serving("0.0.0.0:0") as server:
        assert server.socket.family == socket.AF_INET
        scrape("127.0.0.1", server.server_address[1])
        assert server.url == f"http://0.0.0.0:{server.server_address[1]}"


def test_a_host_without_ipv6_falls_back_to_ipv4_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    bind = http.ProbeServer.server_bind

    def no_ipv6(self: http.ProbeServer) -> None:
        if self.address_family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        bind(self)

    monkeypatch.setattr(http.ProbeServer, "server_bind", no_ipv6)
    said: list[str] = []
    server = serve_http(FakeDaemon(), "[::]:0", say=said.append)  # type: ignore[arg-type]
    try:
        assert server.socket.family == socket.AF_INET
        scrape("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert len(said) == 1 and "IPv6" in said[0] and "0.0.0.0" in said[0]


# -- connections are bounded ---------------------------------------------------------------------------


def connection_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == http.CONNECTION_THREAD_NAME)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (EOF or a reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_idle_connections_are_bounded_and_a_scrape_still_gets_through() -> None:
    limit = 4
    before = connection_threads()
    with serving("127.0.0.1:0", max_connections=limit, request_timeout=60.0) as server:
        port = server.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(limit + 10)]
        try:
            for sock in idle:
                sock.sendall(b"GET /metr")  # a request that never ends
            # The server makes room by closing the oldest idle connections, never more threads.
            wait_until(lambda: sum(closed_by_peer(sock) for sock in idle) >= 10, timeout=20)
            assert connection_threads() - before <= limit
            scrape("127.0.0.1", port)  # the idle ones do not lock the scraper out
            assert connection_threads() - before <= limit
            assert server.evicted >= 10
        finally:
            for sock in idle:
                sock.close()


def test_a_client_that_trickles_its_request_is_cut_off_at_the_deadline() -> None:
    with serving("127.0.0.1:0", request_timeout=0.2) as server:
        slow = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        trickle = b"GET /metrics HTTP/1.0\r\n" + b"X-Slow: y\r\n" * 1000
        closed = False
        try:
            # One byte every 20 ms: far more often than the timeout, so only a deadline for the
            # whole request (not a timeout per read) ends it. Generous bound: 30 s.
            for byte in trickle[:1500]:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if closed_by_peer(slow):
                    closed = True
                    break
                time.sleep(0.02)
        finally:
            slow.close()
        assert closed, "the slow client was never disconnected"
        scrape("127.0.0.1", server.server_address[1])
