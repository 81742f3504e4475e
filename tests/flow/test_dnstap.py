"""hushflow.flow.dnstap: Frame Streams read without I/O, and dnstap messages parsed into answers."""

from __future__ import annotations

import ipaddress
import struct

import dns.message
import dns.rcode
import dns.rrset
import fstrm
import pytest
from dnstap_pb import dnstap_pb2

from hushflow.flow import dnstap
from hushflow.flow.dnstap import (
    CONTENT_TYPE,
    DnstapError,
    FrameStreamError,
    FrameStreamReader,
    control_frame,
    data_frame,
    parse_dnstap,
)

POD = "10.0.1.23"
SERVER = "10.96.0.10"


def response(name: str, *records: str, rcode: int = dns.rcode.NOERROR) -> bytes:
    query = dns.message.make_query(name, "A")
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for text in records:
        owner, ttl, rdclass, rdtype, data = text.split(maxsplit=4)
        reply.answer.append(dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, data))
    return reply.to_wire()


def frame(wire: bytes | None, kind: int = dnstap_pb2.Message.CLIENT_RESPONSE, client: str = POD,
          server: str = SERVER, raw_client: bytes | None = None) -> bytes:
    message = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE, identity=b"coredns-0")
    message.message.type = kind
    message.message.query_address = raw_client if raw_client is not None else ipaddress.ip_address(client).packed
    message.message.response_address = ipaddress.ip_address(server).packed
    if wire is not None:
        message.message.response_message = wire
    return message.SerializeToString()


def test_the_message_types_hushflow_names_are_dnstap_protos():
    assert dnstap.CLIENT_RESPONSE == dnstap_pb2.Message.CLIENT_RESPONSE == 6
    assert dnstap.RESOLVER_RESPONSE == dnstap_pb2.Message.RESOLVER_RESPONSE == 4
    assert dnstap.FORWARDER_RESPONSE == dnstap_pb2.Message.FORWARDER_RESPONSE == 8


@pytest.mark.parametrize(
    ("case", "payload", "expected"),
    [
        ("an A answer", frame(response("Ingest.Telemetry.Example.com.", "ingest.telemetry.example.com. 60 IN A 198.51.100.77")),
         ("ingest.telemetry.example.com", ("198.51.100.77",), (), 60, True)),
        ("AAAA in canonical spelling", frame(response("v6.example.", "v6.example. 30 IN AAAA 2001:DB8:0::1")),
         ("v6.example", ("2001:db8::1",), (), 30, True)),
        ("a CNAME chain: the chain's addresses, the smallest TTL",
         frame(response("a.example.", "a.example. 300 IN CNAME b.cdn.example.", "b.cdn.example. 300 IN CNAME c.cdn.example.",
                        "c.cdn.example. 20 IN A 192.0.2.5", "c.cdn.example. 20 IN A 192.0.2.6")),
         ("a.example", ("192.0.2.5", "192.0.2.6"), ("b.cdn.example", "c.cdn.example"), 20, True)),
        ("addresses of a name outside the chain are left out",
         frame(response("a.example.", "a.example. 60 IN A 192.0.2.1", "partner.example. 60 IN A 192.0.2.99")),
         ("a.example", ("192.0.2.1",), (), 60, True)),
        ("a CNAME loop ends", frame(response("a.example.", "a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME a.example.")),
         ("a.example", (), ("b.example",), 60, False)),
        ("NXDOMAIN teaches nothing", frame(response("gone.example.", rcode=dns.rcode.NXDOMAIN)),
         ("gone.example", (), (), 0, False)),
        ("a CNAME with no address teaches nothing", frame(response("a.example.", "a.example. 60 IN CNAME b.example.")),
         ("a.example", (), ("b.example",), 60, False)),
        ("a huge TTL is clamped", frame(response("a.example.", "a.example. 2147483647 IN A 192.0.2.1")),
         ("a.example", ("192.0.2.1",), (), 86_400, True)),
        ("a query is no answer", frame(None, kind=dnstap_pb2.Message.CLIENT_QUERY), ("", (), (), 0, False)),
    ],
)
def test_parse(case, payload, expected):
    message = parse_dnstap(payload)
    assert (message.name, message.ips, message.cnames, message.ttl, message.learnable) == expected, case


