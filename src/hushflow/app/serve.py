"""`hushflow run --serve ADDRESS`: Hubble's Observer API, served from a ring of enriched events.

The daemon's pipeline only appends each processed flow (its canonical event dict, enriched in
place by the attribution) to an :class:`EventRing`; it never waits for a client. Each GetFlows
call reads the ring from its own cursor in a gRPC worker thread: a client too slow to keep up
finds its next events overwritten and receives one ``lost_events`` (source
HUBBLE_RING_BUFFER) saying how many, as Hubble's ring reader does, for that client only.

Each event is encoded into GetFlowsResponse bytes at most once, however many clients read it
(the bytes are kept beside the dict in the ring slot).

The hubble CLI (1.19.4) checks the standard gRPC health service for ``hubble.server.Observer``
before asking ServerStatus (`hubble status`); both are served, and server reflection too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import json_format

from hushflow.flow.protojson import FLOW_SHAPE_ERRORS
from hushflow.flow.times import parse_timestamp
from hushflow.proto import flow_pb2, observer_pb2, relay_pb2

#: Hubble's --hubble-event-buffer-capacity default.
DEFAULT_CAPACITY = 4095
#: Hubble's health service name for the Observer (pkg/hubble/api/v1 ObserverServiceName).
HEALTH_SERVICE = "hubble.server.Observer"
OBSERVER_SERVICE = "observer.Observer"
#: Following clients notice a cancel or the server's stop within this many seconds.
_POLL_SECONDS = 0.2
#: 2^64-1: `hubble observe --all`.
_ALL = (1 << 64) - 1


class ServeError(Exception):
    """A reason the Observer cannot be served, worded for the user."""


class _Slot:
    """One event of the ring: the dict, its bytes once encoded, its time once a since/until
    request asks (parsed then, not on the pipeline's path: most requests have no window)."""

    __slots__ = ("_time_ns", "data", "encoded")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.encoded: bytes | None = None
        self._time_ns: int | bool | None = False  # False: not parsed yet

    @property
    def time_ns(self) -> int | None:
        """The event's time in ns, None when it has none that parses."""
        cached = self._time_ns
        if cached is False:
            text = self.data.get("time", self.data["flow"].get("time"))
            try:
                seconds, nanos = parse_timestamp(text) if isinstance(text, str) else (None, 0)
            except ValueError:
                seconds = None
            cached = self._time_ns = None if seconds is None else seconds * 1_000_000_000 + nanos
        return cached

    def response_bytes(self) -> bytes | None:
        """The GetFlowsResponse bytes; None for an event of a shape that does not encode (it
        came from hostile input and is skipped for every client)."""
        encoded = self.encoded
        if encoded is None:  # two readers may both encode it once; the result is the same
            try:
                message = json_format.ParseDict(self.data, observer_pb2.GetFlowsResponse(),
                                                ignore_unknown_fields=True)
                encoded = message.SerializeToString()
            except (json_format.ParseError, *FLOW_SHAPE_ERRORS):
                encoded = b"\x00"  # not a valid response: the mark of "does not encode"
            self.encoded = encoded
        return None if encoded == b"\x00" else encoded


class EventRing:
    """The last `capacity` flow events the daemon processed, numbered from 1 in arrival order."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the ring capacity must be at least 1")
        self.capacity = capacity
        self._slots: deque[_Slot] = deque(maxlen=capacity)
        self._seen = 0  # events ever appended; the newest has this number
        self._changed = threading.Condition(threading.Lock())

    def append(self, event: Mapping[str, Any]) -> None:
        """Called by the pipeline for each processed event; only flows are kept."""
        flow = event.get("flow")
        if not isinstance(flow, dict):
            return
        slot = _Slot(dict(event))
        with self._changed:
            self._slots.append(slot)
            self._seen += 1
            self._changed.notify_all()

    def namespaces(self) -> list[tuple[str, str]]:
        """(cluster, namespace) of the flows in the ring, sorted: each endpoint's namespace."""
        with self._changed:
            slots = list(self._slots)
        found: set[tuple[str, str]] = set()
        for slot in slots:
            flow = slot.data["flow"]
            for side in ("source", "destination"):
                endpoint = flow.get(side)
                if isinstance(endpoint, dict):
                    namespace, cluster = endpoint.get("namespace"), endpoint.get("cluster_name", "")
                    if isinstance(namespace, str) and namespace and isinstance(cluster, str):
                        found.add((cluster, namespace))
        return sorted(found)

    @property
    def seen(self) -> int:
        return self._seen

    def __len__(self) -> int:
        return len(self._slots)

    def read_from(self, number: int) -> tuple[int, list[_Slot], int]:
        """(events lost before `number`, the events from `number` on, the next number to read)."""
        with self._changed:
            first = self._seen - len(self._slots) + 1  # the oldest event's number
            lost = max(0, first - number)
            start = max(number, first) - first
            slots = list(self._slots)[start:] if start else list(self._slots)
            return lost, slots, self._seen + 1

    def wait_beyond(self, seen: int, timeout: float) -> None:
        """Wait until an event numbered above `seen` exists, or `timeout` seconds."""
        with self._changed:
            if self._seen <= seen:
                self._changed.wait(timeout)


def _identity(data: bytes) -> bytes:
    return data


def _lost_event_bytes(count: int, node_name: str) -> bytes:
    message = observer_pb2.GetFlowsResponse(node_name=node_name)
    message.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    message.lost_events.num_events_lost = count
    message.time.GetCurrentTime()
    return message.SerializeToString()


class ObserverService:
    """The Observer methods over one ring. Methods not served answer UNIMPLEMENTED (gRPC's own
    answer for a method no handler knows): GetAgentEvents, GetDebugEvents."""

    def __init__(self, ring: EventRing, *, node_name: str = "hushflow", version: str = "",
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ring = ring
        self.node_name = node_name
        self.version = version
        self.address = ""  # where it listens, once bound
        self.lost_to_clients = 0  # events readers fell too far behind to get (all clients together)
        self._count_lock = threading.Lock()
        self._monotonic = monotonic
        self._started = monotonic()
        self.stopping = threading.Event()

    # -- GetFlows ----------------------------------------------------------------------------

    def get_flows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        from hushflow.filter import FilterError, compile_filters

        allow = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.whitelist]
        deny = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.blacklist]
        try:
            matches = compile_filters(allow, deny).matches if allow or deny else None
        except FilterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        since = _ns(request.since) if request.HasField("since") else None
        until = _ns(request.until) if request.HasField("until") else None

        def wanted(slot: _Slot) -> bool:
            if since is not None or until is not None:
                at = slot.time_ns
                if at is None:
                    return False
                if since is not None and at < since:
                    return False
                if until is not None and at > until:
                    return False
            if matches is None:
                return True
            try:
                return bool(matches(slot.data))
            except FLOW_SHAPE_ERRORS:  # an odd event (hostile input) matches no filter
                return False

        _lost, slots, cursor = self.ring.read_from(1)
        history = [slot for slot in slots if wanted(slot)]
        number = request.number
        if number == 0 and since is None and until is None:
            history = []  # Hubble: no number and no time range: nothing of the past
        elif number and number != _ALL:
            history = history[:number] if request.first else history[-number:]
        for slot in history:
            if not context.is_active():
                return
            encoded = slot.response_bytes()
            if encoded is not None:
                yield encoded
        if not request.follow or request.first:
            return
        while context.is_active() and not self.stopping.is_set():
            lost, slots, cursor_after = self.ring.read_from(cursor)
            if lost:
                with self._count_lock:
                    self.lost_to_clients += lost
                yield _lost_event_bytes(lost, self.node_name)
            for slot in slots:
                if until is not None and slot.time_ns is not None and slot.time_ns > until:
                    return
                if wanted(slot):
                    encoded = slot.response_bytes()
                    if encoded is not None:
                        yield encoded
            cursor = cursor_after
            self.ring.wait_beyond(cursor - 1, _POLL_SECONDS)

    # -- status --------------------------------------------------------------------------------

    def server_status(self, _request: Any, _context: grpc.ServicerContext) -> observer_pb2.ServerStatusResponse:
        response = observer_pb2.ServerStatusResponse(
            num_flows=len(self.ring), max_flows=self.ring.capacity, seen_flows=self.ring.seen,
            uptime_ns=int((self._monotonic() - self._started) * 1e9), version=self.version,
        )
        response.num_connected_nodes.value = 1
        response.num_unavailable_nodes.value = 0
        return response

    def get_nodes(self, _request: Any, _context: grpc.ServicerContext) -> observer_pb2.GetNodesResponse:
        """One node: this hushflow (a Relay lists each node it connects to)."""
        node = observer_pb2.Node(
            name=self.node_name, version=self.version, address=self.address, state=relay_pb2.NODE_CONNECTED,
            uptime_ns=int((self._monotonic() - self._started) * 1e9),
            num_flows=len(self.ring), max_flows=self.ring.capacity, seen_flows=self.ring.seen,
        )
        return observer_pb2.GetNodesResponse(nodes=[node])

    def get_namespaces(self, _request: Any, _context: grpc.ServicerContext) -> observer_pb2.GetNamespacesResponse:
        """The namespaces of the flows in the ring (Hubble: of its flows of the last hour)."""
        namespaces = self.ring.namespaces()
        return observer_pb2.GetNamespacesResponse(namespaces=[
            observer_pb2.Namespace(cluster=cluster, namespace=namespace) for cluster, namespace in namespaces])

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(OBSERVER_SERVICE, {
            "GetFlows": grpc.unary_stream_rpc_method_handler(
                self.get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString,
                response_serializer=_identity),
            "GetNodes": grpc.unary_unary_rpc_method_handler(
                self.get_nodes, request_deserializer=observer_pb2.GetNodesRequest.FromString,
                response_serializer=observer_pb2.GetNodesResponse.SerializeToString),
            "GetNamespaces": grpc.unary_unary_rpc_method_handler(
                self.get_namespaces, request_deserializer=observer_pb2.GetNamespacesRequest.FromString,
                response_serializer=observer_pb2.GetNamespacesResponse.SerializeToString),
            "ServerStatus": grpc.unary_unary_rpc_method_handler(
                self.server_status, request_deserializer=observer_pb2.ServerStatusRequest.FromString,
                response_serializer=observer_pb2.ServerStatusResponse.SerializeToString),
        })


