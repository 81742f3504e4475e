"""Read Hubble events live from the Observer gRPC API: Hubble Relay or a node's Hubble socket.

:class:`GrpcFlowSource` calls ``observer.Observer/GetFlows`` on a server address
(:mod:`hushflow.flow.grpc_target`: TCP, optionally TLS / mutual TLS with the hubble CLI's
options, or ``unix:///path``) with the request of :mod:`hushflow.flow.grpc_request` (the
allowlist, denylist and field mask pushed upstream), and yields
:class:`~hushflow.flow.reader.FlowEvent` objects identical to those read from a
``hubble observe -o jsonpb`` file (``source`` = the server address, ``line`` = a running count).

It keeps going. When the stream fails (UNAVAILABLE, a deadline, or any status that is not a
permanent refusal) or the server ends a ``follow`` stream, it reconnects after an exponential
backoff with full jitter (``random() * min(maximum, initial * multiplier ** attempt)``; the
attempt count resets once a stream delivers an event) and resumes with ``since`` = the time of
the last flow delivered (none yet, on a stream that followed from "now": our clock when it opened
minus :data:`RESUME_CLOCK_MARGIN`). Hubble's ``since`` is inclusive and Relay merges nodes only
roughly in time order, so a resumed stream drops flows whose ``uuid`` was already delivered (the
last :data:`DEFAULT_DEDUP_WINDOW` uuids at least are remembered; a flow without uuid is dropped when it is
not later than the resume time). Lost events are counted (``stats.lost_events``) and yielded like
``hubble observe`` prints them (a resumed stream's repeats of them are dropped); node status
events (Relay's) are counted by state and not yielded, as ``hubble observe`` keeps them off
stdout.

``stop()`` (from any thread) or setting the ``stop_event`` passed in ends the iteration cleanly:
the open call is cancelled and a backoff wait is cut short.

Throughput (``benchmarks/bench_grpc.py``, loopback, 2-core machine): ~25-28k flows/s into
FlowEvents, ~37 µs of client CPU a flow, of which ~16 µs is the conversion to the canonical dict
(:mod:`hushflow.flow.proto_dict`) and most of the rest grpcio's own per-message cost. Pushing the
allowlist upstream is what keeps a busy node within that budget.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.experimental
from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from hushflow.flow.grpc_request import FlowFilterLike, SinceLike, to_timestamp, upstream_request
from hushflow.flow.grpc_target import (
    DEFAULT_SERVER,
    TargetError,
    TLSOptions,
    certificate_names,
    parse_server,
    read_pem,
    unverified_server_certificate,
)
from hushflow.flow.proto_dict import ProtoDictError, response_bytes_to_event
from hushflow.flow.reader import FlowEvent
from hushflow.flow.times import parse_timestamp
from hushflow.proto import observer_pb2, relay_pb2

__all__ = [
    "DEFAULT_DEDUP_WINDOW",
    "RESUME_CLOCK_MARGIN",
    "Backoff",
    "GrpcFlowSource",
    "GrpcSourceError",
    "GrpcSourceStats",
]

#: How many delivered flow uuids are remembered to drop the duplicates of a resumed stream.
DEFAULT_DEDUP_WINDOW = 16384
#: A following stream that starts "now" and fails before delivering a flow is resumed from the
#: client's clock at its start minus this margin (seconds), for clock skew between us and Hubble.
RESUME_CLOCK_MARGIN = 10.0

# Statuses that a retry cannot fix: the request or the credentials are wrong. Anything else
# (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, ...) is retried.
_PERMANENT = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
})
_GET_FLOWS = "/observer.Observer/GetFlows"
_SERVER_STATUS = "/observer.Observer/ServerStatus"


class GrpcSourceError(Exception):
    """The source cannot go on: a bad address or TLS file, a permanent refusal by the server, or
    ``max_retries`` reached. The message names the server and says what happened."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter between reconnection attempts (seconds)."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """The wait before retry number ``attempt`` (0-based): uniform in [0, cap)."""
        cap = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return random() * cap


