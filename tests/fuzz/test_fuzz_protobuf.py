"""Fuzz: protobuf wire bytes from Hubble's gRPC API, through the C and the Python converters.

Property: for any bytes, the C converter (hushflow.flow._wiredict, without its fall back) and the
Python reference (upb parse + the generated converter) give the same dict, key order included;
or C hands the message back (`Fallback`); or both reject it (`DecodeError`). What the gRPC
source calls (`response_bytes_to_event`, C with the fall back) returns a dict or raises only what
the source counts as a bad event (`ProtoDictError`, `DecodeError`). A converted event printed as
a jsonpb line reads back as the same event.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import strategies as st

from hushflow.flow import proto_dict
from hushflow.flow.proto_dict import ProtoDictError, response_bytes_to_event, response_to_event
from hushflow.flow.protojson import EVENT_KINDS, encode_event
from hushflow.flow.reader import FlowReader, ReadStats
from hushflow.proto import observer_pb2
from tests.flow.test_wiredict import tag, varint
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import mutated_bytes, sample_golden_lines, seed_lines

RESPONSE = observer_pb2.GetFlowsResponse
C_DECODE = proto_dict._describe(RESPONSE.DESCRIPTOR).decode  # the C decoder alone, no fall back
FALLBACK = proto_dict._wiredict.Fallback


def reference(raw: bytes) -> dict[str, Any]:
    return response_to_event(RESPONSE.FromString(raw))


@cache
def seed_messages() -> tuple[bytes, ...]:
    out = []
    for line in (*sample_golden_lines(150), *seed_lines()[:25], *seed_lines()[-9:]):
        try:
            message = json_format.Parse(line, RESPONSE(), ignore_unknown_fields=True)
        except json_format.ParseError:
            continue
        out.append(message.SerializeToString())
    return tuple(out)


# -- wire bytes -------------------------------------------------------------------------------------


_WIRE = {
    FieldDescriptor.TYPE_DOUBLE: 1, FieldDescriptor.TYPE_FIXED64: 1, FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_FLOAT: 5, FieldDescriptor.TYPE_FIXED32: 5, FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_STRING: 2, FieldDescriptor.TYPE_BYTES: 2, FieldDescriptor.TYPE_MESSAGE: 2,
}
_INTERESTING_INTS = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**31),
                     -62_135_596_801, -62_135_596_800, 253_402_300_799, 253_402_300_800, 999_999_999,
                     1_000_000_000, -1_000_000_000)
ints = st.one_of(st.sampled_from(_INTERESTING_INTS), st.integers(-(2**63), 2**64 - 1), st.integers(0, 300))
_utf8 = st.text(max_size=12).map(str.encode)
text_bytes = st.one_of(_utf8, _utf8, _utf8, _utf8, st.binary(max_size=12),
                       st.sampled_from([b"DROPPED", b"\xff", b"\xc3", b"10.0.0.1", b"fe80::1%eth0"]))


def _payload(draw: st.DrawFn, wire: int, field: FieldDescriptor | None, depth: int, clean: bool) -> bytes:
    if wire == 0:
        if not clean and draw(st.integers(0, 15)) == 0:  # an over-long varint (11 bytes), or one cut short
            return draw(st.sampled_from([b"\xff" * 10 + b"\x01", b"\x80", b"\xff\xff"]))
        return varint(draw(ints))
    if wire == 1:
        return draw(ints).to_bytes(9, "little", signed=True)[:8]
    if wire == 5:
        return (draw(ints) & 0xFFFFFFFF).to_bytes(4, "little")
    if field is not None and field.message_type is not None and depth < 4:
        body = draw(wire_message(field.message_type, depth + 1, clean))
    elif field is not None and field.is_repeated and field.type not in _WIRE:  # packed varints
        body = b"".join(varint(draw(ints)) for _ in range(draw(st.integers(0, 4))))
    else:
        body = draw(_utf8 if clean else text_bytes)
    length = len(body)
    if not clean and draw(st.integers(0, 31)) == 0:  # a length that lies
        length = draw(st.sampled_from([length + 1, max(0, length - 1), 2**31, 2**64 - 1]))
    return varint(length) + body


@st.composite
def wire_message(draw: st.DrawFn, desc: Descriptor, depth: int = 0, clean: bool = False) -> bytes:
    """A message of `desc` written field by field: the right wire type mostly, sometimes the
    wrong one, unknown field numbers, fields repeated (last wins, messages merge). `clean`: only
    what protobuf libraries write (each singular field once, the right wire types, UTF-8 text),
    so that the C converter handles it itself instead of handing it back."""
    fields = list(desc.fields)
    out = []
    written: set[int] = set()
    for _ in range(draw(st.integers(0, 8 if depth == 0 else 4))):
        field: FieldDescriptor | None = draw(st.sampled_from(fields)) if fields else None
        if field is None or (clean and not field.is_repeated and field.number in written):
            continue
        number = field.number
        written.add(number)
        if not clean and draw(st.integers(0, 19)) == 0:
            number = draw(st.sampled_from([1, 2, 15, 16, 1000, 2**29 - 1, 19000]))
            field = desc.fields_by_number.get(number)
        wire = _WIRE.get(field.type, 0) if field is not None else draw(st.sampled_from([0, 1, 2, 5]))
        if not clean and draw(st.integers(0, 19)) == 0:
            wire = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        payload = _payload(draw, wire, field, depth, clean) if wire in (0, 1, 2, 5) else b""
        out.append(tag(number, wire) + payload)
    return b"".join(out)


protobuf_bytes = st.one_of(
    st.sampled_from(seed_messages()),
    st.sampled_from(seed_messages()).flatmap(lambda raw: mutated_bytes(raw, max_mutations=3)),
    wire_message(RESPONSE.DESCRIPTOR),
    wire_message(RESPONSE.DESCRIPTOR, clean=True),
    # a recorded flow with generated fields appended (a singular message sent again merges)
    st.tuples(st.sampled_from(seed_messages()), wire_message(RESPONSE.DESCRIPTOR)).map(b"".join),
    st.binary(max_size=64),
)


@fuzz_target(protobuf_bytes, ci_examples=800)
def test_fuzz_protobuf_converters_agree(raw: bytes) -> None:
    """C and Python agree, C falls back, or both reject; the gRPC source's converter never
    raises what it does not count; an event prints as a line that reads back the same."""
    try:
        want: dict[str, Any] | None = reference(raw)
        rejected: type[Exception] | None = None
    except (DecodeError, ProtoDictError) as exc:
        want, rejected = None, type(exc)
    try:
        got = C_DECODE(raw)
    except FALLBACK:
        note("C fell back")
    except (DecodeError, ProtoDictError) as exc:  # an Any is converted by Python, inside C too
        # Both refuse (which error first depends on the order the fields are read in).
        assert rejected is not None, f"C raised {type(exc).__name__}: {exc}; the reference converted"
        note("both rejected")
    else:
        assert want is not None, f"C converted bytes the reference rejects ({rejected})"
        assert orjson.dumps(got) == orjson.dumps(want)
        note("C converted")
    try:
        event = response_bytes_to_event(raw)
    except (DecodeError, ProtoDictError):
        assert rejected is not None
        return
    assert want is not None
    assert orjson.dumps(event) == orjson.dumps(want)
    if not any(kind in event for kind in EVENT_KINDS):
        note("no event in the response")  # the gRPC source passes over it; no line to print
        return
    line = encode_event(event)
    stats = ReadStats()
    (again,) = FlowReader(["-"], stdin=io.BytesIO(line), stats=stats)
    assert again.data == event, (line, again.data)
