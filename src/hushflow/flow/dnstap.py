"""dnstap: DNS answers straight from the DNS server, for when Hubble does not see them.

With NodeLocal DNSCache behind a local redirect policy, or pods no Cilium DNS rule covers, the
answers never pass Cilium's DNS proxy and no Hubble DNS flow carries them (cilium#24654,
#44064). CoreDNS (and NodeLocal DNSCache, which is CoreDNS), Unbound and BIND can send every
message they handle as dnstap: the dnstap protobuf (`dnstap_pb`, the schema of dnstap.info)
carried in Frame Streams. This module is the parsing half, without any I/O:

- `FrameStreamReader`: the receiving end of one Frame Streams connection, fed bytes as they
  arrive. Frame Streams (farsightsec's fstrm specification): a data frame is a 32-bit
  big-endian length and that many bytes; a control frame is an escape (a zero length), its
  own 32-bit length, a 32-bit type (ACCEPT 1, START 2, STOP 3, READY 4, FINISH 5) and fields
  (type 1 CONTENT_TYPE, a length, the bytes). A bidirectional sender (CoreDNS, Unbound on a
  socket) sends READY with the content types it offers, the receiver answers ACCEPT, then
  START, data frames, STOP, answered by FINISH; a unidirectional one starts with START. The
  PyPI `fstrm` package only encodes and decodes frames (no handshake, no size bound, an
  unbounded buffer), so the few control frames are done here.
- `parse_dnstap`: one data frame -> a `DnstapMessage` with the answer's name, CNAME chain,
  A/AAAA addresses, TTL and rcode, decoded from the wire-format response with dnspython.

Everything here is hostile input (whoever runs a denied domain writes its answers, whoever
can reach the socket writes the frames): a frame over `max_frame` bytes, a control frame that
is not one, a frame out of the handshake's order raise `FrameStreamError` (the connection
cannot be resynchronised and is dropped); a data frame that is no dnstap message raises
`DnstapError`. Each carries a `reason`, the `reason` label of
``hushflow_malformed_input_total{source="dnstap"}``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from hushflow.flow.dns import DnsAnswer, canonical_ip, clamp_ttl
from hushflow.policy.fqdn import dns_name

#: The one content type hushflow reads (what CoreDNS, Unbound and BIND send).
CONTENT_TYPE = b"protobuf:dnstap.Dnstap"

CONTROL_ACCEPT = 1
CONTROL_START = 2
CONTROL_STOP = 3
CONTROL_READY = 4
CONTROL_FINISH = 5
_FIELD_CONTENT_TYPE = 1
#: The fstrm library's own bounds: a control frame and a content type are small.
MAX_CONTROL_FRAME = 512
MAX_CONTENT_TYPE = 256
#: A dnstap message holds at most a query and a response of 64 KiB each, and a few fields.
DEFAULT_MAX_FRAME = 256 * 1024
#: CNAMEs followed from the query name before the chain is given up (a loop, a hostile chain).
MAX_CNAME_CHAIN = 16

# The reasons (hushflow_malformed_input_total{source="dnstap", reason}).
FRAME_TOO_LARGE = "dnstap-frame-too-large"
BAD_CONTROL_FRAME = "dnstap-bad-control-frame"
OUT_OF_ORDER = "dnstap-frame-out-of-order"
CONTENT_TYPE_REFUSED = "dnstap-content-type-refused"
BAD_PROTOBUF = "dnstap-bad-protobuf"
BAD_DNS_MESSAGE = "dnstap-bad-dns-message"
BAD_ADDRESS = "dnstap-bad-address"

# dnstap.proto, Message.Type (checked against dnstap_pb in the tests).
RESOLVER_RESPONSE = 4
CLIENT_RESPONSE = 6
FORWARDER_RESPONSE = 8
#: The responses whose answers hushflow learns; CLIENT_RESPONSE is the one sent to the pod that
#: asked (its query_address), the others are what the server itself was told upstream.
RESPONSE_KINDS = {CLIENT_RESPONSE: "client-response", RESOLVER_RESPONSE: "resolver-response",
                  FORWARDER_RESPONSE: "forwarder-response"}

_LENGTH = struct.Struct(">I")
_PAIR = struct.Struct(">II")
_A_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class FrameStreamError(Exception):
    """The byte stream is not Frame Streams as hushflow reads it: the connection is dropped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class DnstapError(Exception):
    """A data frame that is no usable dnstap message: it is skipped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def control_frame(kind: int, content_types: tuple[bytes, ...] = ()) -> bytes:
    """The bytes of a control frame (for the replies, and for senders in tests and benchmarks)."""
    body = _LENGTH.pack(kind) + b"".join(_PAIR.pack(_FIELD_CONTENT_TYPE, len(c)) + c for c in content_types)
    return _LENGTH.pack(0) + _LENGTH.pack(len(body)) + body


def data_frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _control(body: memoryview) -> tuple[int, list[bytes]]:
    if len(body) < 4:
        raise FrameStreamError(BAD_CONTROL_FRAME, f"a control frame of {len(body)} bytes has no type")
    (kind,) = _LENGTH.unpack_from(body, 0)
    types: list[bytes] = []
    at = 4
    while at < len(body):
        if len(body) - at < 8:
            raise FrameStreamError(BAD_CONTROL_FRAME, "a control frame field is cut short")
        field, length = _PAIR.unpack_from(body, at)
        at += 8
        if field != _FIELD_CONTENT_TYPE:
            raise FrameStreamError(BAD_CONTROL_FRAME, f"unknown control frame field {field}")
        if length > MAX_CONTENT_TYPE or length > len(body) - at:
            raise FrameStreamError(BAD_CONTROL_FRAME, f"a content type of {length} bytes does not fit")
        types.append(bytes(body[at:at + length]))
        at += length
    return kind, types


class FrameStreamReader:
    """The receiving end of one Frame Streams connection, without I/O.

    `feed` takes the bytes read and returns the data frames completed (payloads), the bytes to
    send back (ACCEPT, FINISH) and whether the sender has finished (STOP). The buffer never holds
    more than one frame: a length over `max_frame` is refused as soon as it is read.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self.bidirectional = False
        self.started = False
        self.finished = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes, bool]:
        buffer = self._buffer
        buffer += data
        view = memoryview(buffer)
        payloads: list[bytes] = []
        replies = b""
        at = 0
        try:
            while len(buffer) - at >= 4 and not self.finished:
                (length,) = _LENGTH.unpack_from(view, at)
                if length:
                    if length > self.max_frame:
                        raise FrameStreamError(FRAME_TOO_LARGE,
                                               f"a data frame of {length} bytes (most: {self.max_frame})")
                    if not self.started:
                        raise FrameStreamError(OUT_OF_ORDER, "a data frame before START")
                    if len(buffer) - at - 4 < length:
                        break
                    payloads.append(bytes(view[at + 4:at + 4 + length]))
                    at += 4 + length
                    continue
                if len(buffer) - at < 8:
                    break
                (length,) = _LENGTH.unpack_from(view, at + 4)
                if length > MAX_CONTROL_FRAME:
                    raise FrameStreamError(BAD_CONTROL_FRAME, f"a control frame of {length} bytes (most: "
                                           f"{MAX_CONTROL_FRAME})")
                if len(buffer) - at - 8 < length:
                    break
                kind, types = _control(view[at + 8:at + 8 + length])
                at += 8 + length
                replies += self._handshake(kind, types)
        finally:
            view.release()
            del buffer[:at]
        return payloads, replies, self.finished

    def _handshake(self, kind: int, types: list[bytes]) -> bytes:
        if kind == CONTROL_READY and not self.started and not self.bidirectional:
            if CONTENT_TYPE not in types:
                raise FrameStreamError(CONTENT_TYPE_REFUSED, f"the sender offers {_shown(types)}, not "
                                       f"{CONTENT_TYPE.decode()}")
            self.bidirectional = True
            return control_frame(CONTROL_ACCEPT, (CONTENT_TYPE,))
        if kind == CONTROL_START and not self.started:
            if types and types != [CONTENT_TYPE]:
                raise FrameStreamError(CONTENT_TYPE_REFUSED,
                                       f"START names {_shown(types)}, not {CONTENT_TYPE.decode()}")
            self.started = True
            return b""
        if kind == CONTROL_STOP and self.started:
            self.finished = True
            return control_frame(CONTROL_FINISH) if self.bidirectional else b""
        names = {CONTROL_ACCEPT: "ACCEPT", CONTROL_START: "START", CONTROL_STOP: "STOP", CONTROL_READY: "READY",
                 CONTROL_FINISH: "FINISH"}
        if kind not in names:
            raise FrameStreamError(BAD_CONTROL_FRAME, f"unknown control frame type {kind}")
        raise FrameStreamError(OUT_OF_ORDER, f"{names[kind]} out of the handshake's order")