def _ns(timestamp: Any) -> int:
    return int(timestamp.seconds) * 1_000_000_000 + int(timestamp.nanos)


class ObserverServer:
    """A started gRPC server for one ObserverService; `stop()` ends it (and following streams)."""

    def __init__(self, server: grpc.Server, service: ObserverService, address: str, port: int) -> None:
        self.server = server
        self.service = service
        self.address = address
        self.port = port

    def stop(self, grace: float | None = 1.0) -> None:
        self.service.stopping.set()
        self.server.stop(grace).wait()


def parse_serve_address(text: str) -> str:
    """The gRPC listen address of `host:port`, `[v6]:port`, `:port` or `unix:///path`. Raises ServeError."""
    if text.startswith("unix://"):
        if not text[len("unix://"):]:
            raise ServeError(f"--serve {text!r}: a unix socket needs a path (unix:///run/hushflow.sock)")
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ServeError(f"--serve {text!r}: give HOST:PORT (e.g. [::]:4245, 127.0.0.1:4245) or unix:///PATH")
    if host.startswith("[") != host.endswith("]"):
        raise ServeError(f"--serve {text!r}: an IPv6 host goes in brackets ([::1]:4245)")
    return f"{host or '[::]'}:{port}"


def serve_observer(ring: EventRing, address: str, *, node_name: str = "hushflow", version: str = "",
                   max_workers: int = 16) -> ObserverServer:
    """Start serving Observer, health and reflection on `address`. Raises ServeError when the
    address is malformed or cannot be bound (in use, no permission)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    target = parse_serve_address(address)
    service = ObserverService(ring, node_name=node_name, version=version)
    # Each following client holds a worker thread; past the limit new calls get RESOURCE_EXHAUSTED.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hushflow-serve"),
                         maximum_concurrent_rpcs=max_workers - 2, options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((service.handler(),))
    health_servicer = health.HealthServicer()
    health_servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (OBSERVER_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(target)
    except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
        raise ServeError(f"cannot serve the Observer API on {address}: {exc}") from None
    if port == 0 and not target.startswith("unix:"):
        raise ServeError(f"cannot serve the Observer API on {address}: the address is in use or not available")
    service.address = address
    server.start()
    return ObserverServer(server, service, address, port)
