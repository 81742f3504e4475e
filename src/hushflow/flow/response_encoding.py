"""An enriched event dict → the serialized ``GetFlowsResponse`` that ``run --serve`` sends.

The general way, ``json_format.ParseDict`` then ``SerializeToString``, is pure Python and costs
~210 µs a flow (benchmarks/bench_serve.py): at most ~5k flows/s through the whole pipeline.

A flow from the gRPC source arrives as protobuf bytes, and the enrichment only ever *adds* to it:
the attribution writes ``<dir>_allowed_by`` / ``<dir>_denied_by`` and ``policy_log`` as Cilium's
list followed by hushflow's entries (engine/attribution.py: ``cilium_entries + entries``). So the
response is the received bytes, untouched, followed by a second ``flow`` field (1) holding only
the added entries of those repeated fields. Protobuf parses a message field that occurs twice by
merging the second into the first, and a repeated field's elements by appending: the result is
exactly the enriched flow. Nothing is set twice except those repeated fields (a singular field
set twice would mean last-wins, which is never written here).

Before taking that way, :func:`encode_response` checks that the dict really is the received flow
plus such a suffix: it decodes the received bytes again (the C converter, ~5 µs) and compares,
field by field, everything but the five lists, and that each list starts with what was received.
The added entries must be of the shapes the attribution writes (strings; Policy dicts of
strings, a list of string labels and an integer revision); anything else — a dict changed in
another way, a hostile value, no received bytes (a file source) — goes the general way, so the
answer is always what ``ParseDict`` makes of the dict, or None where it refuses it.

Unknown fields in the received bytes (a Hubble newer than hushflow's .proto) are passed on as
received; the general way drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from hushflow.flow.proto_dict import ProtoDictError, response_bytes_to_event
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS
from hushflow.proto import flow_pb2, observer_pb2

__all__ = ["APPENDED_FIELDS", "encode_response", "encode_response_dict"]

_FLOW = flow_pb2.Flow.DESCRIPTOR
#: The repeated Flow fields the enrichment extends (and the only ones it writes).
APPENDED_FIELDS = ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by", "policy_log")
_UINT64_MAX = (1 << 64) - 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int) -> bytes:
    return _varint(number << 3 | 2)  # wire type 2: length-delimited


_RESPONSE_FLOW_TAG = _tag(observer_pb2.GetFlowsResponse.DESCRIPTOR.fields_by_name["flow"].number)


def _policy_fields() -> dict[str, tuple[bytes, int, bool]]:
    """Policy's fields: name → (tag, type, repeated), for the string and uint64 fields it has
    (any other field of a future .proto is not in the table: an entry that has it goes the general way)."""
    table: dict[str, tuple[bytes, int, bool]] = {}
    for f in flow_pb2.Policy.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            table[f.name] = (_tag(f.number), f.type, f.is_repeated)
        elif f.type == FieldDescriptor.TYPE_UINT64 and not f.is_repeated:
            table[f.name] = (_varint(f.number << 3), f.type, False)  # wire type 0: varint
    return table


_POLICY_FIELDS = _policy_fields()
_FIELD_TAGS = {name: _tag(_FLOW.fields_by_name[name].number) for name in APPENDED_FIELDS}


class _NotAppendable(Exception):
    """The dict is not the received flow plus appended entries: encode it the general way."""


def _string(value: Any) -> bytes:
    if type(value) is not str:
        raise _NotAppendable
    return value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError: the general way


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _uint64(value: Any) -> int:
    # The forms ParseDict takes for a uint64 that are also unambiguous: an int (not a bool) or a
    # string of ASCII digits (protojson writes 64-bit integers as strings).
    if type(value) is int:
        number = value
    elif type(value) is str and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise _NotAppendable
    if not 0 <= number <= _UINT64_MAX:
        raise _NotAppendable
    return number


def _policy(entry: Any) -> bytes:
    if type(entry) is not dict:
        raise _NotAppendable
    out = bytearray()
    for key, value in entry.items():
        spec = _POLICY_FIELDS.get(key)
        if spec is None:
            raise _NotAppendable
        tag, kind, repeated = spec
        if kind == FieldDescriptor.TYPE_UINT64:
            number = _uint64(value)
            if number:
                out += tag + _varint(number)
        elif repeated:
            if type(value) is not list:
                raise _NotAppendable
            for item in value:
                out += _length_delimited(tag, _string(item))
        else:
            text = _string(value)
            if text:
                out += _length_delimited(tag, text)
    return bytes(out)


def _appended(flow: dict[str, Any], received: dict[str, Any]) -> bytes:
    """The Flow bytes of what `flow` adds to `received` (both decoded flows). Raises
    _NotAppendable unless `flow` is `received` with entries appended to APPENDED_FIELDS."""
    out = bytearray()
    for name in APPENDED_FIELDS:
        if name not in flow:
            continue
        value = flow[name]
        before = received.get(name, [])
        if type(value) is not list or value[:len(before)] != before:
            raise _NotAppendable
        tag = _FIELD_TAGS[name]
        for item in value[len(before):]:
            out += _length_delimited(tag, _string(item) if name == "policy_log" else _policy(item))
        received[name] = value  # so the comparison below sees the same lists
    if received != flow:  # any other field changed, added or removed
        raise _NotAppendable
    return bytes(out)


def encode_response(data: Mapping[str, Any], received: bytes | None) -> bytes | None:
    """The GetFlowsResponse bytes of the event dict `data`; `received`: the bytes it was decoded
    from (before enrichment), when it came from gRPC. None where `data` does not encode (hostile
    input); never raises for any dict."""
    if received is not None:
        try:
            return _append_to_received(data, received)
        except (_NotAppendable, ProtoDictError, DecodeError, *FLOW_SHAPE_ERRORS):
            pass
    return encode_response_dict(data)


def _append_to_received(data: Mapping[str, Any], received: bytes) -> bytes:
    event = response_bytes_to_event(received)
    flow, received_flow = data.get("flow"), event.get("flow")
    if type(flow) is not dict or type(received_flow) is not dict:
        raise _NotAppendable
    added = _appended(flow, received_flow)
    event["flow"] = flow
    if event != data:  # node_name, time
        raise _NotAppendable
    if not added:
        return received
    return received + _length_delimited(_RESPONSE_FLOW_TAG, added)


def encode_response_dict(data: Mapping[str, Any]) -> bytes | None:
    """The general way: ParseDict and serialize (unknown keys ignored, as Hubble's clients
    do). None where protobuf refuses the dict."""
    try:
        message = json_format.ParseDict(data, observer_pb2.GetFlowsResponse(), ignore_unknown_fields=True)
        return message.SerializeToString()
    except (json_format.ParseError, *FLOW_SHAPE_ERRORS):
        return None