def _shown(types: list[bytes]) -> str:
    return ", ".join(repr(t[:60]) for t in types) or "no content type"


@dataclass(frozen=True, slots=True)
class DnstapMessage:
    """What one dnstap message says. `learnable` is False for what teaches nothing (a query,
    a failure, an answer with no address): counted as ignored."""

    kind: str  # client-response, resolver-response, forwarder-response; or the other type's number
    client_ip: str  # query_address: who asked (for client-response, the pod), canonical; "" if none
    server_ip: str  # response_address: who answered, canonical; "" if none
    name: str = ""  # the question, in hushflow's one name form
    ips: tuple[str, ...] = ()  # A/AAAA of the name and its CNAME chain, answer order, no duplicates
    cnames: tuple[str, ...] = ()  # the chain followed from the name
    ttl: int = 0  # the smallest TTL of the records used, clamped
    rcode: int = 0
    identity: str = ""  # the server's dnstap identity

    @property
    def learnable(self) -> bool:
        return self.kind in RESPONSE_KINDS.values() and self.rcode == 0 and bool(self.name) and bool(self.ips)

    def dns_answer(self, client: Mapping[str, Any], client_key: str) -> DnsAnswer:
        """The answer the deny learner and the DNS knowledge take, for the endpoint that asked."""
        return DnsAnswer(name=self.name, ips=self.ips, ttl=self.ttl, client=client,
                         client_key=client_key or self.client_ip, server_ip=self.server_ip)


