"""The C converter (hushflow.flow._wiredict) against the Python one: same dict for every message.

The Python converter (upb message → dict) is the reference, itself checked byte for byte against
Hubble's output (test_proto_dict.py). The C converter reads the wire bytes directly; wherever it
disagrees with protobuf's semantics it must hand the message back (Fallback), so every input,
including hand-made wire bytes protobuf libraries never write, gives the reference's result.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import any_pb2, json_format, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hushflow.flow import proto_dict
from hushflow.flow.proto_dict import (
    ProtoDictError,
    compile_bytes_to_dict,
    response_bytes_to_event,
    response_to_event,
    wire_decoder_available,
)
from hushflow.flow.protojson import encode_event
from hushflow.proto import flow_pb2, observer_pb2

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


def reference(raw: bytes) -> dict[str, Any]:
    return response_to_event(observer_pb2.GetFlowsResponse.FromString(raw))


def same(raw: bytes) -> None:
    got = response_bytes_to_event(raw)
    want = reference(raw)
    assert got == want
    assert encode_event(got) == encode_event(want)  # key order too


def test_the_c_converter_is_built() -> None:
    # make test installs with a C compiler: a silent fall back to Python would hide its bugs.
    assert wire_decoder_available()
    assert proto_dict._wiredict is not None


def test_every_recorded_event_converts_like_the_reference() -> None:
    lines = gzip.decompress(RECORDED.read_bytes()).splitlines()
    for line in lines:
        raw = json_format.Parse(line, observer_pb2.GetFlowsResponse()).SerializeToString()
        assert encode_event(response_bytes_to_event(raw)) == line


# -- hand-made wire bytes --------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def flow_response(flow_bytes: bytes) -> bytes:
    return length_delimited(1, flow_bytes)  # GetFlowsResponse.flow = 1


FLOW = flow_pb2.Flow.DESCRIPTOR.fields_by_name


def field_tag(name: str, wire: int) -> bytes:
    return tag(FLOW[name].number, wire)


@pytest.mark.parametrize("flow_bytes", [
    # a scalar sent twice: the last wins; a zero last value is the default (omitted)
    field_tag("verdict", 0) + varint(1) + field_tag("verdict", 0) + varint(2),
    field_tag("verdict", 0) + varint(2) + field_tag("verdict", 0) + varint(0),
    # explicit zero for an implicit-presence field
    field_tag("drop_reason", 0) + varint(0),
    # an unknown enum number, a negative int32 wrapped in 10 bytes
    field_tag("verdict", 0) + varint(999),
    field_tag("verdict", 0) + varint(-5),
    # unknown fields of every wire type are skipped
    tag(9999, 0) + varint(7) + tag(9998, 1) + b"\0" * 8 + tag(9997, 5) + b"\0" * 4
    + length_delimited(9996, b"xyz") + field_tag("node_name", 2) + varint(2) + b"n1",
    # a singular message sent twice is merged by protobuf
    length_delimited(FLOW["source"].number, length_delimited(2, b"default"))
    + length_delimited(FLOW["source"].number, length_delimited(3, b"pod-a")),
    # repeated strings, and a repeated enum packed and not packed
    length_delimited(FLOW["source_names"].number, b"a.example") + length_delimited(FLOW["source_names"].number, b""),
    # empty message present; wrappers with and without their value
    length_delimited(FLOW["l4"].number, b""),
    length_delimited(FLOW["is_reply"].number, b""),
    length_delimited(FLOW["is_reply"].number, tag(1, 0) + varint(1)),
    # timestamps: in range, before year 1, after 9999, nanos out of range
    length_delimited(FLOW["time"].number, tag(1, 0) + varint(1_772_442_000) + tag(2, 0) + varint(120_000_000)),
    length_delimited(FLOW["time"].number, tag(1, 0) + varint(-62_135_596_801)),
    length_delimited(FLOW["time"].number, tag(1, 0) + varint(253_402_300_800)),
    length_delimited(FLOW["time"].number, tag(2, 0) + varint(1_000_000_000)),
    length_delimited(FLOW["time"].number, tag(1, 0) + varint(-1) + tag(2, 0) + varint(5)),
    # a field sent with the wrong wire type
    field_tag("verdict", 2) + varint(1) + b"x",
], ids=lambda b: b.hex()[:24])
def test_wire_corner_cases_convert_like_the_reference(flow_bytes: bytes) -> None:
    raw = flow_response(flow_bytes)
    try:
        want = reference(raw)
    except (DecodeError, ProtoDictError) as refused:  # bytes that are no message; a time protojson refuses
        with pytest.raises(type(refused)):
            response_bytes_to_event(raw)
        return
    assert encode_event(response_bytes_to_event(raw)) == encode_event(want)


@pytest.mark.parametrize("raw", [
    b"\x0a\x05abc",  # truncated length
    b"\x0a\x02\x10",  # truncated varint inside
    b"\x0f",  # group wire type
    flow_response(length_delimited(FLOW["node_name"].number, b"\xff\xfe")),  # invalid UTF-8
])
def test_malformed_bytes_raise_what_protobuf_raises(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        reference(raw)
    with pytest.raises(DecodeError):
        response_bytes_to_event(raw)


def test_any_is_left_to_python_and_its_errors_too() -> None:
    known = any_pb2.Any()
    known.Pack(timestamp_pb2.Timestamp(seconds=5))
    msg = observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(extensions=known))
    same(msg.SerializeToString())
    unknown = observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(
        extensions=any_pb2.Any(type_url="type.googleapis.com/no.such.Type", value=b"\x08\x01")))
    with pytest.raises(ProtoDictError):
        response_bytes_to_event(unknown.SerializeToString())


def test_other_message_types_compile_too() -> None:
    convert = compile_bytes_to_dict(flow_pb2.FlowFilter.DESCRIPTOR)
    flt = flow_pb2.FlowFilter(source_pod=["default/"], verdict=[flow_pb2.DROPPED, flow_pb2.AUDIT],
                              source_port=["53"], tcp_flags=[flow_pb2.TCPFlags(SYN=True)])
    reference_dict = proto_dict.compile_message_to_dict(flow_pb2.FlowFilter.DESCRIPTOR)(flt)
    assert convert(flt.SerializeToString()) == reference_dict


# -- a message type with every kind of field --------------------------------------------------------


def _all_types() -> Descriptor:
    """``hushflow.test.AllTypes``: every scalar type singular, repeated (packed and not) and
    ``optional``, an enum, a oneof, a nested and a recursive message, a Timestamp and wrappers."""
    from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    for dep in (timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(dep.DESCRIPTOR.serialized_pb)
    fd = descriptor_pb2.FileDescriptorProto(name="hushflow_test_all_types.proto", package="hushflow.test",
                                            syntax="proto3",
                                            dependency=["google/protobuf/timestamp.proto",
                                                        "google/protobuf/wrappers.proto"])
    fd.enum_type.add(name="Color", value=[
        descriptor_pb2.EnumValueDescriptorProto(name="COLOR_UNSET", number=0),
        descriptor_pb2.EnumValueDescriptorProto(name="RED", number=1),
        descriptor_pb2.EnumValueDescriptorProto(name="BLUE", number=-2),
    ])
    msg = fd.message_type.add(name="AllTypes")
    scalars = {
        "int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64,
        "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64, "fixed32": F.TYPE_FIXED32, "fixed64": F.TYPE_FIXED64,
        "sfixed32": F.TYPE_SFIXED32, "sfixed64": F.TYPE_SFIXED64, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE,
        "bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES,
    }
    msg.oneof_decl.add(name="choice")  # real oneofs come before the synthetic ones of `optional`
    choice = 0
    number = 1
    for name, kind in scalars.items():
        msg.field.add(name=f"s_{name}", number=number, type=kind, label=F.LABEL_OPTIONAL)
        msg.field.add(name=f"r_{name}", number=number + 1, type=kind, label=F.LABEL_REPEATED)
        msg.field.add(name=f"o_{name}", number=number + 2, type=kind, label=F.LABEL_OPTIONAL,
                      proto3_optional=True, oneof_index=len(msg.oneof_decl))
        msg.oneof_decl.add(name=f"_o_{name}")
        number += 3
    color = ".hushflow.test.Color"
    msg.field.add(name="color", number=200, type=F.TYPE_ENUM, type_name=color, label=F.LABEL_OPTIONAL)
    msg.field.add(name="colors", number=201, type=F.TYPE_ENUM, type_name=color, label=F.LABEL_REPEATED)
    msg.field.add(name="child", number=202, type=F.TYPE_MESSAGE, type_name=".hushflow.test.AllTypes",
                  label=F.LABEL_OPTIONAL)
    msg.field.add(name="children", number=203, type=F.TYPE_MESSAGE, type_name=".hushflow.test.AllTypes",
                  label=F.LABEL_REPEATED)
    msg.field.add(name="when", number=204, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                  label=F.LABEL_OPTIONAL)
    for i, wrapper in enumerate(("BoolValue", "Int64Value", "UInt32Value", "StringValue", "DoubleValue",
                                 "BytesValue")):
        msg.field.add(name=f"w_{wrapper.lower()}", number=210 + i, type=F.TYPE_MESSAGE,
                      type_name=f".google.protobuf.{wrapper}", label=F.LABEL_OPTIONAL)
    msg.field.add(name="pick_text", number=300, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, oneof_index=choice)
    msg.field.add(name="pick_number", number=301, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL,
                  oneof_index=choice)
    msg.field.add(name="pick_child", number=302, type=F.TYPE_MESSAGE, type_name=".hushflow.test.AllTypes",
                  label=F.LABEL_OPTIONAL, oneof_index=choice)
    msg.field.add(name="far", number=150000, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool.Add(fd)
    return pool.FindMessageTypeByName("hushflow.test.AllTypes")


ALL_TYPES = _all_types()


# -- generated messages ----------------------------------------------------------------------------

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type in _INTS:
        lo, hi = _INTS[f.type]
        return st.one_of(st.just(0), st.integers(lo, hi))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]), st.integers(0, 2**31 - 1))
    if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, width=32 if f.type == FieldDescriptor.TYPE_FLOAT else 64)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    return st.text(max_size=12)


@st.composite
def messages(draw: st.DrawFn, desc: Descriptor, depth: int = 0) -> dict[str, Any]:
    """Field values for a ``desc`` message: a random subset of fields, nested up to 3 levels."""
    values: dict[str, Any] = {}
    for oneof in desc.oneofs:
        if len(oneof.fields) > 1:
            chosen = draw(st.sampled_from([None, *oneof.fields]))
            if chosen is not None:
                values[chosen.name] = draw(_value(chosen, depth))
    for f in desc.fields:
        oneof = f.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            continue
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Any":
            continue  # Any: covered above (it needs a packed type)
        if draw(st.integers(0, 3)) == 0:
            values[f.name] = draw(_value(f, depth))
    return values


def _value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.message_type is not None:
        sub = f.message_type
        if sub.full_name == "google.protobuf.Timestamp":
            one: st.SearchStrategy[Any] = st.builds(
                lambda s, n: {"seconds": s, "nanos": n},
                st.integers(-62_135_596_800, 253_402_300_799), st.integers(0, 999_999_999))
        elif sub.full_name.startswith("google.protobuf.") and "value" in sub.fields_by_name:
            one = st.builds(lambda v: {"value": v}, _scalar(sub.fields_by_name["value"]))
        elif depth >= 3:
            one = st.just({})
        else:
            one = messages(sub, depth + 1)
    else:
        one = _scalar(f)
    return st.lists(one, max_size=3) if f.is_repeated else one


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        f = msg.DESCRIPTOR.fields_by_name[name]
        if f.message_type is not None:
            sub_cls = type(getattr(msg, name).add() if f.is_repeated else getattr(msg, name))
            if f.is_repeated:
                getattr(msg, name).pop()
                for v in value:
                    getattr(msg, name).append(build(sub_cls, v))
            else:
                getattr(msg, name).CopyFrom(build(sub_cls, value))
        elif f.is_repeated:
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(observer_pb2.GetFlowsResponse.DESCRIPTOR))
def test_generated_flows_convert_like_the_reference(values: dict[str, Any]) -> None:
    raw = build(observer_pb2.GetFlowsResponse, values).SerializeToString()
    assert encode_event(FLOWS_C(raw)) == encode_event(reference(raw))


ALL_TYPES_CLASS = message_factory.GetMessageClass(ALL_TYPES)
ALL_TYPES_C = proto_dict._describe(ALL_TYPES).decode  # without the fall back: it must not need it
FLOWS_C = proto_dict._describe(observer_pb2.GetFlowsResponse.DESCRIPTOR).decode
ALL_TYPES_REFERENCE = proto_dict.compile_message_to_dict(ALL_TYPES)


def test_every_field_kind_goes_through_the_c_converter() -> None:
    msg = ALL_TYPES_CLASS(s_sint64=-3, r_fixed64=[1, 2**64 - 1], o_double=0.0, color=-2, colors=[1, 7, 0],
                          pick_number=0, far="x")
    msg.when.seconds = -1
    msg.w_boolvalue.SetInParent()
    msg.child.s_float = float("inf")
    raw = msg.SerializeToString()
    # The C decoder itself, no fall back to Python (it would raise Fallback).
    assert orjson.dumps(ALL_TYPES_C(raw)) == orjson.dumps(ALL_TYPES_REFERENCE(msg))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(ALL_TYPES))
def test_generated_messages_of_every_kind_convert_like_the_reference(values: dict[str, Any]) -> None:
    msg = build(ALL_TYPES_CLASS, values)
    raw = msg.SerializeToString()
    # NaN != NaN: compare the JSON text, which also compares the key order.
    assert orjson.dumps(ALL_TYPES_C(raw)) == orjson.dumps(ALL_TYPES_REFERENCE(msg))
