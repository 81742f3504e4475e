"""Canonical flow dict -> ``flow.Flow`` protobuf message, fast enough for a per-flow hot path.

``json_format.ParseDict`` manages ~8k flows/s on these machines. The generated message
constructors (upb, in C) accept nested dicts, repeated lists and enum *names* directly, so only
the values whose JSON spelling differs from the constructor's are converted: timestamps (RFC 3339
strings), wrapper types (a plain JSON value), 64-bit integers (JSON strings), ``Any``. The
descriptor is walked once per builder to find where such values can occur; a flow dict is then
copied only along those paths. Anything the fast path cannot take (unknown keys from a newer
Hubble, malformed values) falls back to ``json_format.ParseDict`` with unknown fields ignored.

A builder can be limited to some top-level fields: a CEL program that only reads
``_flow.verdict`` gets a message with just that field, which is both cheaper to build and
cheaper to hand to the CEL runtime (it copies the message).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from hushflow.flow.times import FlowTimes
from hushflow.proto import flow_pb2

Convert = Callable[[Any], Any]

_INT64_TYPES = frozenset(
    (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    )
)
_WRAPPERS = frozenset(
    "google.protobuf." + n
    for n in ("BoolValue", "Int32Value", "UInt32Value", "Int64Value", "UInt64Value", "StringValue",
              "BytesValue", "FloatValue", "DoubleValue")
)


class _Unconvertible(Exception):
    """A value the fast path does not handle; the builder falls back to ParseDict."""


def _int64(v: Any) -> int:
    return int(v)


def _float(v: Any) -> float:
    return float(v)


def _wrapper(inner: Convert | None) -> Convert:
    if inner is None:
        return lambda v: {"value": v}
    return lambda v: {"value": inner(v)}


def _unconvertible(v: Any) -> Any:
    raise _Unconvertible


def _repeated(conv: Convert) -> Convert:
    return lambda values: [conv(v) for v in values]


class _TimestampParser:
    """RFC 3339 -> {"seconds", "nanos"} (one FlowTimes per builder: flows arrive in order)."""

    __slots__ = ("_parse",)

    def __init__(self) -> None:
        self._parse = FlowTimes().parse

    def __call__(self, text: Any) -> dict[str, int]:
        if not isinstance(text, str):
            raise _Unconvertible
        seconds, nanos = self._parse(text)
        return {"seconds": seconds, "nanos": nanos}


def _scalar_converter(fd: FieldDescriptor) -> Convert | None:
    if fd.type in _INT64_TYPES:
        return _int64
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return _float  # "NaN" / "Infinity" spellings
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _unconvertible  # base64 in JSON; not used by flows
    return None


def _message_plan(desc: Descriptor, timestamps: _TimestampParser,
                  memo: dict[str, tuple[tuple[str, Convert], ...]]) -> tuple[tuple[str, Convert], ...]:
    """(key, converter) for every field of ``desc`` whose JSON value needs converting."""
    if desc.full_name in memo:
        return memo[desc.full_name]
    memo[desc.full_name] = ()  # recursion guard; flow messages are not recursive in practice
    plan: list[tuple[str, Convert]] = []
    for fd in desc.fields:
        conv: Convert | None
        if fd.message_type is not None:
            name = fd.message_type.full_name
            if name == "google.protobuf.Timestamp":
                conv = timestamps
            elif name in _WRAPPERS:
                inner_fd = fd.message_type.fields_by_name["value"]
                conv = _wrapper(_scalar_converter(inner_fd))
            elif name.startswith("google.protobuf.") or fd.message_type.GetOptions().map_entry:
                conv = _unconvertible  # Any, Duration, Struct, maps: not in flows today
            else:
                sub = _message_plan(fd.message_type, timestamps, memo)
                conv = _message_converter(sub) if sub else None
        else:
            conv = _scalar_converter(fd)
        if conv is None:
            continue
        is_repeated = fd.is_repeated
        plan.append((fd.name, _repeated(conv) if is_repeated else conv))
    result = tuple(plan)
    memo[desc.full_name] = result
    return result


def _message_converter(plan: tuple[tuple[str, Convert], ...]) -> Convert:
    def convert(d: Any) -> Any:
        if not isinstance(d, dict):
            raise _Unconvertible
        out = d
        for key, conv in plan:
            v = d.get(key)
            if v is not None:
                if out is d:
                    out = dict(d)
                out[key] = conv(v)
        return out

    return convert


class FlowMessageBuilder:
    """Builds ``flow.Flow`` messages from canonical flow dicts (compile once, call per flow)."""

    def __init__(self, fields: Collection[str] | None = None) -> None:
        desc = flow_pb2.Flow.DESCRIPTOR
        if fields is not None:
            unknown = [f for f in fields if f not in desc.fields_by_name]
            if unknown:
                raise ValueError(f"not flow.Flow fields: {', '.join(sorted(unknown))}")
        self._fields: tuple[str, ...] | None = None if fields is None else tuple(fields)
        self._plan = dict(_message_plan(desc, _TimestampParser(), {}))
        self._items: tuple[tuple[str, Convert | None], ...] | None = (
            None if self._fields is None else tuple((k, self._plan.get(k)) for k in self._fields)
        )

    def __call__(self, flow: Mapping[str, Any]) -> flow_pb2.Flow:
        try:
            items = self._items
            if items is None:
                kwargs = dict(flow)
                for key in kwargs.keys() & self._plan.keys():
                    kwargs[key] = self._plan[key](kwargs[key])
            else:
                kwargs = {}
                for key, conv in items:
                    value = flow.get(key)
                    if value is not None:
                        kwargs[key] = value if conv is None else conv(value)
            return flow_pb2.Flow(**kwargs)
        except (_Unconvertible, ValueError, TypeError, KeyError, AttributeError):
            return self._slow(flow)

    def _slow(self, flow: Mapping[str, Any]) -> flow_pb2.Flow:
        keys = self._fields
        data = dict(flow) if keys is None else {k: flow[k] for k in keys if k in flow}
        msg = flow_pb2.Flow()
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
        return msg


def flow_message_from_dict(flow: Mapping[str, Any]) -> flow_pb2.Flow:
    """One-off conversion (builds a converter each call; use FlowMessageBuilder in loops)."""
    return FlowMessageBuilder()(flow)