def _address(value: bytes) -> str:
    if not value:
        return ""
    if len(value) not in (4, 16):
        raise DnstapError(BAD_ADDRESS, f"an address of {len(value)} bytes")
    return str(ipaddress.ip_address(value))


def parse_dnstap(payload: bytes) -> DnstapMessage:
    """One data frame's dnstap message. Raises DnstapError for what is none."""
    from dnstap_pb import dnstap_pb2  # the generated module registers its schema once, when first used

    frame = dnstap_pb2.Dnstap()
    try:
        frame.ParseFromString(payload)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeWarning-turned-error of upb
        raise DnstapError(BAD_PROTOBUF, f"not a dnstap message ({type(exc).__name__})") from None
    if not frame.IsInitialized() or not frame.HasField("message"):
        raise DnstapError(BAD_PROTOBUF, "a dnstap frame without its required type or message")
    message = frame.message
    kind = RESPONSE_KINDS.get(message.type)
    identity = frame.identity[:100].decode("utf-8", "replace")
    client = _address(message.query_address)
    server = _address(message.response_address)
    if kind is None:
        return DnstapMessage(str(message.type), client, server, identity=identity)
    if not message.response_message:
        raise DnstapError(BAD_DNS_MESSAGE, f"a {kind} without its response_message")
    try:
        wire = dns.message.from_wire(message.response_message, ignore_trailing=True, one_rr_per_rrset=False)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise DnstapError(BAD_DNS_MESSAGE, f"the response is no DNS message ({type(exc).__name__}: "
                          f"{str(exc)[:80]})") from None
    return _answer_of(wire, kind, client, server, identity)


def _answer_of(wire: dns.message.Message, kind: str, client: str, server: str, identity: str) -> DnstapMessage:
    rcode = wire.rcode()
    if not wire.question:
        return DnstapMessage(kind, client, server, rcode=rcode, identity=identity)
    question = wire.question[0].name
    name = dns_name(question.to_text())
    if rcode != dns.rcode.NOERROR:
        return DnstapMessage(kind, client, server, name, rcode=rcode, identity=identity)
    # Only the records of the question's name and of the CNAME chain from it count: an answer
    # section may carry anything, and addresses of other names say nothing about this one.
    by_owner: dict[dns.name.Name, list[Any]] = {}
    for rrset in wire.answer:
        by_owner.setdefault(rrset.name, []).append(rrset)
    ips: dict[str, None] = {}
    cnames: list[str] = []
    ttls: list[int] = []
    owner = question
    seen = {owner}
    for _hop in range(MAX_CNAME_CHAIN + 1):
        target = None
        for rrset in by_owner.get(owner, ()):
            if rrset.rdtype in _A_TYPES:
                ttls.append(rrset.ttl)
                for rdata in rrset:
                    ip = canonical_ip(rdata.address)
                    if ip is not None:
                        ips[ip] = None
            elif rrset.rdtype == dns.rdatatype.CNAME and len(rrset):
                ttls.append(rrset.ttl)
                target = next(iter(rrset)).target
        if target is None or target in seen:
            break
        seen.add(target)
        cnames.append(dns_name(target.to_text()))
        owner = target
    ttl = clamp_ttl(min(ttls))[0] if ttls else 0
    return DnstapMessage(kind, client, server, name, tuple(ips), tuple(cnames), ttl, rcode, identity)
