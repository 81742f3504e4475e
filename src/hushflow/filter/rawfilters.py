"""FlowFilters as protojson: `--allowlist/--denylist` in, `--print-raw-filters` out.

FlowFilters are plain dicts in protojson form with proto field names, keys in flow.proto
declaration order (`{"verdict": ["DROPPED"], "event_type": [{"type": 5}]}`); uint64 values are
strings, enums are names — what `orjson.loads` gives for a filter Hubble prints. `FlowFilters`
is the pair a request carries (allowlist, denylist).

- `parse_raw_filters`: each `--allowlist/--denylist` value is a stream of JSON FlowFilters
  (proto or JSON field names, enum names or numbers, like protojson), normalised to that form.
- `flow_filter_json` / `format_raw_filters`: the byte-exact YAML of `--print-raw-filters`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hushflow.filter.pflag import FlagError, quote_with_escapes

FlowFilterDict = dict[str, Any]


@dataclass(frozen=True)
class FlowFilters:
    """The request's allowlist and denylist, in the order Hubble sends them."""

    allowlist: tuple[FlowFilterDict, ...] = ()
    denylist: tuple[FlowFilterDict, ...] = ()


def parse_raw_filters(values: Sequence[str], flag: str) -> list[FlowFilterDict]:
    """Each value is a stream of JSON FlowFilters (proto or JSON field names, like protojson)."""
    results: list[FlowFilterDict] = []
    decoder = json.JSONDecoder()
    for text in values:
        position = 0
        while True:
            while position < len(text) and text[position] in " \t\r\n":
                position += 1
            if position >= len(text):
                break
            try:
                document, position = decoder.raw_decode(text, position)
                results.append(_normalise_flow_filter(document))
            except ValueError as err:
                raise FlagError(f"invalid --{flag} flag: failed to decode '{text}': {err}") from None
    return results


def _normalise_flow_filter(document: Any) -> FlowFilterDict:
    from google.protobuf import json_format

    from hushflow.proto import flow_pb2

    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, got {json.dumps(document)}")
    message = flow_pb2.FlowFilter()
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as err:
        raise ValueError(str(err)) from None
    return message_to_protojson(message)


_INT64_TYPES = frozenset({3, 4, 6, 16, 18})  # int64, uint64, fixed64, sfixed64, sint64


def message_to_protojson(message: Any) -> dict[str, Any]:
    """A protobuf message as protojson with proto names, fields in declaration order."""
    from google.protobuf.descriptor import FieldDescriptor

    present = {descriptor.name: value for descriptor, value in message.ListFields()}
    result: dict[str, Any] = {}
    for descriptor in message.DESCRIPTOR.fields:
        if descriptor.name not in present:
            continue
        value = present[descriptor.name]

        def convert(item: Any, descriptor: Any = descriptor) -> Any:
            if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                return message_to_protojson(item)
            if descriptor.type == FieldDescriptor.TYPE_ENUM:
                enum_value = descriptor.enum_type.values_by_number.get(item)
                return enum_value.name if enum_value is not None else item
            if descriptor.type in _INT64_TYPES:
                return str(item)
            return item

        is_repeated = getattr(descriptor, "is_repeated", None)
        if not isinstance(is_repeated, bool):
            is_repeated = descriptor.label == descriptor.LABEL_REPEATED
        repeated = is_repeated
        result[descriptor.name] = [convert(item) for item in value] if repeated else convert(value)
    return result


# --------------------------------------------------------------------------------------------
# --print-raw-filters


def flow_filter_json(flow_filter: Mapping[str, Any]) -> str:
    """Compact JSON the way Hubble's `json.Marshal(filter)` writes it (HTML-escaped)."""
    text = json.dumps(flow_filter, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _yaml_printable(ch: str) -> bool:
    code = ord(ch)
    return (
        code == 0x0A
        or 0x20 <= code <= 0x7E
        or code == 0x85
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    )


def _yaml_scalar(text: str) -> str:
    # go-yaml v3 writes a string starting with '{' single-quoted, unless it holds characters
    # YAML cannot print, which force the double-quoted style.
    if all(_yaml_printable(ch) for ch in text):
        return "'" + text.replace("'", "''") + "'"
    return quote_with_escapes(
        text, _yaml_printable, short_escapes={}, byte_escaped=lambda code: code <= 0xFF, upper_hex=True
    )


def format_raw_filters(filters: FlowFilters) -> str:
    """What `hubble observe --print-raw-filters` prints, byte for byte."""
    lines: list[str] = []
    for key, flow_filters in (("allowlist", filters.allowlist), ("denylist", filters.denylist)):
        if flow_filters:
            lines.append(f"{key}:")
            lines.extend(f"    - {_yaml_scalar(flow_filter_json(ff))}" for ff in flow_filters)
    if not lines:
        return "{}\n"
    return "\n".join(lines) + "\n"
