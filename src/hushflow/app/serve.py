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
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import json_format

from hushflow.flow.field_mask import field_mask_tree, masked_response
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS
from hushflow.flow.response_encoding import encode_response
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
#: A following call reads the ring at most this often (the latency it adds to a flow).
_BATCH_SECONDS = 0.01
#: A call adds to the flows-sent count every this many flows (and when it ends).
_SENT_BATCH = 256
#: Distinct field masks whose bytes a slot keeps.
_MASKS_CACHED = 4
#: The hubble CLI's default field mask up to 1.19 (hubble/pkg/defaults FieldMask).
HUBBLE_CLI_1_19_DEFAULT_MASK = frozenset((
    "time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace",
    "source.pod_name", "destination.identity", "destination.namespace", "destination.pod_name",
    "Type", "node_name", "l7", "event_type", "source_service", "destination_service", "is_reply",
    "Summary", "ip_trace_id",
))
#: What cilium#46672 added to that default so the printer sees policy verdicts whole.
HUBBLE_CLI_DEFAULT_MASK_FIX = ("traffic_direction", "policy_match_type", "ingress_allowed_by",
                               "ingress_denied_by", "egress_allowed_by", "egress_denied_by")
#: ServerStatus.flows_rate: flows per second over the last minute (Hubble's getFlowRate).
_RATE_WINDOW = 60.0

FieldMaskKey = tuple[str, ...]


class ServeError(Exception):
    """A reason the Observer cannot be served, worded for the user."""


class _Slot:
    """One event of the ring: the dict, its bytes once encoded, its time once a since/until
    request asks (parsed then, not on the pipeline's path: most requests have no window)."""

    __slots__ = ("_time_ns", "arrived", "data", "encoded", "masked", "wire")

    def __init__(self, data: dict[str, Any], arrived: float = 0.0, wire: bytes | None = None) -> None:
        self.data = data
        self.arrived = arrived  # monotonic seconds when the pipeline appended it (flows_rate)
        self.wire = wire  # the bytes the gRPC source received for it (before enrichment), if any
        self.encoded: bytes | None = None
        self.masked: dict[FieldMaskKey, bytes] | None = None  # bytes under each field mask asked
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
            # The received bytes plus what the enrichment appended (~9 µs), else ParseDict (~210 µs).
            encoded = encode_response(self.data, self.wire)
            if encoded is None:
                encoded = b"\x00"  # not a valid response: the mark of "does not encode"
            self.encoded = encoded
            self.wire = None  # only `encoded` is needed from now on
        return None if encoded == b"\x00" else encoded


    def masked_bytes(self, mask: FieldMask) -> bytes | None:
        """The response bytes under ``mask``, encoded once per slot and mask, however many
        clients ask with the same mask (the hubble CLI's default mask is the common case)."""
        cache = self.masked
        if cache is not None:
            found = cache.get(mask.key)
            if found is not None:
                return None if found == b"\x00" else found
        full = self.response_bytes()
        if full is None:
            return None
        response = observer_pb2.GetFlowsResponse.FromString(full)
        encoded = masked_response(response, mask.tree).SerializeToString()
        if cache is None:
            cache = self.masked = {}
        if len(cache) < _MASKS_CACHED:  # a client sending a new mask per call cannot grow it
            cache[mask.key] = encoded
        return encoded


class FieldMask:
    """A request's field mask, checked and compiled once per call."""

    __slots__ = ("key", "paths", "tree")

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = tuple(sorted(set(paths)))
        self.key: FieldMaskKey = self.paths
        self.tree = field_mask_tree(flow_pb2.Flow.DESCRIPTOR, self.paths)  # ValueError when invalid