def test_the_answer_is_keyed_by_who_asked():
    message = parse_dnstap(frame(response("a.example.", "a.example. 60 IN A 192.0.2.1")))
    assert (message.kind, message.client_ip, message.server_ip, message.identity) == (
        "client-response", POD, SERVER, "coredns-0")
    answer = message.dns_answer({"namespace": "ns", "pod_name": "p"}, "ns/p")
    assert (answer.name, answer.ips, answer.ttl, answer.client_key, answer.server_ip) == (
        "a.example", ("192.0.2.1",), 60, "ns/p", SERVER)
    assert message.dns_answer({}, "").client_key == POD  # unknown: keyed by its address


@pytest.mark.parametrize(
    ("case", "payload", "reason"),
    [
        ("not protobuf", b"\xff\xff\xff\xff garbage", dnstap.BAD_PROTOBUF),
        ("no message", dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE).SerializeToString(), dnstap.BAD_PROTOBUF),
        ("empty", b"", dnstap.BAD_PROTOBUF),
        ("truncated DNS wire", frame(response("a.example.", "a.example. 60 IN A 192.0.2.1")[:-3]), dnstap.BAD_DNS_MESSAGE),
        ("a response without the DNS message", frame(None), dnstap.BAD_DNS_MESSAGE),
        ("an address of 5 bytes",
         frame(response("a.example.", "a.example. 60 IN A 192.0.2.1"), raw_client=b"\x01\x02\x03\x04\x05"),
         dnstap.BAD_ADDRESS),
    ],
)
def test_malformed_messages_raise_with_a_reason(case, payload, reason):
    with pytest.raises(DnstapError) as raised:
        parse_dnstap(payload)
    assert raised.value.reason == reason, case


# -- Frame Streams -----------------------------------------------------------------------------------


def test_a_bidirectional_session_sent_by_the_fstrm_package():
    codec = fstrm.FstrmCodec()
    reader = FrameStreamReader()
    payloads, replies, finished = reader.feed(codec.encode_ctrlready(CONTENT_TYPE))
    assert (payloads, finished) == ([], False)
    assert codec.is_ctrlaccept(replies)  # what a sender expects back
    stream = codec.encode_ctrlstart(CONTENT_TYPE) + b"".join(codec.encode_data(b"m%d" % i) for i in range(3))
    stream += codec.encode(fstrm.FSTRM_CONTROL_STOP)
    got: list[bytes] = []
    for i in range(0, len(stream), 5):  # in pieces, as a socket delivers
        payloads, replies, finished = reader.feed(stream[i:i + 5])
        got += payloads
    assert got == [b"m0", b"m1", b"m2"] and finished
    assert replies == control_frame(dnstap.CONTROL_FINISH)


def test_a_unidirectional_session_needs_no_handshake():
    reader = FrameStreamReader()
    stream = control_frame(dnstap.CONTROL_START, (CONTENT_TYPE,)) + data_frame(b"x") + control_frame(dnstap.CONTROL_STOP)
    assert reader.feed(stream) == ([b"x"], b"", True)


@pytest.mark.parametrize(
    ("case", "stream", "reason"),
    [
        ("an oversized data frame is refused from its length", control_frame(dnstap.CONTROL_START)
         + struct.pack(">I", 10_000_000), dnstap.FRAME_TOO_LARGE),
        ("data before START", data_frame(b"x"), dnstap.OUT_OF_ORDER),
        ("an oversized control frame", struct.pack(">II", 0, 100_000), dnstap.BAD_CONTROL_FRAME),
        ("an unknown control type", control_frame(99), dnstap.BAD_CONTROL_FRAME),
        ("a control frame with no type", struct.pack(">II", 0, 2) + b"ab", dnstap.BAD_CONTROL_FRAME),
        ("a field longer than its frame", struct.pack(">IIIII", 0, 12, 4, 1, 400), dnstap.BAD_CONTROL_FRAME),
        ("an unknown field", struct.pack(">IIIII", 0, 12, 4, 7, 0), dnstap.BAD_CONTROL_FRAME),
        ("another content type", control_frame(dnstap.CONTROL_READY, (b"protobuf:other",)), dnstap.CONTENT_TYPE_REFUSED),
        ("STOP before START", control_frame(dnstap.CONTROL_STOP), dnstap.OUT_OF_ORDER),
        ("a second START", control_frame(dnstap.CONTROL_START) * 2, dnstap.OUT_OF_ORDER),
    ],
)
def test_hostile_streams_raise_with_a_reason(case, stream, reason):
    with pytest.raises(FrameStreamError) as raised:
        FrameStreamReader(max_frame=1024).feed(stream)
    assert raised.value.reason == reason, case


