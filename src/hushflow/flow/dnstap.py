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
  A/AAAA addresses, TTL and rcode, decoded from the wire-format response (the usual message
  directly, anything unusual with dnspython: see below).

Everything here is hostile input (whoever runs a denied domain writes its answers, whoever
can reach the socket writes the frames): a frame over `max_frame` bytes, a control frame that
is not one, a frame out of the handshake's order raise `FrameStreamError` (the connection
cannot be resynchronised and is dropped); a data frame that is no dnstap message raises
`DnstapError`. Each carries a `reason`, the `reason` label of
``hushflow_malformed_input_total{source="dnstap"}``.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.rdataclass
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
    if len(value) == 4:
        return socket.inet_ntop(socket.AF_INET, value)
    if len(value) == 16:  # inet_ntop's spelling is not always ipaddress's: the one canonical form
        return canonical_ip(socket.inet_ntop(socket.AF_INET6, value)) or ""
    raise DnstapError(BAD_ADDRESS, f"an address of {len(value)} bytes")


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
        read = _read_wire(message.response_message)
    except _Unusual:
        read = _read_with_dnspython(message.response_message)
    rcode, name, records = read
    if not name or rcode != 0:
        return DnstapMessage(kind, client, server, name, rcode=rcode, identity=identity)
    ips, cnames, ttl = _chain(name, records)
    return DnstapMessage(kind, client, server, name, ips, cnames, ttl, rcode, identity)


# -- the DNS response ----------------------------------------------------------------------------
#
# dnspython's from_wire costs ~50 us a message, more than twice all the rest of a dnstap
# message's way into the learner. The usual response (one question, plain ASCII labels, A/AAAA
# and CNAME answers) is read here directly, in a few microseconds; anything unusual (a label
# with other bytes, an extended label type, a message cut short, several questions) is read by
# dnspython instead, whose verdict stands: the two agree on every message the fast path reads
# (tests/flow/test_dnstap.py compares them).

_Record = tuple[str, int, int, str]  # owner, type, TTL, value (an address, or a CNAME's target)
_A, _AAAA, _CNAME, _IN = 1, 28, 5, 1
_HEADER = struct.Struct(">HHHHHH")
_RR = struct.Struct(">HHIH")
_PLAIN = re.compile(rb"[A-Za-z0-9_-]+\Z")
_MAX_POINTERS = 64


class _Unusual(Exception):
    """Not a message the fast path reads: dnspython decides."""


def _wire_name(wire: bytes, at: int) -> tuple[str, int]:
    labels: list[bytes] = []
    end = -1
    pointers = 0
    size = 0
    while True:
        if at >= len(wire):
            raise _Unusual
        length = wire[at]
        if length == 0:
            at += 1
            break
        if length >= 0xC0:
            if at + 1 >= len(wire) or pointers == _MAX_POINTERS:
                raise _Unusual
            if end < 0:
                end = at + 2
            pointers += 1
            at = ((length & 0x3F) << 8) | wire[at + 1]
            continue
        if length > 63:
            raise _Unusual
        label = wire[at + 1:at + 1 + length]
        size += length + 1
        if len(label) != length or size > 255 or not _PLAIN.match(label):
            raise _Unusual
        labels.append(label)
        at += 1 + length
    return b".".join(labels).decode("ascii").lower(), (end if end >= 0 else at)


def _read_wire(wire: bytes) -> tuple[int, str, list[_Record]]:
    if len(wire) < 12:
        raise _Unusual
    _id, flags, questions, answers, _ns, _ar = _HEADER.unpack_from(wire, 0)
    if questions != 1 or flags & 0x7800:  # one question, a QUERY's response (opcode 0)
        raise _Unusual
    name, at = _wire_name(wire, 12)
    at += 4
    rcode = flags & 0xF
    records: list[_Record] = []
    if rcode:
        return rcode, name, records
    aliased: set[str] = set()
    for _ in range(answers):
        owner, at = _wire_name(wire, at)
        if at + 10 > len(wire):
            raise _Unusual
        rdtype, rdclass, ttl, length = _RR.unpack_from(wire, at)
        at += 10
        if at + length > len(wire):
            raise _Unusual
        if ttl > 0x7FFFFFFF:  # RFC 2181 section 8: a TTL with its top bit set is zero (as dnspython reads it)
            ttl = 0
        if rdclass == _IN:
            if rdtype == _A and length == 4:
                records.append((owner, rdtype, ttl, socket.inet_ntop(socket.AF_INET, wire[at:at + 4])))
            elif rdtype == _AAAA and length == 16:
                records.append((owner, rdtype, ttl, socket.inet_ntop(socket.AF_INET6, wire[at:at + 16])))
            elif rdtype == _CNAME:
                target, after = _wire_name(wire, at)
                if after != at + length or owner in aliased:
                    raise _Unusual  # two CNAMEs for one name: dnspython keeps the last, and decides
                aliased.add(owner)
                records.append((owner, rdtype, ttl, target))
            elif rdtype in (_A, _AAAA):
                raise _Unusual  # an address of the wrong size: dnspython refuses the message
        at += length
    return rcode, name, records


def _read_with_dnspython(data: bytes) -> tuple[int, str, list[_Record]]:
    try:
        wire = dns.message.from_wire(data, ignore_trailing=True, one_rr_per_rrset=False)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise DnstapError(BAD_DNS_MESSAGE, f"the response is no DNS message ({type(exc).__name__}: "
                          f"{str(exc)[:80]})") from None
    if not wire.question:
        return wire.rcode(), "", []
    records: list[_Record] = []
    for rrset in wire.answer:
        if rrset.rdclass != dns.rdataclass.IN:
            continue
        owner = dns_name(rrset.name.to_text())
        if rrset.rdtype in _A_TYPES:
            records.extend((owner, int(rrset.rdtype), rrset.ttl, rdata.address) for rdata in rrset)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            records.extend((owner, _CNAME, rrset.ttl, dns_name(rdata.target.to_text())) for rdata in rrset)
    return wire.rcode(), dns_name(wire.question[0].name.to_text()), records


def _chain(name: str, records: list[_Record]) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """The addresses of `name` and of the CNAME chain from it, the chain, the smallest TTL used.
    Only these count: an answer section may carry anything, and addresses of other names say
    nothing about this one."""
    ips: dict[str, None] = {}
    cnames: list[str] = []
    ttls: list[int] = []
    owner = name
    seen = {owner}
    for _hop in range(MAX_CNAME_CHAIN + 1):
        target = None
        for record_owner, rdtype, ttl, value in records:
            if record_owner != owner:
                continue
            if rdtype == _CNAME:
                if target is None:
                    target = value
                    ttls.append(ttl)
            else:
                ttls.append(ttl)
                ip = canonical_ip(value)
                if ip is not None:
                    ips[ip] = None
        if target is None or target in seen:
            break
        seen.add(target)
        cnames.append(target)
        owner = target
    ttl = clamp_ttl(min(ttls))[0] if ttls else 0
    return tuple(ips), tuple(cnames), ttl