@dataclass(slots=True)
class GrpcSourceStats:
    """What the source saw. Updated while iterating; read it at any time."""

    events: int = 0
    """Events yielded (flows and lost events)."""
    flows: int = 0
    streams: int = 0
    """GetFlows calls made."""
    reconnects: int = 0
    """Connection attempts after the first (each after a stream failed, ended or could not open)."""
    lost_events: int = 0
    """Sum of ``num_events_lost`` over the lost events received."""
    lost_events_messages: int = 0
    node_status: dict[str, int] = field(default_factory=dict)
    """Node status events received, by ``state_change`` (``NODE_CONNECTED``, ...)."""
    node_states: dict[str, str] = field(default_factory=dict)
    """The last state reported for each node name."""
    duplicates_dropped: int = 0
    """Events of resumed streams already delivered before the reconnection."""
    bad_events: int = 0
    """Messages with no JSON form (an ``extensions`` Any of an unknown type, a Timestamp out of
    protojson's range, bytes that are no message); skipped, the stream goes on."""
    last_bad_event: str | None = None
    """Why the last bad event had no JSON form (``google.protobuf.Timestamp: seconds ... out of range``)."""
    last_error: str | None = None
    """Why the last stream stopped (``UNAVAILABLE: ...``), None before any failure."""
    server_version: str | None = None
    """What the server's ServerStatus says (Cilium/Hubble version), once connected."""


# -- the source ------------------------------------------------------------------------------------


