"""A test double of Hubble's Observer service: a real gRPC server streaming recorded events.

Hubble cannot run where hushflow's tests run, so this module serves ``observer.Observer`` —
``GetFlows`` and ``ServerStatus``, over real gRPC (HTTP/2) on 127.0.0.1 or a unix socket, with
optional TLS or mutual TLS — from a list of recorded ``hubble observe -o jsonpb`` lines, so that
:mod:`hushflow.flow.grpc_source` is exercised through ``grpcio`` exactly as against Hubble Relay.

What it mirrors from Hubble's server (``pkg/hubble/observer/local_observer.go``):

- ``follow``: without ``number`` and ``since`` the stream starts at the end (only events added
  after the request); otherwise it sends the recorded part, then waits for :meth:`add_events`.
- ``since``: flows older than ``since`` are skipped (``since`` itself included); lost events are
  never filtered by time; the reading starts after the last flow older than ``since``.
- ``number``: the last N flows (``first``: the first N); ``first`` with ``follow`` is
  INVALID_ARGUMENT.
- ``field_mask``: paths relative to ``flow.Flow``, validated (INVALID_ARGUMENT), applied to each
  flow the way Hubble's ``fieldmask`` package does it (a nested path such as ``source.namespace``
  makes ``source`` present even when the flow has none); the response's ``node_name``/``time``
  are taken from the masked flow, as Hubble does.

What it does not do: evaluate the allow/deny lists (they are recorded, not applied), ring buffer
capacity and the lost events it causes, Relay's multi-node merging. Node status and lost events
are recorded lines like any other.

Controls for tests: :attr:`requests` (every ``GetFlowsRequest`` received), :attr:`send_delay`
(a slow server), :meth:`cut_streams_after` (abort the next streams with UNAVAILABLE after N
events), :meth:`end_streams` (end open streams, normally or with a status),
:meth:`wait_for_streams`.

    with ObserverTestServer(lines) as server:
        source = GrpcFlowSource(server.address, follow=False)
        events = list(source)
        assert server.requests[0].whitelist[0].event_type[0].type == 129
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from hushflow.flow.field_mask import field_mask_tree, masked_response
from hushflow.proto import flow_pb2, observer_pb2, observer_pb2_grpc

__all__ = ["EventInput", "ObserverTestServer", "ServerTLS"]

#: A recorded event: a jsonpb line (bytes or str), its parsed dict, or the message itself.
EventInput = bytes | str | Mapping[str, Any] | observer_pb2.GetFlowsResponse


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """PEM data for a TLS server; ``client_ca`` set = mutual TLS (a client certificate required)."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Recorded:
    message: observer_pb2.GetFlowsResponse
    is_flow: bool
    time: tuple[int, int]  # (seconds, nanos) of the event, for `since`