def request_field_mask(request: observer_pb2.GetFlowsRequest) -> FieldMask | None:
    """The mask a GetFlows request asks for, as Hubble reads it: ``field_mask``, else
    ``experimental.field_mask`` (kept by Hubble for clients of 1.16 and older); None for
    "every field". Raises ValueError for a path that names no Flow field.

    The hubble CLI up to 1.19 sends, for its compact/dict/table output, a default mask that
    leaves out what its own printer needs for policy verdicts (traffic direction, match type,
    the allowed-by/denied-by policies): ``--print-policy-names`` then prints nothing
    (cilium#41912). Cilium fixed the CLI's default mask (cilium#46672) by adding those six
    fields; hushflow serves exactly that old default mask as the fixed one, so the CLI
    1.19.4 shows the rule on a drop unchanged. Any other mask is applied as sent.
    """
    paths = list(request.field_mask.paths) or list(request.experimental.field_mask.paths)
    if not paths:
        return None
    if frozenset(paths) == HUBBLE_CLI_1_19_DEFAULT_MASK:
        paths += HUBBLE_CLI_DEFAULT_MASK_FIX
    return FieldMask(paths)


class ServeStats:
    """What the GetFlows calls did, for the daemon's metrics (hushflow_serve_*)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clients = 0  # GetFlows calls open now
        self.calls = 0  # GetFlows calls answered since start
        self.responses_sent = 0  # flows, plus the node_status each call starts with and lost_events
        self.lost_to_clients = 0  # flows clients fell too far behind to get (all clients together)

    def add(self, *, clients: int = 0, calls: int = 0, sent: int = 0, lost: int = 0) -> None:
        with self._lock:
            self.clients += clients
            self.calls += calls
            self.responses_sent += sent
            self.lost_to_clients += lost


class EventRing:
    """The last `capacity` flow events the daemon processed, numbered from 1 in arrival order."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("the ring capacity must be at least 1")
        self.capacity = capacity
        self.stats = ServeStats()
        self._monotonic = monotonic
        self._slots: deque[_Slot] = deque(maxlen=capacity)
        self._seen = 0  # events ever appended; the newest has this number
        self._changed = threading.Condition(threading.Lock())

    def append(self, event: Mapping[str, Any], wire: bytes | None = None) -> None:
        """Called by the pipeline for each processed event; only flows are kept. `wire`: the
        bytes the gRPC source received for it (FlowEvent.wire), which its encoding reuses."""
        flow = event.get("flow")
        if not isinstance(flow, dict):
            return
        slot = _Slot(dict(event), self._monotonic(), wire)
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

    def flows_rate(self) -> float:
        """Flows per second over the last minute, or over the time the ring covers when it has
        wrapped within the minute (Hubble's getFlowRate; by arrival, not by the flows' own
        times, which a replayed file makes old)."""
        now = self._monotonic()
        with self._changed:
            slots = list(self._slots)
            wrapped = self._seen > len(slots)
        count, since = 0, now - _RATE_WINDOW
        for slot in reversed(slots):
            if slot.arrived < since:
                break
            count += 1
        else:
            if wrapped and slots:
                since = slots[0].arrived  # the whole ring is within the minute
        span = now - since
        return count / span if span > 0 else 0.0

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
            ring = self._slots
            wanted = len(ring) - start
            if wanted * 4 < len(ring):
                # A follower reads the few newest: taken from the right end (deque indexing near
                # an end is cheap), not by copying all `capacity` slots on each read.
                slots = [ring[i] for i in range(-wanted, 0)]
            else:
                slots = list(ring)[start:] if start else list(ring)
            return lost, slots, self._seen + 1

    def wait_beyond(self, seen: int, timeout: float) -> None:
        """Wait until an event numbered above `seen` exists, or `timeout` seconds."""
        with self._changed:
            if self._seen <= seen:
                self._changed.wait(timeout)


def _identity(data: bytes) -> bytes:
    return data


def _node_status_bytes(node_name: str) -> bytes:
    message = observer_pb2.GetFlowsResponse(node_name=node_name)
    message.node_status.state_change = relay_pb2.NODE_CONNECTED
    message.node_status.node_names.append(node_name)
    message.time.GetCurrentTime()
    return message.SerializeToString()


