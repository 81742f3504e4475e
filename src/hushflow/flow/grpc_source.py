"""Read Hubble events live from the Observer gRPC API: Hubble Relay or a node's Hubble socket.

:class:`GrpcFlowSource` calls ``observer.Observer/GetFlows`` on ``host:port`` (TCP, optionally
TLS / mutual TLS with the hubble CLI's options) or ``unix:///path``, pushes the allowlist,
denylist and field mask upstream so Hubble sends only what hushflow reads, and yields
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
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import grpc.experimental
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import DecodeError

from hushflow.flow.proto_dict import ProtoDictError, response_bytes_to_event
from hushflow.flow.reader import FlowEvent
from hushflow.flow.times import parse_timestamp
from hushflow.proto import flow_pb2, observer_pb2, relay_pb2

__all__ = [
    "DEFAULT_DEDUP_WINDOW",
    "DEFAULT_SERVER",
    "HUSHFLOW_FIELD_MASK",
    "HUSHFLOW_UPSTREAM_FILTERS",
    "NODE_SOCKET",
    "RESUME_CLOCK_MARGIN",
    "Backoff",
    "GrpcFlowSource",
    "GrpcSourceError",
    "GrpcSourceStats",
    "HubbleSource",
    "TLSOptions",
    "upstream_request",
]

#: The hubble CLI's default server: Hubble Relay (e.g. ``cilium hubble port-forward``).
DEFAULT_SERVER = "localhost:4245"
#: A node's own Hubble server (``hostPath`` in a DaemonSet pod).
NODE_SOCKET = "unix:///var/run/cilium/hubble.sock"
#: How many delivered flow uuids are remembered to drop the duplicates of a resumed stream.
DEFAULT_DEDUP_WINDOW = 16384
#: A following stream that starts "now" and fails before delivering a flow is resumed from the
#: client's clock at its start minus this margin (seconds), for clock skew between us and Hubble.
RESUME_CLOCK_MARGIN = 10.0

#: What hushflow needs from Hubble (the allowlist pushed upstream; a flow matching any is sent):
#: DNS from the DNS proxy (L7 event, type 129; the answers teach hushflow the IPs behind names, and
#: the requests the proxy refuses are L7 drops), policy verdict events (type 5: FORWARDED, DROPPED
#: and AUDIT verdicts with their rule) and drop notifications (type 1: default deny and others).
HUSHFLOW_UPSTREAM_FILTERS: tuple[Mapping[str, Any], ...] = (
    {"event_type": [{"type": 129}], "protocol": ["dns"]},
    {"event_type": [{"type": 5}]},
    {"event_type": [{"type": 1}]},
)

#: The Flow fields hushflow reads (GetFlowsRequest.field_mask). Hubble validates the paths against
#: ``flow.Flow`` and copies only these (``pkg/hubble/parser/fieldmask``), so they name Flow fields
#: directly, without a ``flow.`` prefix. ``time`` and ``node_name`` must stay: Hubble builds the
#: response's own ``time`` and ``node_name`` from the masked flow.
HUSHFLOW_FIELD_MASK: tuple[str, ...] = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "IP", "l4", "source", "destination",
    "Type", "node_name", "node_labels", "source_names", "destination_names", "l7", "is_reply",
    "event_type", "source_service", "destination_service", "traffic_direction", "policy_match_type",
    "egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by", "policy_log",
    "Summary",
)

# Statuses that a retry cannot fix: the request or the credentials are wrong. Anything else
# (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, ...) is retried.
_PERMANENT = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
})
_TLS_PREFIX = "tls://"
_GET_FLOWS = "/observer.Observer/GetFlows"
_SERVER_STATUS = "/observer.Observer/ServerStatus"

FlowFilterLike: TypeAlias = Mapping[str, Any] | flow_pb2.FlowFilter
SinceLike: TypeAlias = str | datetime | tuple[int, int] | timestamp_pb2.Timestamp


class GrpcSourceError(Exception):
    """The source cannot go on: a bad address or TLS file, a permanent refusal by the server, or
    ``max_retries`` reached. The message names the server and says what happened."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """How to reach a TLS server; the fields are the hubble CLI's ``--tls*`` options.

    TLS is used when ``enabled`` (``--tls``), when the address starts with ``tls://`` (both as in
    the hubble CLI), and also when any other option is given: the CLI documents the client
    certificate as implying TLS but otherwise ignores them silently and talks plaintext.
    """

    enabled: bool = False
    """``--tls``."""
    ca_cert_files: tuple[str, ...] = ()
    """``--tls-ca-cert-files``: PEM CA certificates to trust instead of the system roots."""
    client_cert_file: str | None = None
    """``--tls-client-cert-file``: PEM client certificate (mutual TLS)."""
    client_key_file: str | None = None
    """``--tls-client-key-file``: PEM key of the client certificate."""
    server_name: str | None = None
    """``--tls-server-name``: the name to verify the server certificate against (and SNI), e.g.
    ``instance.hubble-relay.cilium.io``; default: the host of the address."""
    allow_insecure: bool = False
    """``--tls-allow-insecure``: do not verify the server's certificate chain and name. (grpcio
    cannot skip verification: the certificate the server presents is fetched first and trusted
    under one of its own names, read with the ``cryptography`` package; without that package,
    give ``server_name`` too.)"""

    @property
    def any_file(self) -> bool:
        return bool(self.ca_cert_files or self.client_cert_file or self.client_key_file)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TLSOptions:
        """From parsed CLI options keyed like the hubble flags (``tls``, ``tls_ca_cert_files``,
        ``tls_client_cert_file``, ``tls_client_key_file``, ``tls_server_name``,
        ``tls_allow_insecure``); missing or None keys keep their defaults."""
        def get(key: str) -> Any:
            return options.get(f"tls_{key}", options.get(key))

        ca = get("ca_cert_files") or ()
        return cls(
            enabled=bool(options.get("tls", options.get("enabled"))),
            ca_cert_files=(ca,) if isinstance(ca, str) else tuple(ca),
            client_cert_file=get("client_cert_file") or None,
            client_key_file=get("client_key_file") or None,
            server_name=get("server_name") or None,
            allow_insecure=bool(get("allow_insecure")),
        )


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
    """Messages with no JSON form (an ``extensions`` Any of an unknown type); skipped."""
    last_error: str | None = None
    """Why the last stream stopped (``UNAVAILABLE: ...``), None before any failure."""
    server_version: str | None = None
    """What the server's ServerStatus says (Cilium/Hubble version), once connected."""


