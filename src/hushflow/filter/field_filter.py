"""Shared vocabulary of the FlowFilter compiler: the error type, compiled field filters, and
helpers every family of fields uses (enum sets, bytes needles for the line pre-check).

A *flow dict* is the ``"flow"`` object of a canonical Hubble event: proto field names, enums as
name strings (numbers only for values the schema does not know), 64-bit integers as strings,
default values omitted.  Field matchers take that dict; they are built once per FlowFilter and
must not parse, compile or allocate much per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import EnumDescriptor

FlowDict = Mapping[str, Any]
FieldMatch = Callable[[FlowDict], bool]

# A necessary condition on the raw bytes of a canonical line: every clause must have at least
# one of its needles in the line (AND of ORs). An empty tuple means "no condition".
Needles = tuple[tuple[bytes, ...], ...]


class FilterError(ValueError):
    """An invalid FlowFilter. ``str(error)`` is the message Hubble prints for the same filter."""


# Relative evaluation costs; fields of one FlowFilter are checked cheapest first so that the
# expensive ones (regexes, CEL) only run on flows that passed everything else.
COST_LOOKUP = 1
COST_STRING = 2
COST_SCAN = 3
COST_LABELS = 4
COST_REGEX = 6
COST_URL = 8
COST_CEL = 100


@dataclass(frozen=True, slots=True)
class FieldFilter:
    """One set FlowFilter field, compiled."""

    field: str
    match: FieldMatch
    cost: int
    needles: Needles = ()


def enum_members(enum: EnumDescriptor, values: Iterable[int]) -> frozenset[str | int]:
    """The spellings a flow dict may use for these enum values: the name and the number.

    Canonical lines carry names; protojson writes the number only for values missing from the
    schema, so both are accepted.
    """
    out: set[str | int] = set()
    for number in values:
        out.add(number)
        value = enum.values_by_number.get(number)
        if value is not None:
            out.add(value.name)
    return frozenset(out)


def enum_name(enum: EnumDescriptor, number: int) -> str | None:
    value = enum.values_by_number.get(number)
    return None if value is None else value.name


# Strings whose JSON encoding is the string itself between quotes, with no escaping by Go's
# protojson or json.Encoder (which also escapes <, > and &). Needles are only built from these,
# which keeps the pre-check provably exact about what the canonical bytes contain.
_JSON_SAFE = re.compile(r"[A-Za-z0-9 ._:/@+=,;~*#$%!?()\[\]{}^|-]*")


def json_safe(text: str) -> bool:
    return _JSON_SAFE.fullmatch(text) is not None


def quoted(text: str) -> bytes:
    """``"text"`` as bytes; only call with :func:`json_safe` text."""
    return b'"' + text.encode() + b'"'


def key_string(key: str, text: str) -> bytes:
    """``"key":"text"`` as it appears in a canonical line (``text`` must be json_safe)."""
    return b'"' + key.encode() + b'":' + quoted(text)


def one_clause(needles: Sequence[bytes] | None) -> Needles:
    """A single OR-clause, or no condition when any alternative has no needle (None)."""
    if not needles:
        return ()
    return (tuple(dict.fromkeys(needles)),)


def any_of(predicates: Sequence[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """OR of predicates, specialised for the common one-predicate case."""
    if len(predicates) == 1:
        return predicates[0]
    preds = tuple(predicates)

    def match_any(value: Any) -> bool:
        for pred in preds:
            if pred(value):
                return True
        return False

    return match_any