def _lost_event_bytes(count: int, node_name: str) -> bytes:
    message = observer_pb2.GetFlowsResponse(node_name=node_name)
    message.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    message.lost_events.num_events_lost = count
    message.time.GetCurrentTime()
    return message.SerializeToString()


class ObserverService:
    """The Observer methods over one ring. GetAgentEvents and GetDebugEvents answer UNIMPLEMENTED
    "... not yet implemented", as Relay does."""

    def __init__(self, ring: EventRing, *, node_name: str = "hushflow", version: str = "",
                 announce_nodes: bool = True, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ring = ring
        self.node_name = node_name
        # Like Relay, a GetFlows answer starts with a node_status naming this node; an instance
        # that a Relay aggregates (per-node deployment) answers as a node's Hubble: without it.
        self.announce_nodes = announce_nodes
        self.version = version
        self.address = ""  # where it listens, once bound
        self._monotonic = monotonic
        self._started = monotonic()
        self.stopping = threading.Event()

    # -- GetFlows ----------------------------------------------------------------------------

    def get_flows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Hubble's GetFlows over the ring (pkg/hubble/observer: newRingReader, eventsReader):

        - ``first`` with ``follow`` is refused (INVALID_ARGUMENT), as Hubble refuses it;
        - ``since`` decides where reading starts and ``number`` then caps the flows sent (the
          first N after ``since``); without ``since``, ``first`` takes the oldest N and otherwise
          the newest N; ``number`` 0 without ``follow`` reads the whole ring, with ``follow``
          only new flows;
        - the first flow after ``until`` ends the call, following or not;
        - filters are evaluated on the enriched flow; the field mask cuts each response.
        """
        from hushflow.filter import FilterError, compile_filters

        if request.first and request.follow:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first cannot be specified with follow")
        allow = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.whitelist]
        deny = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.blacklist]
        try:
            matches = compile_filters(allow, deny).matches if allow or deny else None
        except FilterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            mask = request_field_mask(request)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid field mask: {exc}")
        since = _ns(request.since) if request.HasField("since") else None
        until = _ns(request.until) if request.HasField("until") else None
        encode: Callable[[_Slot], bytes | None] = (
            _Slot.response_bytes if mask is None else lambda slot: slot.masked_bytes(mask))

        def matching(slot: _Slot) -> bool:
            if matches is None:
                return True
            try:
                return bool(matches(slot.data))
            except FLOW_SHAPE_ERRORS:  # an odd event (hostile input) matches no filter
                return False

        stats = self.ring.stats
        stats.add(clients=1, calls=1)
        sent = 0
        try:
            for encoded in self._responses(request, context, matching, encode, since, until):
                yield encoded
                sent += 1
                if sent == _SENT_BATCH:
                    stats.add(sent=sent)
                    sent = 0
        finally:
            stats.add(clients=-1, sent=sent)

    def _responses(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext,
                   matching: Callable[[_Slot], bool], encode: Callable[[_Slot], bytes | None],
                   since: int | None, until: int | None) -> Iterator[bytes]:
        if self.announce_nodes:
            # Relay first tells the client which nodes it will hear from.
            yield _node_status_bytes(self.node_name)
        _lost, slots, cursor = self.ring.read_from(1)
        start = _start_index(slots, request, since, matching)
        number = request.number
        limit = number if not request.follow and 0 < number < _ALL else None
        windowed = since is not None or until is not None
        sent = 0
        while True:
            for slot in slots[start:]:
                if windowed:
                    at = slot.time_ns
                    if at is None:
                        continue  # no time to compare (hostile input): outside any window
                    if until is not None and at > until:
                        return  # Hubble: the first flow past `until` ends the call
                    if since is not None and at < since:
                        continue
                if not matching(slot):
                    continue
                encoded = encode(slot)
                if encoded is None:
                    continue
                yield encoded
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if not request.follow or not context.is_active() or self.stopping.is_set():
                return
            self.ring.wait_beyond(cursor - 1, _POLL_SECONDS)
            # Let more flows arrive before reading: a follower wakes at most 1/_BATCH_SECONDS
            # times a second, not once per flow (each wake is a thread switch and a read under
            # the ring's lock, for every follower, on the pipeline's core).
            self.stopping.wait(_BATCH_SECONDS)
            lost, slots, cursor = self.ring.read_from(cursor)
            start = 0
            if lost:
                self.ring.stats.add(lost=lost)
                yield _lost_event_bytes(lost, self.node_name)

    # -- status --------------------------------------------------------------------------------

    def server_status(self, _request: Any, _context: grpc.ServicerContext) -> observer_pb2.ServerStatusResponse:
        response = observer_pb2.ServerStatusResponse(
            num_flows=len(self.ring), max_flows=self.ring.capacity, seen_flows=self.ring.seen,
            uptime_ns=int((self._monotonic() - self._started) * 1e9), version=self.version,
        )
        response.flows_rate = self.ring.flows_rate()
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

    @staticmethod
    def _not_yet_implemented(method: str) -> Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]:
        """Relay's answer to GetAgentEvents/GetDebugEvents (pkg/hubble/relay/observer/server.go)."""
        def answer(_request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} not yet implemented")
            yield b""  # never reached: abort raises

        return answer

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(OBSERVER_SERVICE, {
            **{method: grpc.unary_stream_rpc_method_handler(
                self._not_yet_implemented(method), request_deserializer=_identity, response_serializer=_identity)
               for method in ("GetAgentEvents", "GetDebugEvents")},
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


def _start_index(slots: list[_Slot], request: observer_pb2.GetFlowsRequest, since: int | None,
                 matching: Callable[[_Slot], bool]) -> int:
    """Where a call starts reading the ring, as Hubble's newRingReader finds it: the oldest for
    ``first``; past the end for a follow of new flows only; otherwise walking back from the
    newest over the matching flows until ``number`` of them, or the first one before
    ``since`` (which wins over ``number``), or the oldest."""
    if request.first and since is None:
        return 0
    if request.follow and request.number == 0 and since is None:
        return len(slots)
    count = 0
    for index in range(len(slots) - 1, -1, -1):
        slot = slots[index]
        if not matching(slot):
            continue
        count += 1
        if since is not None:
            at = slot.time_ns
            if at is not None and at < since:
                return index + 1
        elif count == request.number:
            return index
    return 0


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
                   max_workers: int = 16, announce_nodes: bool = True,
                   credentials: grpc.ServerCredentials | None = None,
                   services: Iterable[tuple[str, grpc.GenericRpcHandler]] = ()) -> ObserverServer:
    """Start serving Observer, health and reflection on `address`, with TLS when `credentials`
    are given (app.serve_tls), and the other `services` (name, handler: app.peer's Peer) beside it.
    Raises ServeError when the address is malformed or cannot be bound (in use, no permission)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    target = parse_serve_address(address)
    service = ObserverService(ring, node_name=node_name, version=version, announce_nodes=announce_nodes)
    # Each following client holds a worker thread; past the limit new calls get RESOURCE_EXHAUSTED.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hushflow-serve"),
                         maximum_concurrent_rpcs=max_workers - 2, options=[("grpc.so_reuseport", 0)])
    services = tuple(services)
    server.add_generic_rpc_handlers((service.handler(), *(handler for _name, handler in services)))
    health_servicer = health.HealthServicer()
    health_servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (OBSERVER_SERVICE, *(name for name, _handler in services), health.SERVICE_NAME, reflection.SERVICE_NAME),
        server)
    try:
        port = (server.add_insecure_port(target) if credentials is None
                else server.add_secure_port(target, credentials))
    except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
        raise ServeError(f"cannot serve the Observer API on {address}: {exc}") from None
    if port == 0 and not target.startswith("unix:"):
        raise ServeError(f"cannot serve the Observer API on {address}: the address is in use or not available")
    service.address = address
    server.start()
    return ObserverServer(server, service, address, port)
