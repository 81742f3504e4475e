"""Hubble's Observer at Go speed, for benchmarks: recorded events replayed over plain HTTP/2.

:class:`~tests.doubles.observer_server.ObserverTestServer` is grpcio's Python server: it spends
about as much CPU per message as a Python client does, so a client reading from it is paced by
it, not by its own work (measured: 37 µs of client CPU per message against it, 5 µs against this
server, for the same grpcio client). Hubble is written in Go and sends from a ring buffer in
memory. This server stands in for that: it answers ``GetFlows`` with bytes prepared ahead of time
— the recorded events that pass the request's allow and deny lists (hushflow's implementation of
Hubble's filter semantics), cut by the request's field mask as Hubble cuts them, serialized and
gRPC-framed — so streaming costs it a few microseconds per HTTP/2 frame of many messages.
``repeat`` sends the recorded part that many times over (a long stream from a short recording,
for memory measurements).

It speaks just enough HTTP/2 (the ``h2`` library does the protocol: settings, flow control,
pings, resets) and gRPC for a real gRPC client: unary ``ServerStatus``, server-streaming
``GetFlows`` (with ``follow`` the stream stays open after the recorded part, until the client
cancels or the server stops; without it, the stream ends with ``grpc-status: 0``), and
``UNIMPLEMENTED`` for any other method or for ``since``/``number``/``first``, which it does not
evaluate. No TLS.

    server = ReplayObserverServer(recorded_messages).start()
    server.prepare(source_request)  # optional: do the filtering before the clock starts
    ... dial server.address ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from google.protobuf import json_format

from hushflow.filter.flow_filter import compile_filters
from hushflow.flow.field_mask import field_mask_tree, masked_response
from hushflow.flow.proto_dict import response_to_event
from hushflow.proto import flow_pb2, observer_pb2

__all__ = ["ReplayObserverServer", "grpc_frame"]

_GET_FLOWS = "/observer.Observer/GetFlows"
_SERVER_STATUS = "/observer.Observer/ServerStatus"
_RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_OK = [(b"grpc-status", b"0")]


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: no compression flag, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _status(code: int, message: str) -> list[tuple[bytes, bytes]]:
    return [(b"grpc-status", str(code).encode()), (b"grpc-message", message.encode())]


class _Stream:
    __slots__ = ("again", "body", "out", "path", "pos", "trailers")

    def __init__(self, path: str) -> None:
        self.path = path
        self.body = bytearray()
        self.out = b""  # what is left to send: view over a prepared payload
        self.pos = 0
        self.again = 0  # times `out` is sent again once sent
        self.trailers: list[tuple[bytes, bytes]] | None = None  # sent once `out` is sent; None: stay open


class ReplayObserverServer:
    """See the module documentation. ``events``: ``GetFlowsResponse`` messages or their
    serialized bytes, in stream order. ``host``/``port``: where to listen (port 0: a free one);
    :attr:`address` is what a client dials once started."""

    def __init__(self, events: Iterable[observer_pb2.GetFlowsResponse | bytes], *, host: str = "127.0.0.1",
                 port: int = 0, version: str = "hushflow-replay-server", repeat: int = 1) -> None:
        self._events = [e if isinstance(e, bytes) else e.SerializeToString() for e in events]
        self._repeat = max(1, repeat)
        self._version = version
        self._payloads: dict[bytes, tuple[bytes, int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server((host, port))
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self.requests: list[observer_pb2.GetFlowsRequest] = []
        bound = self._listener.getsockname()
        self.address = f"{bound[0]}:{bound[1]}"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> ReplayObserverServer:
        thread = threading.Thread(target=self._accept, name="replay-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> ReplayObserverServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what is sent ------------------------------------------------------------------------------

    def prepare(self, request: observer_pb2.GetFlowsRequest) -> int:
        """Filter, mask and frame the recorded events for ``request`` now (else on its first
        call); returns how many events that request receives."""
        return self._payload(request)[1]

    def _payload(self, request: observer_pb2.GetFlowsRequest) -> tuple[bytes, int]:
        key = request.SerializeToString(deterministic=True)
        with self._lock:
            known = self._payloads.get(key)
        if known is not None:
            return known
        dicts = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.whitelist]
        deny = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.blacklist]
        matches = compile_filters(dicts, deny).matches
        tree = None
        if request.HasField("field_mask") and request.field_mask.paths:
            tree = field_mask_tree(flow_pb2.Flow.DESCRIPTOR, list(request.field_mask.paths))
        parts: list[bytes] = []
        for raw in self._events:
            message = observer_pb2.GetFlowsResponse.FromString(raw)
            if not matches(response_to_event(message)):
                continue
            if tree is not None and message.WhichOneof("response_types") == "flow":
                raw = masked_response(message, tree).SerializeToString()
            parts.append(grpc_frame(raw))
        result = (b"".join(parts), len(parts))
        with self._lock:
            self._payloads[key] = result
        return result

    # -- HTTP/2 ------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.append(sock)
            thread = threading.Thread(target=self._connection, args=(sock,), name="replay-conn", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _connection(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        streams: dict[int, _Stream] = {}
        sock.settimeout(0.5)
        try:
            sock.sendall(conn.data_to_send())
            while not self._stopping.is_set():
                self._pump(conn, streams)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                for event in conn.receive_data(data):
                    if not self._on_event(conn, streams, event):
                        return
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            with self._lock:
                if sock in self._sockets:
                    self._sockets.remove(sock)
            sock.close()

    def _on_event(self, conn: h2.connection.H2Connection, streams: dict[int, _Stream], event: Any) -> bool:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers or ())
            streams[event.stream_id] = _Stream(bytes(headers.get(b":path", b"")).decode())
        elif isinstance(event, h2.events.DataReceived):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = streams.get(event.stream_id)
            if stream is not None:
                self._answer(conn, event.stream_id, stream)
                if stream.trailers is None and not stream.out:
                    streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.StreamReset):
            streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _answer(self, conn: h2.connection.H2Connection, stream_id: int, stream: _Stream) -> None:
        body = bytes(stream.body[5:])  # one request message, uncompressed
        if stream.path == _SERVER_STATUS:
            reply = observer_pb2.ServerStatusResponse(num_flows=len(self._events), max_flows=len(self._events),
                                                      seen_flows=len(self._events), version=self._version)
            conn.send_headers(stream_id, _RESPONSE_HEADERS)
            conn.send_data(stream_id, grpc_frame(reply.SerializeToString()))
            conn.send_headers(stream_id, _OK, end_stream=True)
            return
        if stream.path != _GET_FLOWS:
            conn.send_headers(stream_id, _RESPONSE_HEADERS + _status(12, f"unknown method {stream.path}"),
                              end_stream=True)
            return
        request = observer_pb2.GetFlowsRequest.FromString(body)
        with self._lock:
            self.requests.append(request)
        if request.HasField("since") or request.number or request.first:
            conn.send_headers(stream_id, _RESPONSE_HEADERS + _status(12, "replay server: since/number/first"),
                              end_stream=True)
            return
        payload, _ = self._payload(request)
        conn.send_headers(stream_id, _RESPONSE_HEADERS)
        stream.out = payload
        stream.again = self._repeat - 1
        stream.trailers = None if request.follow else _OK

    def _pump(self, conn: h2.connection.H2Connection, streams: dict[int, _Stream]) -> None:
        """Send what the flow-control windows allow, in frames as large as the peer accepts."""
        for stream_id, stream in list(streams.items()):
            out = stream.out
            while stream.pos < len(out):
                room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if room <= 0:
                    break
                end = min(stream.pos + room, len(out))
                conn.send_data(stream_id, out[stream.pos:end])
                stream.pos = end
                if stream.pos >= len(out) and stream.again:
                    stream.again -= 1
                    stream.pos = 0
            if stream.pos >= len(out) and stream.trailers is not None:
                conn.send_headers(stream_id, stream.trailers, end_stream=True)
                del streams[stream_id]