class ObserverTestServer:
    """See the module documentation. Start with :meth:`start` or ``with``; stop with :meth:`stop`.

    ``address``: ``"127.0.0.1:0"`` (a free port is chosen), ``"unix:///path"`` or any address
    gRPC binds. After start, :attr:`address` is what a client dials (``host:port`` or
    ``unix:///path``).
    """

    def __init__(
        self,
        events: Iterable[EventInput] = (),
        *,
        address: str = "127.0.0.1:0",
        tls: ServerTLS | None = None,
        max_workers: int = 16,
        version: str = "hushflow-observer-test-double",
    ) -> None:
        self._bind = address
        self._tls = tls
        self._max_workers = max_workers
        self._version = version
        self._cond = threading.Condition()
        self._events: list[_Recorded] = []
        self._requests: list[observer_pb2.GetFlowsRequest] = []
        self._cuts: deque[int] = deque()
        self._generation = 0  # bumped by end_streams: open streams end
        self._end_code: grpc.StatusCode | None = None
        self._end_details = ""
        self._open_streams = 0
        self._streams_started = 0
        self._stopping = False
        self._server: grpc.Server | None = None
        self._started_at = time.monotonic()
        self.address = address
        #: Seconds to sleep between two sends (a slow server). May be changed at any time.
        self.send_delay = 0.0
        self._sent_by_stream: dict[int, int] = {}
        self.add_events(events)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> ObserverTestServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        observer_pb2_grpc.add_ObserverServicer_to_server(_Servicer(self), server)
        if self._tls is None:
            port = server.add_insecure_port(self._bind)
        else:
            creds = grpc.ssl_server_credentials(
                [(self._tls.private_key, self._tls.certificate_chain)],
                root_certificates=self._tls.client_ca,
                require_client_auth=self._tls.client_ca is not None,
            )
            port = server.add_secure_port(self._bind, creds)
        if self._bind.startswith("unix:"):
            path = self._bind.removeprefix("unix:").removeprefix("//")
            self.address = f"unix://{Path(path).resolve()}"
        else:
            if port == 0:
                raise OSError(f"cannot bind {self._bind}")
            host = self._bind.rsplit(":", 1)[0]
            self.address = f"{host}:{port}"
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self) -> ObserverTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls ------------------------------------------------------------------------------------

    def add_events(self, events: Iterable[EventInput]) -> None:
        """Record more events; streams that follow receive them."""
        recorded = [_record(e) for e in events]
        with self._cond:
            self._events.extend(recorded)
            self._cond.notify_all()

    @property
    def requests(self) -> list[observer_pb2.GetFlowsRequest]:
        """Every GetFlows request received, in order (copies)."""
        with self._cond:
            return list(self._requests)

    @property
    def sent(self) -> int:
        """Events sent, over all streams."""
        return sum(self._sent_by_stream.copy().values())

    @property
    def open_streams(self) -> int:
        with self._cond:
            return self._open_streams

    def cut_streams_after(self, *counts: int) -> None:
        """The next ``len(counts)`` GetFlows calls are each aborted with UNAVAILABLE after sending
        that many events (0: before the first), as when Relay or the network goes away."""
        with self._cond:
            self._cuts.extend(counts)

    def end_streams(self, code: grpc.StatusCode | None = None, details: str = "ended by the test") -> None:
        """End the streams open now: normally (``code=None``) or with ``code``."""
        with self._cond:
            self._generation += 1
            self._end_code = code
            self._end_details = details
            self._cond.notify_all()

    def wait_for_streams(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` GetFlows calls (in total) have started streaming."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._streams_started < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._streams_started} of {count} GetFlows streams started")
                self._cond.wait(left)

    # -- the service ---------------------------------------------------------------------------------

    def _get_flows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetFlowsResponse]:
        copy = observer_pb2.GetFlowsRequest()
        copy.CopyFrom(request)
        with self._cond:
            self._requests.append(copy)
            cut = self._cuts.popleft() if self._cuts else None
        if request.first and request.follow:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first cannot be specified with follow")
        mask = None
        if request.HasField("field_mask") and request.field_mask.paths:
            try:
                mask = field_mask_tree(flow_pb2.Flow.DESCRIPTOR, request.field_mask.paths)
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid fieldmask")
        since = (request.since.seconds, request.since.nanos) if request.HasField("since") else None
        # A call that ends (cancelled by the client, or the server stopping) wakes its stream.
        context.add_callback(self._wake)
        with self._cond:
            index, limit = self._start(request, since)
            generation = self._generation
            self._open_streams += 1
            self._streams_started += 1
            stream_id = self._streams_started
            self._cond.notify_all()
        sent_here = 0
        flows_here = 0
        batch: list[_Recorded] = []
        try:
            while True:
                if generation != self._generation:
                    batch.clear()  # end_streams(): handled below, under the lock
                if not batch:
                    with self._cond:
                        while (index >= len(self._events) and request.follow and not self._stopping
                               and generation == self._generation and context.is_active()):
                            self._cond.wait(0.5)
                        if self._stopping or not context.is_active():
                            return
                        if generation != self._generation:
                            if self._end_code is not None:
                                context.abort(self._end_code, self._end_details)
                            return
                        if index >= len(self._events):
                            return  # not following: the recorded part is sent
                        # A batch at a time, so the lock is not taken per event.
                        batch = self._events[index : index + 256]
                        batch.reverse()
                        index += len(batch)
                event = batch.pop()
                if event.is_flow:
                    if since is not None and event.time < since:
                        continue
                    if limit is not None and flows_here >= limit:
                        if request.follow:
                            continue
                        return
                    flows_here += 1
                if cut is not None and sent_here >= cut:
                    context.abort(grpc.StatusCode.UNAVAILABLE, f"stream cut by the test after {cut} events")
                if self.send_delay and sent_here:
                    time.sleep(self.send_delay)
                message = event.message
                if mask is not None and event.is_flow:
                    message = masked_response(message, mask)
                yield message
                sent_here += 1
                self._sent_by_stream[stream_id] = sent_here
        finally:
            with self._cond:
                self._open_streams -= 1
                self._cond.notify_all()

    def _start(self, request: observer_pb2.GetFlowsRequest, since: tuple[int, int] | None) -> tuple[int, int | None]:
        """Index of the first event to consider, and how many flows at most (first N)."""
        events = self._events
        if since is not None:
            # Hubble rewinds to the last flow older than `since` and reads on from there.
            for i in range(len(events) - 1, -1, -1):
                if events[i].is_flow and events[i].time < since:
                    return i + 1, None
            return 0, None
        number = request.number
        if request.first:
            return 0, number or None
        if number == 0:
            return (len(events) if request.follow else 0), None
        count = 0
        for i in range(len(events) - 1, -1, -1):
            if events[i].is_flow:
                count += 1
                if count == number:
                    return i, None
        return 0, None

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _server_status(self) -> observer_pb2.ServerStatusResponse:
        with self._cond:
            flows = sum(1 for e in self._events if e.is_flow)
        return observer_pb2.ServerStatusResponse(
            num_flows=flows, max_flows=max(flows, 4095), seen_flows=flows,
            uptime_ns=int((time.monotonic() - self._started_at) * 1e9), version=self._version,
            num_connected_nodes={"value": 1}, num_unavailable_nodes={"value": 0},
        )


class _Servicer(observer_pb2_grpc.ObserverServicer):
    def __init__(self, owner: ObserverTestServer) -> None:
        self._owner = owner

    def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetFlowsResponse]:
        return self._owner._get_flows(request, context)

    def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        return self._owner._server_status()


# -- events --------------------------------------------------------------------------------------------


def _record(event: EventInput) -> _Recorded:
    if isinstance(event, observer_pb2.GetFlowsResponse):
        message = event
    elif isinstance(event, bytes | str):
        message = json_format.Parse(event, observer_pb2.GetFlowsResponse())
    else:
        message = json_format.ParseDict(event, observer_pb2.GetFlowsResponse())
    kind = message.WhichOneof("response_types")
    stamp = message.time if message.HasField("time") else message.flow.time
    return _Recorded(message, kind == "flow", (stamp.seconds, stamp.nanos))