def upstream_request(
    *,
    follow: bool,
    allowlist: Sequence[FlowFilterLike],
    field_mask: Sequence[str],
    since: SinceLike | None = None,
    denylist: Sequence[FlowFilterLike] = (),
    number: int = 0,
) -> observer_pb2.GetFlowsRequest:
    """The ``GetFlowsRequest`` that asks Hubble for what hushflow reads.

    ``allowlist``/``denylist``: FlowFilters as dicts in protojson form
    (``{"event_type": [{"type": 129}], "protocol": ["dns"]}``) or messages; Hubble sends the flows
    matching any allowlist filter and no denylist filter. ``field_mask``: Flow field paths
    (``"l7"``, ``"source.namespace"``), checked here as Hubble checks them. ``since``: RFC 3339
    text, an aware datetime, ``(seconds, nanos)`` or a Timestamp. ``number``: the last N flows
    first (not with ``since``). Raises ValueError naming the bad filter, path or time.
    """
    request = observer_pb2.GetFlowsRequest(follow=follow, number=number)
    for i, f in enumerate(allowlist):
        request.whitelist.append(_flow_filter(f, f"allowlist[{i}]"))
    for i, f in enumerate(denylist):
        request.blacklist.append(_flow_filter(f, f"denylist[{i}]"))
    if field_mask:
        for path in field_mask:
            _check_field_mask_path(path)
        request.field_mask.paths.extend(field_mask)
    if since is not None:
        if number:
            raise ValueError("since cannot be combined with number (Hubble refuses it)")
        request.since.CopyFrom(_timestamp(since))
    return request


def _flow_filter(f: FlowFilterLike, where: str) -> flow_pb2.FlowFilter:
    if isinstance(f, flow_pb2.FlowFilter):
        return f
    try:
        return json_format.ParseDict(dict(f), flow_pb2.FlowFilter())
    except json_format.ParseError as e:
        raise ValueError(f"{where}: not a Hubble FlowFilter: {e}") from None


def _check_field_mask_path(path: str) -> None:
    desc = flow_pb2.Flow.DESCRIPTOR
    parts = path.split(".")
    for i, part in enumerate(parts):
        fd = desc.fields_by_name.get(part) if desc is not None else None
        if fd is None:
            raise ValueError(
                f"field mask path {path!r}: flow.Flow has no field {'.'.join(parts[: i + 1])!r} "
                "(paths are relative to Flow, e.g. 'l7' or 'source.namespace')"
            )
        if i < len(parts) - 1 and (fd.is_repeated or fd.message_type is None):
            raise ValueError(f"field mask path {path!r}: {part!r} has no sub-fields")
        desc = fd.message_type


def _timestamp(since: SinceLike) -> timestamp_pb2.Timestamp:
    if isinstance(since, timestamp_pb2.Timestamp):
        return since
    if isinstance(since, tuple):
        seconds, nanos = since
    elif isinstance(since, datetime):
        if since.tzinfo is None:
            raise ValueError(f"since {since.isoformat()}: a time zone is needed (e.g. UTC)")
        delta = since - datetime(1970, 1, 1, tzinfo=UTC)
        seconds = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000
    else:
        try:
            seconds, nanos = parse_timestamp(since)
        except ValueError as e:
            raise ValueError(f"since: {e} (expected RFC 3339, e.g. 2026-03-02T09:00:00Z)") from None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


# -- connection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    grpc_target: str
    host: str  # for TLS: the name the certificate is checked against by default
    port: int | None
    tls: bool