def test_the_buffer_never_holds_more_than_a_frame():
    reader = FrameStreamReader(max_frame=1024)
    reader.feed(control_frame(dnstap.CONTROL_START))
    reader.feed(struct.pack(">I", 1000) + b"a" * 999)  # one byte short: held
    assert len(reader._buffer) == 1003
    assert reader.feed(b"a") == ([b"a" * 1000], b"", False)
    assert len(reader._buffer) == 0


# -- the fast reader of DNS responses against dnspython --------------------------------------------------

WIRES = [
    response("Ingest.Telemetry.Example.com.", "ingest.telemetry.example.com. 60 IN A 198.51.100.77"),
    response("v6.example.", "v6.example. 30 IN AAAA 2001:DB8:0::1", "v6.example. 30 IN AAAA ::ffff:192.0.2.1"),
    response("a.example.", "a.example. 300 IN CNAME B.cdn.example.", "b.cdn.example. 20 IN A 192.0.2.5",
             "b.cdn.example. 20 IN A 192.0.2.6", "other.example. 5 IN A 192.0.2.7"),
    response("a.example.", "a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME a.example."),
    response("gone.example.", rcode=dns.rcode.NXDOMAIN),
    response("a.example.", "a.example. 60 IN TXT hello", "a.example. 60 IN A 192.0.2.2"),
    response("_srv._tcp.a-b.example.", "_srv._tcp.a-b.example. 60 IN A 192.0.2.3"),
]


@pytest.mark.parametrize("wire", WIRES)
def test_the_fast_reader_agrees_with_dnspython(wire):
    fast = dnstap._read_wire(wire)
    slow = dnstap._read_with_dnspython(wire)
    assert fast[:2] == slow[:2]
    assert dnstap._chain(fast[1], fast[2]) == dnstap._chain(slow[1], slow[2])


@pytest.mark.parametrize(
    ("case", "wire", "expected"),
    [
        ("a label with a byte no name form has", response("a\\032b.example.", "a\\032b.example. 60 IN A 192.0.2.1"),
         ("a\\032b.example", ("192.0.2.1",))),
        ("two questions (of the root)", b"\x00\x01\x81\x80\x00\x02" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01" * 2,
         ("", ())),
        ("cut short", WIRES[0][:-2], None),
        ("a compression loop", b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", None),
    ],
)
def test_what_the_fast_reader_does_not_read_goes_to_dnspython(case, wire, expected):
    with pytest.raises(dnstap._Unusual):
        dnstap._read_wire(wire)
    if expected is None:
        with pytest.raises(DnstapError) as raised:
            parse_dnstap(frame(wire))
        assert raised.value.reason == dnstap.BAD_DNS_MESSAGE, case
    else:
        message = parse_dnstap(frame(wire))
        assert (message.name, message.ips) == expected, case


# -- any bytes at all ----------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_any_byte_stream_gives_frames_or_a_frame_stream_error(pieces, started):
    reader = FrameStreamReader(max_frame=256)
    prefix = control_frame(dnstap.CONTROL_START) if started else b""
    try:
        for piece in [prefix, *pieces]:
            payloads, _replies, _finished = reader.feed(piece)
            assert all(len(payload) <= 256 for payload in payloads)
    except FrameStreamError as exc:
        assert exc.reason.startswith("dnstap-")
    assert len(reader._buffer) <= 256 + 8


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_dns_payload_gives_a_message_or_a_dnstap_error(wire):
    try:
        message = parse_dnstap(frame(wire))
    except DnstapError as exc:
        assert exc.reason == dnstap.BAD_DNS_MESSAGE
    else:
        assert all(dnstap.canonical_ip(ip) == ip for ip in message.ips)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(WIRES) - 1), st.integers(0, 200), st.integers(0, 255))
def test_a_flipped_byte_of_a_response_gives_the_same_as_dnspython_or_an_error(which, position, value):
    wire = bytearray(WIRES[which])
    wire[position % len(wire)] = value
    try:
        fast = dnstap._read_wire(bytes(wire))
    except dnstap._Unusual:
        return
    try:
        slow = dnstap._read_with_dnspython(bytes(wire))
    except DnstapError:
        return  # dnspython refuses what the fast path read: a difference only in how strict
    assert fast[:2] == slow[:2]
    if fast[0] == 0:  # the records only count in a NOERROR answer
        assert dnstap._chain(fast[1], fast[2]) == dnstap._chain(slow[1], slow[2])