class GrpcFlowSource:
    """Iterate the events of a Hubble server; see the module documentation.

    - ``server``: ``host:port``, ``tls://host:port`` or ``unix:///path`` (default Relay at
      ``localhost:4245``; a node's socket is :data:`~hushflow.flow.grpc_target.NODE_SOCKET`).
    - ``tls``: :class:`~hushflow.flow.grpc_target.TLSOptions` (the hubble CLI's ``--tls*`` options).
    - ``follow``: keep streaming new events (``hubble observe -f``); without it the source ends
      once the server has sent what it holds (resuming if the stream is cut before).
    - ``allowlist``, ``denylist``, ``field_mask``, ``since``, ``number``: the request, see
      :func:`~hushflow.flow.grpc_request.upstream_request` (its ``HUSHFLOW_UPSTREAM_FILTERS`` and
      ``HUSHFLOW_FIELD_MASK`` are what the hushflow pipeline needs). A field mask always gets ``time`` and ``uuid``
      added (resuming needs them). ``number`` applies to the first call only.
    - ``backoff``, ``max_retries``: the reconnection policy; ``max_retries`` consecutive failed
      attempts (no event delivered) raise :class:`GrpcSourceError` (None: retry forever).
    - ``sleep``, ``random``, ``clock``: injected for tests (default: a wait that ``stop()``
      interrupts, ``random.random``, ``time.time``).
    - ``stream_timeout``: a deadline per call (None: none); when it passes, the source reconnects
      and resumes, as after any other failure.
    - ``on_retry(error, delay)``: called before each backoff wait, e.g. to log a warning.
    - ``channel_options``: extra gRPC channel arguments (keepalive, message sizes).
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        tls: TLSOptions | None = None,
        follow: bool = True,
        allowlist: Sequence[FlowFilterLike] = (),
        denylist: Sequence[FlowFilterLike] = (),
        field_mask: Sequence[str] = (),
        since: SinceLike | None = None,
        number: int = 0,
        backoff: Backoff = Backoff(),
        max_retries: int | None = None,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
        stop_event: threading.Event | None = None,
        stats: GrpcSourceStats | None = None,
        stream_timeout: float | None = None,
        connect_timeout: float = 10.0,
        on_retry: Callable[[str, float], object] | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
    ) -> None:
        self.server = server
        self._tls = tls if tls is not None else TLSOptions()
        try:
            self._target = parse_server(server, self._tls)
        except TargetError as e:
            raise GrpcSourceError(str(e)) from None
        if self._tls.client_cert_file and not self._tls.client_key_file:
            raise GrpcSourceError(f"{server}: --tls-client-cert-file needs --tls-client-key-file")
        if self._tls.client_key_file and not self._tls.client_cert_file:
            raise GrpcSourceError(f"{server}: --tls-client-key-file needs --tls-client-cert-file")
        self.follow = follow
        if field_mask:
            # Resuming needs each flow's time and uuid, whatever else the caller keeps.
            field_mask = [*field_mask, *(p for p in ("time", "uuid") if p not in field_mask)]
        try:
            self._first_request = upstream_request(
                follow=follow, allowlist=allowlist, denylist=denylist, field_mask=field_mask, since=since,
                number=number,
            )
        except ValueError as e:
            raise GrpcSourceError(f"{server}: {e}") from None
        self._number_limit = number if number and not follow else None
        self.backoff = backoff
        self.max_retries = max_retries
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._own_stop_event = stop_event is None
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._random = random
        self._clock = clock
        # Set when a stream that follows from "now" (no since, no number) is first opened.
        self._opened_at: float | None = None
        self._from_now = follow and since is None and not number
        self.stats = stats if stats is not None else GrpcSourceStats()
        self._stream_timeout = stream_timeout
        self._connect_timeout = connect_timeout
        self._on_retry = on_retry
        self._channel_options = list(channel_options)
        self._dedup_window = dedup_window
        self._lock = threading.Lock()
        self._call: Any = None
        self._channel: grpc.Channel | None = None
        self._channel_ready = False
        self._streaming = False
        self._last_time: str | None = None
        self._iterating = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a GetFlows stream is open to a server that answered (ServerStatus or a
        first event) on this connection; False while connecting, in backoff, and after the end."""
        return self._streaming and self._channel_ready

    @property
    def request(self) -> observer_pb2.GetFlowsRequest:
        """The first ``GetFlowsRequest`` this source sends (a copy)."""
        request = observer_pb2.GetFlowsRequest()
        request.CopyFrom(self._first_request)
        return request

    @property
    def last_event_time(self) -> str | None:
        """The time of the last flow delivered (RFC 3339, as in the event), None before any."""
        return self._last_time

    def stop(self) -> None:
        """End the iteration from any thread: cancels the open call and any backoff wait."""
        self._stop.set()
        self._cancel_call()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- requests ------------------------------------------------------------------------------

    def _resume_request(self) -> observer_pb2.GetFlowsRequest:
        request = observer_pb2.GetFlowsRequest()
        request.CopyFrom(self._first_request)
        if self._last_time is not None:
            request.number = 0  # Hubble: since and number do not go together
            request.first = False
            request.since.CopyFrom(to_timestamp(self._last_time))
        elif self._opened_at is not None:
            # Nothing delivered yet: what happened while we were away is still in Hubble's ring.
            since = self._opened_at - RESUME_CLOCK_MARGIN
            seconds = int(since // 1)
            request.since.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=int((since - seconds) * 1e9)))
        return request

    def server_status(self, timeout: float = 10.0) -> observer_pb2.ServerStatusResponse:
        """Call ``ServerStatus`` once (e.g. to check the address and credentials)."""
        try:
            channel = self._new_channel()
        except _Retryable as e:
            raise GrpcSourceError(f"{self.server}: ServerStatus: {e}") from None
        try:
            call = channel.unary_unary(
                _SERVER_STATUS,
                request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                response_deserializer=observer_pb2.ServerStatusResponse.FromString,
            )
            try:
                response: observer_pb2.ServerStatusResponse = call(observer_pb2.ServerStatusRequest(), timeout=timeout)
            except grpc.RpcError as e:
                raise GrpcSourceError(f"{self.server}: ServerStatus: {_describe(e)}") from None
            return response
        finally:
            channel.close()

    # -- connection ----------------------------------------------------------------------------

    def _new_channel(self) -> grpc.Channel:
        # An experimental but long-standing grpcio option: a unary-stream call is consumed in the
        # calling thread, without the hand-over from grpcio's polling thread per message.
        options: list[tuple[str, Any]] = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
        target = self._target
        if not target.tls:
            return grpc.insecure_channel(target.grpc_target, options=options + self._channel_options)
        tls = self._tls
        root: bytes | None = None
        key = chain = None
        try:
            if tls.ca_cert_files:
                root = b"".join(read_pem(p, "CA certificate", self.server) for p in tls.ca_cert_files)
            if tls.client_cert_file and tls.client_key_file:
                chain = read_pem(tls.client_cert_file, "client certificate", self.server)
                key = read_pem(tls.client_key_file, "client key", self.server)
        except TargetError as e:
            raise GrpcSourceError(str(e)) from None
        server_name = tls.server_name
        if tls.allow_insecure:
            # grpcio cannot turn verification off: trust the certificate the server presents now,
            # under one of its own names. As with the hubble CLI's option, nothing is verified.
            try:
                root = unverified_server_certificate(target, tls.server_name, self._connect_timeout)
            except OSError as e:
                raise _Retryable(f"UNAVAILABLE: TLS connection to fetch the certificate: {e}") from None
            names = certificate_names(root)
            server_name = names[0] if names else server_name
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
        return grpc.secure_channel(target.grpc_target, credentials, options=options + self._channel_options)

    def _open(self, request: observer_pb2.GetFlowsRequest) -> Any:
        """Connect and start GetFlows; None when stopped. Raises _Retryable when unreachable."""
        # A new channel per attempt: our backoff decides when to retry, not the channel's own.
        channel = self._new_channel()
        with self._lock:
            self._close_channel_locked()
            if self._stop.is_set():
                channel.close()
                return None
            self._channel = channel
            probe = channel.unary_unary(
                _SERVER_STATUS,
                request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                response_deserializer=observer_pb2.ServerStatusResponse.FromString,
            ).future(observer_pb2.ServerStatusRequest(), timeout=self._connect_timeout)
            self._call = probe
        # ServerStatus first: it tells a reachable server from a dead one before the stream is
        # quiet for minutes (a node's Hubble sends nothing until a flow matches), which is what
        # `connected` reports. (grpcio's connectivity callbacks are not used: closing a channel
        # while its polling thread watches it raises in that thread.)
        try:
            status = probe.result()
        except grpc.FutureCancelledError:
            return None
        except grpc.RpcError as e:
            if self._stop.is_set():
                return None
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.UNAVAILABLE:
                raise _Retryable(_describe(e)) from None
            # Anything else (a proxy without ServerStatus, a slow Relay): let GetFlows decide.
        else:
            self.stats.server_version = status.version
            self._channel_ready = True
        with self._lock:
            if self._stop.is_set():
                return None
            # Responses arrive as bytes: response_bytes_to_event reads them straight into dicts
            # (the C converter: ~3 µs a flow, against ~14 µs through upb messages).
            method = channel.unary_stream(
                _GET_FLOWS,
                request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                response_deserializer=None,
            )
            if self._from_now and self._opened_at is None:
                self._opened_at = self._clock()
            self._call = method(request, timeout=self._stream_timeout)
            self._streaming = True
            return self._call

    def _cancel_call(self) -> None:
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def _close_channel_locked(self) -> None:
        channel = self._channel
        self._channel = None
        self._channel_ready = False
        if channel is not None:
            channel.close()

    def _finish_call(self) -> None:
        with self._lock:
            call = self._call
            self._call = None
            self._streaming = False
        if call is not None:
            call.cancel()  # no-op when it has ended

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[FlowEvent]:
        if self._iterating:
            raise RuntimeError("a GrpcFlowSource is iterated once at a time")
        self._iterating = True
        finished = threading.Event()
        if not self._own_stop_event:
            threading.Thread(target=self._watch_stop_event, args=(finished,), daemon=True,
                             name=f"hushflow-grpc-stop-{self.server}").start()
        try:
            yield from self._run()
        finally:
            finished.set()
            self._finish_call()
            with self._lock:
                self._close_channel_locked()
            self._iterating = False

    def _watch_stop_event(self, finished: threading.Event) -> None:
        # A caller-owned Event may be set without calling stop(): cancel the blocked call then.
        while not finished.is_set():
            if self._stop.wait(0.2):
                self._cancel_call()
                return

    def _run(self) -> Iterator[FlowEvent]:
        stats = self.stats
        failures = 0  # consecutive attempts that delivered nothing
        resumed = False
        # The uuids delivered lately, in two generations (a set each, swapped when the young one
        # holds `window`): between `window` and twice that many are remembered, at O(1) a flow.
        delivered_uuids: set[str] = set()
        delivered_before: set[str] = set()
        lost_seen: set[bytes] = set()
        lost_order: deque[bytes] = deque()
        window = self._dedup_window
        to_event = response_bytes_to_event
        source = self.server
        remaining = self._number_limit
        line = 0
        attempts = 0
        while not self._stop.is_set():
            request = self._resume_request() if resumed else self._first_request
            resume_time = self._last_time if resumed else None
            attempts += 1
            if attempts > 1:
                stats.reconnects += 1
            try:
                call = self._open(request)
            except _Retryable as e:
                call = None
                error = str(e)
            else:
                if call is None:
                    return
                stats.streams += 1
                error = ""
            got_any = False
            if call is not None:
                try:
                    for raw in call:
                        if not got_any:
                            got_any = True
                            self._channel_ready = True
                        try:
                            data = to_event(raw)
                        except (ProtoDictError, DecodeError) as e:
                            # One odd message (a hostile or buggy peer) is skipped, not the stream.
                            stats.bad_events += 1
                            stats.last_bad_event = str(e) or type(e).__name__
                            continue
                        flow = data.get("flow")
                        if flow is not None:
                            uuid = flow.get("uuid")
                            if resumed:
                                if uuid is not None:
                                    if uuid in delivered_uuids or uuid in delivered_before:
                                        stats.duplicates_dropped += 1
                                        continue
                                elif resume_time is not None and not _later(data, resume_time):
                                    stats.duplicates_dropped += 1
                                    continue
                            if uuid is not None:
                                delivered_uuids.add(uuid)
                                if len(delivered_uuids) >= window:
                                    delivered_before, delivered_uuids = delivered_uuids, set()
                            time_text = data.get("time") or flow.get("time")
                            if time_text is not None:
                                self._last_time = time_text
                            line += 1
                            stats.flows += 1
                            stats.events += 1
                            yield FlowEvent(None, data, source, line, raw)
                            if remaining is not None:
                                remaining -= 1
                                if remaining <= 0:
                                    return
                        elif "lost_events" in data:
                            key = bytes(raw)  # a resumed stream sends the same message again
                            if resumed and key in lost_seen:
                                stats.duplicates_dropped += 1
                                continue
                            lost_seen.add(key)
                            lost_order.append(key)
                            if len(lost_order) > 1024:
                                lost_seen.discard(lost_order.popleft())
                            stats.lost_events_messages += 1
                            stats.lost_events += int(data["lost_events"].get("num_events_lost", 0))
                            line += 1
                            stats.events += 1
                            yield FlowEvent(None, data, source, line)
                        elif "node_status" in data:
                            status = data["node_status"]
                            state = _node_state_name(status.get("state_change", 0))
                            stats.node_status[state] = stats.node_status.get(state, 0) + 1
                            for node in status.get("node_names", ()):
                                stats.node_states[node] = state
                    # The server ended the stream.
                    if not self.follow:
                        return
                    error = "the server ended the stream"
                except grpc.RpcError as e:
                    if self._stop.is_set():
                        return
                    code = e.code() if isinstance(e, grpc.Call) else None
                    if code in _PERMANENT:
                        raise GrpcSourceError(f"{self.server}: GetFlows refused: {_describe(e)}") from None
                    error = _describe(e)
                finally:
                    self._finish_call()
            if self._stop.is_set():
                return
            stats.last_error = error
            resumed = resumed or line > 0 or self._last_time is not None or self._opened_at is not None
            if got_any:
                failures = 0
            if self.max_retries is not None and failures >= self.max_retries:
                raise GrpcSourceError(
                    f"{self.server}: giving up after {failures + 1} attempt{'s' if failures else ''}: {error}"
                )
            delay = self.backoff.delay(failures, self._random)
            failures += 1
            if self._on_retry is not None:
                self._on_retry(error, delay)
            self._sleep(delay)


class _Retryable(Exception):
    """A connection step failed in a way a later attempt may not (e.g. the server is down)."""


def _node_state_name(state: int | str) -> str:
    """``relay.NodeState`` name (as the event dict has it) or of a number (the number itself when
    unknown)."""
    if isinstance(state, str):
        return state
    try:
        return relay_pb2.NodeState.Name(state)
    except ValueError:
        return str(state)


def _later(data: Mapping[str, Any], resume_time: str) -> bool:
    """Is the event strictly later than ``resume_time`` (both canonical RFC 3339 strings)?"""
    text = data.get("time") or data["flow"].get("time")
    if text is None:
        return True
    return parse_timestamp(text) > parse_timestamp(resume_time)


def _describe(e: grpc.RpcError) -> str:
    if isinstance(e, grpc.Call):
        code = e.code()
        details = e.details() or ""
        name = code.name if code is not None else "UNKNOWN"
        return f"{name}: {details}" if details else name
    return str(e)