def _parse_server(server: str, tls: TLSOptions) -> _Target:
    if not server:
        raise GrpcSourceError("no server address given (e.g. localhost:4245 or unix:///var/run/cilium/hubble.sock)")
    use_tls = tls.enabled or tls.allow_insecure or tls.any_file or bool(tls.server_name)
    address = server
    if address.startswith(_TLS_PREFIX):
        use_tls = True
        address = address[len(_TLS_PREFIX) :]
    if address.startswith("unix:"):
        path = address.removeprefix("unix:").removeprefix("//")
        if not path:
            raise GrpcSourceError(f"{server}: no socket path (e.g. unix:///var/run/cilium/hubble.sock)")
        return _Target(f"unix:{path}" if not path.startswith("/") else f"unix://{path}", "localhost", None, use_tls)
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise GrpcSourceError(f"{server}: expected host:port (e.g. localhost:4245) or unix:///path")
    return _Target(address, host.strip("[]"), int(port_text), use_tls)


def _read_pem(path: str, what: str, server: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise GrpcSourceError(f"{server}: cannot read {what} {path}: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise GrpcSourceError(f"{server}: {what} {path}: must be PEM encoded data")
    return data


def _unverified_server_certificate(target: _Target, server_name: str | None, timeout: float) -> bytes:
    """The certificate the server presents, fetched without verifying it (--tls-allow-insecure)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if target.port is None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.connect(target.grpc_target.removeprefix("unix:").removeprefix("//"))
    else:
        raw = socket.create_connection((target.host, target.port), timeout=timeout)
    with raw, ctx.wrap_socket(raw, server_hostname=server_name or target.host) as tls_sock:
        der = tls_sock.getpeercert(binary_form=True)
    if der is None:
        raise OSError("the server sent no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")


def _certificate_names(pem: bytes) -> list[str]:
    """DNS names of a certificate (SAN, else CN), to accept it whatever name was dialled."""
    try:
        from cryptography import x509
    except ImportError:  # the name check then needs --tls-server-name
        return []
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return names


# -- the source ------------------------------------------------------------------------------------


class GrpcFlowSource:
    """Iterate the events of a Hubble server; see the module documentation.

    - ``server``: ``host:port``, ``tls://host:port`` or ``unix:///path`` (default Relay at
      ``localhost:4245``; a node's socket is :data:`NODE_SOCKET`).
    - ``tls``: :class:`TLSOptions` (the hubble CLI's ``--tls*`` options).
    - ``follow``: keep streaming new events (``hubble observe -f``); without it the source ends
      once the server has sent what it holds (resuming if the stream is cut before).
    - ``allowlist``, ``denylist``, ``field_mask``, ``since``, ``number``: the request, see
      :func:`upstream_request` (:data:`HUSHFLOW_UPSTREAM_FILTERS` and :data:`HUSHFLOW_FIELD_MASK`
      are what the hushflow pipeline needs). A field mask always gets ``time`` and ``uuid``
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
        self._target = _parse_server(server, self._tls)
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
            request.since.CopyFrom(_timestamp(self._last_time))
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
        if tls.ca_cert_files:
            root = b"".join(_read_pem(p, "CA certificate", self.server) for p in tls.ca_cert_files)
        key = chain = None
        if tls.client_cert_file and tls.client_key_file:
            chain = _read_pem(tls.client_cert_file, "client certificate", self.server)
            key = _read_pem(tls.client_key_file, "client key", self.server)
        server_name = tls.server_name
        if tls.allow_insecure:
            # grpcio cannot turn verification off: trust the certificate the server presents now,
            # under one of its own names. As with the hubble CLI's option, nothing is verified.
            try:
                root = _unverified_server_certificate(target, tls.server_name, self._connect_timeout)
            except OSError as e:
                raise _Retryable(f"UNAVAILABLE: TLS connection to fetch the certificate: {e}") from None
            names = _certificate_names(root)
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
                        except (ProtoDictError, DecodeError):
                            stats.bad_events += 1
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
                            yield FlowEvent(None, data, source, line)
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


class HubbleSource:
    """The hushflow pipeline's live source: a following :class:`GrpcFlowSource` that asks Hubble
    only for :data:`HUSHFLOW_UPSTREAM_FILTERS` with :data:`HUSHFLOW_FIELD_MASK`.

    ``tls``: :class:`TLSOptions`, or CLI options as :meth:`TLSOptions.from_options` reads them.
    Other keyword arguments go to :class:`GrpcFlowSource`.
    """

    def __init__(self, server: str = DEFAULT_SERVER, tls: TLSOptions | Mapping[str, Any] | None = None,
                 **options: Any) -> None:
        if tls is not None and not isinstance(tls, TLSOptions):
            tls = TLSOptions.from_options(tls)
        options.setdefault("follow", True)
        options.setdefault("allowlist", HUSHFLOW_UPSTREAM_FILTERS)
        options.setdefault("field_mask", HUSHFLOW_FIELD_MASK)
        self.name = server
        self.source = GrpcFlowSource(server, tls=tls, **options)

    @property
    def stats(self) -> GrpcSourceStats:
        return self.source.stats

    def events(self) -> Iterator[FlowEvent]:
        return iter(self.source)

    def stop(self) -> None:
        self.source.stop()

    def connected(self) -> bool:
        return self.source.connected


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
