"""The canonical JSON form of Hubble events, and the conversion of every other spelling into it.

Canonical = what ``hubble observe -o jsonpb`` prints: Go protojson with ``UseProtoNames``
(proto field names, enum names, 64-bit integers as strings, default values omitted, fields in
.proto declaration order), one ``GetFlowsResponse``/``ExportEvent`` wrapper per line, written by
Go's ``json.Encoder`` (``<``, ``>``, ``&``, U+2028, U+2029 escaped).

Other spellings accepted (and converted): lowerCamel JSON names, enums by number, 64-bit
integers as numbers, 32-bit integers as strings, ``null`` for defaults, non-canonical timestamps,
and the legacy ``-o json`` bare Flow (wrapped as ``{"flow": f, "node_name": f.node_name, "time":
f.time}``). The conversion is driven by the descriptors in :mod:`hushflow.proto`, built once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from hushflow.flow.times import format_timestamp, parse_timestamp
from hushflow.policy.source import printable
from hushflow.proto import EXPORT_EVENT_DESCRIPTOR, FLOW_DESCRIPTOR

try:  # built at install when a C compiler is there; without it nothing is proven from bytes
    from hushflow.flow import _jsonpb_proof
except ImportError:  # pragma: no cover - the fallback is tested by forcing it
    _jsonpb_proof = None  # type: ignore[assignment]

#: The oneof members of the event wrapper, in declaration order.
EVENT_KINDS = ("flow", "node_status", "lost_events", "agent_event", "debug_event")


class ProtoJSONError(ValueError):
    """A value that is not valid protojson for its field. The message starts with the field path."""


#: What a stage raises when a flow holds a value of a shape it did not expect (a string where an
#: object belongs, a list of numbers for labels, a time that is no time). The reader's fast path
#: trusts the values below the first level of a line Hubble wrote (checking them all would cost
#: more than parsing the line), so a stage may meet such a value; the flow is then skipped and
#: reported with :func:`unprocessable_reason`, never allowed to end the command.
FLOW_SHAPE_ERRORS: tuple[type[BaseException], ...] = (
    ArithmeticError, AttributeError, LookupError, RecursionError, TypeError, ValueError,
)

#: Deepest nesting accepted inside an opaque value (``extensions``): far more than any real
#: ``Any`` holds, and well inside what the JSON encoder can write back.
MAX_OPAQUE_DEPTH = 64


@dataclass(slots=True)
class Normalized:
    event: dict[str, Any]
    changed: bool
    """True when the input was not already canonical (so its bytes must be re-encoded)."""
    unknown_fields: list[str] = field(default_factory=list)


# -- schema ------------------------------------------------------------------------------------

_INT32_TYPES = frozenset(
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
)
_UINT32_TYPES = frozenset({FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32})
_INT64_TYPES = frozenset(
    {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
)
_UINT64_TYPES = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
           "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}
_WRAPPERS = {
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.Int32Value": "int32",
    "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.Int64Value": "int64",
    "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.FloatValue": "float",
    "google.protobuf.DoubleValue": "float",
    "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "string",
}
_OPAQUE = frozenset(
    {"google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
_STRINGLIKE = frozenset(
    {"google.protobuf.Duration", "google.protobuf.FieldMask"}
)


@dataclass(slots=True)
class _Field:
    name: str
    index: int
    kind: str  # bool int32 uint32 int64 uint64 float string enum message timestamp opaque stringlike
    repeated: bool
    presence: bool  # explicit presence: zero values are printed
    oneof: str | None
    enum_names: frozenset[str] = frozenset()
    enum_zero: str = ""
    enum_by_number: Mapping[int, str] = field(default_factory=dict)
    enum_full_name: str = ""
    message: _Message | None = None


@dataclass(slots=True)
class _Message:
    full_name: str
    by_key: dict[str, _Field] = field(default_factory=dict)


def _enum_info(e: EnumDescriptor) -> tuple[frozenset[str], str, dict[int, str]]:
    by_number: dict[int, str] = {}
    for v in e.values:
        by_number.setdefault(v.number, v.name)
    return frozenset(v.name for v in e.values), by_number.get(0, ""), by_number


def _build(desc: Descriptor, memo: dict[str, _Message]) -> _Message:
    if desc.full_name in memo:
        return memo[desc.full_name]
    msg = _Message(desc.full_name)
    memo[desc.full_name] = msg
    for i, f in enumerate(desc.fields):
        repeated = bool(f.is_repeated)
        oneof = f.containing_oneof.name if f.containing_oneof is not None else None
        presence = bool(f.has_presence) and not repeated
        fld = _Field(f.name, i, "string", repeated, presence, oneof)
        t = f.type
        if t == FieldDescriptor.TYPE_BOOL:
            fld.kind = "bool"
        elif t in _INT32_TYPES:
            fld.kind = "int32"
        elif t in _UINT32_TYPES:
            fld.kind = "uint32"
        elif t in _INT64_TYPES:
            fld.kind = "int64"
        elif t in _UINT64_TYPES:
            fld.kind = "uint64"
        elif t in _FLOAT_TYPES:
            fld.kind = "float"
        elif t == FieldDescriptor.TYPE_ENUM:
            fld.kind = "enum"
            fld.enum_names, fld.enum_zero, fld.enum_by_number = _enum_info(f.enum_type)
            fld.enum_full_name = f.enum_type.full_name
        elif t in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            name = f.message_type.full_name
            if name == "google.protobuf.Timestamp":
                fld.kind = "timestamp"
            elif name in _WRAPPERS:
                fld.kind = _WRAPPERS[name]
                fld.presence = True
            elif name in _OPAQUE or f.message_type.GetOptions().map_entry:
                fld.kind = "opaque"
            elif name in _STRINGLIKE:
                fld.kind = "stringlike"
            else:
                fld.kind = "message"
                fld.message = _build(f.message_type, memo)
            fld.presence = fld.presence or not repeated
        msg.by_key[f.name] = fld
        if f.json_name != f.name:
            msg.by_key.setdefault(f.json_name, fld)
    return msg


@cache
def _event_schema() -> _Message:
    """The ExportEvent schema (a superset of GetFlowsResponse). Immutable once built."""
    return _build(EXPORT_EVENT_DESCRIPTOR, {})


# -- timestamps --------------------------------------------------------------------------------

# -- normalization -----------------------------------------------------------------------------


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


#: What ``_Walk.value`` returns for a value protojson leaves unset (an unknown enum name).
_DISCARDED = object()


class _Walk:
    __slots__ = ("changed", "unknown")

    def __init__(self) -> None:
        self.changed = False
        self.unknown: list[str] = []

    def message(self, obj: Any, msg: _Message, path: str) -> dict[str, Any]:
        if type(obj) is not dict:
            raise ProtoJSONError(f"{path or '.'}: expected an object, got {_type_name(obj)}")
        out: list[tuple[int, str, Any]] = []
        seen: dict[str, str] = {}
        oneofs: dict[str, str] = {}
        for key, value in obj.items():
            fld = msg.by_key.get(key)
            sub = f"{path}.{key}" if path else key
            if fld is None:
                self.changed = True
                self.unknown.append(f"{msg.full_name}.{printable(key)}")
                continue
            if key != fld.name:
                self.changed = True
            if fld.name in seen:
                raise ProtoJSONError(f"{sub}: field given twice ({seen[fld.name]} and {key})")
            seen[fld.name] = key
            if value is None:
                self.changed = True  # protojson: null means the default value
                continue
            if fld.oneof is not None:
                if fld.oneof in oneofs:
                    raise ProtoJSONError(f"{sub}: oneof {fld.oneof} already set by {oneofs[fld.oneof]}")
                oneofs[fld.oneof] = key
            if fld.repeated:
                if type(value) is not list:
                    raise ProtoJSONError(f"{sub}: expected an array, got {_type_name(value)}")
                conv = [self.value(v, fld, f"{sub}[{i}]") for i, v in enumerate(value)]
                conv = [c for c in conv if c is not _DISCARDED]
                if not conv:
                    self.changed = True
                    continue
                out.append((fld.index, fld.name, conv))
                continue
            conv_v = self.value(value, fld, sub)
            if conv_v is _DISCARDED:
                continue
            if not fld.presence and fld.oneof is None and _is_default(conv_v, fld):
                self.changed = True
                continue
            out.append((fld.index, fld.name, conv_v))
        if any(out[i][0] > out[i + 1][0] for i in range(len(out) - 1)):
            self.changed = True
            out.sort(key=lambda t: t[0])
        return {name: v for _, name, v in out}

    def value(self, v: Any, fld: _Field, path: str) -> Any:
        kind = fld.kind
        if kind == "message":
            assert fld.message is not None
            return self.message(v, fld.message, path)
        if kind == "string":
            if type(v) is not str:
                raise ProtoJSONError(f"{path}: expected a string, got {_type_name(v)}")
            return v
        if kind == "enum":
            if type(v) is str:
                if v not in fld.enum_names:
                    # Hubble reads with DiscardUnknown once a line fails (hubble/cmd/observe
                    # io_reader_observer.go), and then protojson leaves a field with an unknown
                    # enum name unset (decode.go unmarshalEnum): dropped and counted, not an error.
                    self.changed = True
                    self.unknown.append(f"{fld.enum_full_name} value {printable(v)}")
                    return _DISCARDED
                return v
            if type(v) is float and v.is_integer():  # protojson reads 1.0 or 1e0 as the number 1
                v = int(v)
            if type(v) is int:
                lo, hi = _RANGES["int32"]
                if not lo <= v <= hi:  # an enum is an int32 on the wire: protojson refuses the rest
                    raise ProtoJSONError(f"{path}: {fld.enum_full_name} number {v} out of range")
                self.changed = True
                # Unknown numbers stay numbers, as protojson prints them (proto3 enums are open).
                return fld.enum_by_number.get(v, v)
            raise ProtoJSONError(f"{path}: expected an enum name or number, got {_type_name(v)}")
        if kind == "bool":
            if type(v) is not bool:
                raise ProtoJSONError(f"{path}: expected true or false, got {_type_name(v)}")
            return v
        if kind in _RANGES:
            return self.integer(v, kind, path)
        if kind == "float":
            if type(v) in (int, float) or (type(v) is str and v in ("NaN", "Infinity", "-Infinity")):
                return v
            raise ProtoJSONError(f"{path}: expected a number, got {_type_name(v)}")
        if kind == "timestamp":
            if type(v) is not str:
                raise ProtoJSONError(f"{path}: expected an RFC 3339 timestamp, got {_type_name(v)}")
            try:
                canonical = format_timestamp(*parse_timestamp(v))
            except ValueError as e:
                raise ProtoJSONError(f"{path}: {e}") from None
            if canonical != v:
                self.changed = True
            return canonical
        if kind == "stringlike":
            if type(v) is not str:
                raise ProtoJSONError(f"{path}: expected a string, got {_type_name(v)}")
            return v
        return self.opaque(v, path)

    def opaque(self, v: Any, path: str) -> Any:
        """An ``Any`` (the only opaque field of Hubble's events: ``extensions``): kept as given,
        once it is an object naming its type and not nested beyond what can be written back."""
        if type(v) is not dict:
            raise ProtoJSONError(f"{path}: expected an object, got {_type_name(v)}")
        if v and type(v.get("@type")) is not str:
            raise ProtoJSONError(f"{path}: an Any needs its \"@type\" (a string)")
        if _depth_exceeds(v, MAX_OPAQUE_DEPTH):
            raise ProtoJSONError(f"{path}: nested deeper than {MAX_OPAQUE_DEPTH} levels")
        return v

    def integer(self, v: Any, kind: str, path: str) -> Any:
        if type(v) is int:
            n = v
        elif type(v) is float and v.is_integer():
            n = int(v)
            self.changed = True
        elif type(v) is str:
            go = go_integer_string(v)
            if go is None:
                raise ProtoJSONError(f"{path}: expected an integer, got {v!r}")
            n = go
        else:
            raise ProtoJSONError(f"{path}: expected an integer, got {_type_name(v)}")
        lo, hi = _RANGES[kind]
        if not lo <= n <= hi:
            raise ProtoJSONError(f"{path}: {n} out of range for {kind}")
        if kind in ("int64", "uint64"):
            s = str(n)
            if v != s:
                self.changed = True
            return s
        if type(v) is not int:
            self.changed = True
        return n


#: Bytes that continue a JSON number token in Go's protojson (its isNotDelim): anything else
#: ends the token, and what follows it inside a quoted integer is not read.
_NUMBER_CONTINUES = frozenset("-+._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _go_space(ch: str) -> bool:
    """Go's unicode.IsSpace (what strings.TrimSpace trims): Python's isspace but for the
    information separators U+001C to U+001F, which Python counts as white space and Go does not."""
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def go_integer_string(text: str) -> int | None:
    """The integer protojson reads from a quoted integer (``"42"``, ``"1e2"``), else None.

    Go's protojson (encoding/protojson decode.go unmarshalInt/unmarshalUint, and
    internal/encoding/json decode_number.go) refuses surrounding white space, then reads one
    JSON number token from the start of the string, which must be followed by the end or a
    delimiter (the rest is never read: ``"42,1"`` is 42), and accepts it when it is an integer
    once its exponent is applied (``"1.50e1"`` is 15, ``"0.5"`` is not), of at most 20 digits.
    A sign other than a leading ``-``, a leading zero before digits, hex: refused. Range checks
    are the caller's (a ``-`` on an unsigned field is refused there, except for zero)."""
    if not text or _go_space(text[0]) or _go_space(text[-1]):
        return None
    i, end = 0, len(text)
    negative = text[0] == "-"
    if negative:
        i = 1
        if i == end:
            return None
    if text[i] == "0":
        intp = ""
        i += 1
    elif "1" <= text[i] <= "9":
        start = i
        while i < end and "0" <= text[i] <= "9":
            i += 1
        intp = text[start:i]
    else:
        return None
    frac = ""
    if i + 1 < end and text[i] == "." and "0" <= text[i + 1] <= "9":
        start = i + 1
        i += 2
        while i < end and "0" <= text[i] <= "9":
            i += 1
        frac = text[start:i].rstrip("0")
    exp_text = ""
    if i + 1 < end and text[i] in "eE":
        i += 1
        start = i
        if text[i] in "+-":
            i += 1
            if i == end:
                return None
        while i < end and "0" <= text[i] <= "9":
            i += 1
        exp_text = text[start:i]
    if i < end and text[i] in _NUMBER_CONTINUES:
        return None
    if not intp and not frac:
        return 0
    exponent = 0
    if exp_text:
        try:
            exponent = int(exp_text)
        except ValueError:  # a lone sign: Go's ParseInt refuses it
            return None
        if not -(2**31) <= exponent < 2**31:
            return None
    if exponent >= 0:
        if len(frac) > exponent or len(intp) + exponent > 20:
            return None
        digits = intp + frac + "0" * (exponent - len(frac))
    else:
        cut = len(intp) + exponent
        if frac or cut < 0 or intp[cut:].strip("0"):
            return None
        digits = intp[:cut]
    n = int(digits or "0")
    return -n if negative else n


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` deep (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_default(v: Any, fld: _Field) -> bool:
    if fld.kind == "enum":
        return v == fld.enum_zero or v == 0
    if fld.kind in ("int64", "uint64"):
        return v == "0"
    if fld.kind == "message":
        return False
    return v is False or v == 0 or v == ""


_WRAPPER_KEYS = frozenset({"node_name", "nodeName", "time"})
_KIND_KEYS = frozenset(
    {"flow", "node_status", "nodeStatus", "lost_events", "lostEvents", "agent_event", "agentEvent",
     "debug_event", "debugEvent"}
)
_LOST_EVENT_KEYS = frozenset({"num_events_lost", "numEventsLost"})


class EventNormalizer:
    """Validates one parsed line and returns its canonical event (compile once, use per line)."""

    def __init__(self) -> None:
        self._schema = _event_schema()
        flow_field = self._schema.by_key["flow"]
        lost_field = self._schema.by_key["lost_events"]
        assert flow_field.message is not None and lost_field.message is not None
        self._flow = flow_field.message
        self._lost = lost_field.message

    def normalize(self, data: Any) -> Normalized:
        if type(data) is not dict:
            raise ProtoJSONError(f"expected a JSON object, got {_type_name(data)}")
        walk = _Walk()
        if _KIND_KEYS.isdisjoint(data):
            if not data.keys() - _WRAPPER_KEYS:
                raise ProtoJSONError("no flow or event in line")
            if _LOST_EVENT_KEYS & data.keys() and data.keys() <= self._lost.by_key.keys():
                # Legacy `-o json` prints a lost event bare, too.
                data = {"lost_events": data}
            else:
                # Legacy `-o json`: a bare Flow. Hubble's wrapper copies node_name and time.
                data = {"flow": data, "node_name": data.get("node_name", data.get("nodeName")),
                        "time": data.get("time")}
            walk.changed = True
        event = walk.message(data, self._schema, "")
        kinds = [k for k in EVENT_KINDS if k in event]
        if not kinds:
            raise ProtoJSONError("no flow or event in line")
        return Normalized(event, walk.changed, walk.unknown)


@cache
def _validator() -> EventNormalizer:
    return EventNormalizer()


def event_problem(data: Any) -> str | None:
    """What makes ``data`` (a parsed line, a converted message) no valid Hubble event, starting
    with the field path (``flow.l4.TCP: expected an object, got string``); None when it is one.

    The full check the fast path leaves out: a few tens of µs, for the flows a stage could not
    process, so that the report says which value was wrong."""
    try:
        _validator().normalize(data)
    except ProtoJSONError as e:
        return printable(str(e))
    except RecursionError:
        return "nested too deeply"
    return None


def unprocessable_reason(data: Any, error: BaseException) -> str:
    """The report of a flow a stage could not process (``error``, one of
    :data:`FLOW_SHAPE_ERRORS`): the invalid value when there is one, else the error itself."""
    problem = event_problem(data)
    if problem is not None:
        return f"flow skipped ({problem})"
    return f"flow skipped, it could not be processed ({type(error).__name__}: {printable(str(error))})"


# -- the fast path -----------------------------------------------------------------------------


def _fast_flow_types() -> tuple[dict[str, type], dict[str, frozenset[str]]]:
    schema = _event_schema().by_key["flow"].message
    assert schema is not None
    types: dict[str, type] = {}
    enums: dict[str, frozenset[str]] = {}
    for key, fld in schema.by_key.items():
        if key != fld.name:
            continue  # lowerCamel spellings take the slow path
        if fld.repeated:
            types[key] = list
        elif fld.kind in ("message", "opaque"):
            types[key] = dict
        elif fld.kind == "bool":
            types[key] = bool
        elif fld.kind in ("int32", "uint32"):
            types[key] = int
        elif fld.kind == "float":
            types[key] = float
        else:  # string, enum, 64-bit, timestamp
            types[key] = str
        if fld.kind == "enum" and not fld.repeated:
            enums[key] = fld.enum_names
    return types, enums


@cache
def _fast_tables() -> tuple[dict[str, type], dict[str, frozenset[str]]]:
    return _fast_flow_types()


_POLICY_LISTS = ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by")


def make_canonical_check() -> Callable[[Any], bool]:
    """Build the fast-path predicate: is this parsed line a canonical ``{"flow": ...}`` event?

    About 0.6 µs a line (orjson parses a 1.85 KB line in ~3 µs). It checks the wrapper, that every
    Flow key is a proto name, the enums the filters read (verdict, Type, traffic_direction,
    drop_reason_desc) by name, the endpoint/l4/IP/event_type objects, and the 64-bit fields
    (strings). Anything else goes to the slow path, which validates fully. Deeper values in a line
    that passes are trusted: Hubble's protojson wrote them.
    """
    types, enums = _fast_tables()
    wrapper_keys = frozenset({"flow", "node_name", "time"})
    flow_keys = frozenset(types)
    # None stands for "absent", so that one `in` checks both.
    verdicts = enums["verdict"] | {None}
    flow_types = enums["Type"] | {None}
    directions = enums["traffic_direction"] | {None}
    drop_reasons = enums["drop_reason_desc"] | {None}
    empty: dict[str, Any] = {}  # never mutated: the default for absent objects

    def is_canonical_flow_event(d: Any) -> bool:
        if d.__class__ is not dict:
            return False
        f = d.get("flow")
        if f.__class__ is not dict or not wrapper_keys.issuperset(d) or not flow_keys.issuperset(f):
            return False
        if d.get("time", "").__class__ is not str or d.get("node_name", "").__class__ is not str:
            return False
        g = f.get
        try:
            if (
                g("verdict") not in verdicts
                or g("Type") not in flow_types
                or g("traffic_direction") not in directions
                or g("drop_reason_desc") not in drop_reasons
            ):
                return False
        except TypeError:  # an unhashable value where an enum name belongs
            return False
        if (
            g("source", empty).__class__ is not dict
            or g("destination", empty).__class__ is not dict
            or g("l4", empty).__class__ is not dict
            or g("IP", empty).__class__ is not dict
            or g("event_type", empty).__class__ is not dict
        ):
            return False
        if (
            "l7" in f
            or "egress_allowed_by" in f
            or "ingress_allowed_by" in f
            or "egress_denied_by" in f
            or "ingress_denied_by" in f
            or "socket_cookie" in f
            or "cgroup_id" in f
            or "ip_trace_id" in f
        ):
            return _nested_ok(f)
        return True

    return is_canonical_flow_event


def _nested_ok(f: dict[str, Any]) -> bool:
    """The rarer parts of the fast check: l7, policies, 64-bit fields must be strings."""
    l7 = f.get("l7", {})
    if l7.__class__ is not dict or l7.get("latency_ns", "").__class__ is not str:
        return False
    for k in _POLICY_LISTS:
        pols = f.get(k)
        if pols is not None:
            if pols.__class__ is not list:
                return False
            for p in pols:
                if p.__class__ is not dict or p.get("revision", "").__class__ is not str:
                    return False
    tid = f.get("ip_trace_id", {})
    return (
        f.get("socket_cookie", "").__class__ is str
        and f.get("cgroup_id", "").__class__ is str
        and tid.__class__ is dict
        and tid.get("trace_id", "").__class__ is str
    )


is_canonical_flow_event = make_canonical_check()


# -- encoding ----------------------------------------------------------------------------------

#: Plans kept per message for the shapes (key sequences) seen; a new shape past it is not cached.
_MAX_SHAPES = 4096
#: Messages whose values rarely repeat from flow to flow (a port, a query, a time is in them):
#: checked each time. The answers for the others (endpoints, IPs, event types...) are remembered.
_UNIQUE_MESSAGES = frozenset({"flow.Flow", "flow.Layer4", "flow.TCP", "flow.UDP", "flow.SCTP", "flow.Layer7",
                              "flow.DNS", "flow.HTTP", "flow.Kafka", "flow.LostEvent"})
#: Answers remembered at most per message (under a MB of keys each).
_MAX_REMEMBERED = 1024


def make_canonical_event_check() -> Callable[[Any], bool]:
    """Build a proof, cheap enough to run on every printed event, that a parsed event dict is
    already exactly what :class:`EventNormalizer` returns for it *unchanged* (every level: proto
    names only, in declaration order, no default values, enums by name, 64-bit integers as their
    decimal strings, 32-bit ones in range, timestamps as Go writes them). When it says True,
    ``encode_event(d)`` is the line Hubble prints; False only means "take the slow path" (it is
    conservative: opaque ``extensions`` and unknown enum numbers always go there).

    Per message the key sequence is looked up in a plan cache (flows repeat a few hundred
    shapes), then one tuple of the value types is compared and the few fields that need more
    (enums, nested messages, ranges, timestamps) are checked. The returned function holds its
    own caches: build one per consumer, never share one at module level.
    """
    last_second = [""]

    def timestamp_ok(v: str) -> bool:
        # Go's Timestamp JSON: whole seconds in UTC, then no fraction or 3, 6 or 9 digits
        # (nanos % 1e6 == 0 -> 3, % 1e3 == 0 -> 6), so the last three digits are never "000".
        head = v[:19]
        if head != last_second[0]:
            if len(v) < 20:
                return False
            try:
                if format_timestamp(parse_timestamp(head + "Z")[0], 0) != head + "Z":
                    return False
            except ValueError:
                return False
            last_second[0] = head
        rest = v[19:]
        if rest == "Z":
            return True
        frac = rest[1:-1]
        return (
            len(rest) in (5, 8, 11) and rest[0] == "." and rest[-1] == "Z"
            and frac.isascii() and frac.isdigit() and frac[-3:] != "000"
        )

    checks: dict[str, Callable[[Any], bool]] = {}
    remembered_checks: dict[str, Callable[[Any], bool]] = {}

    def message_check(msg: _Message) -> Callable[[Any], bool]:
        known = checks.get(msg.full_name)
        if known is not None:
            return known
        plans: dict[tuple[str, ...], Any] = {}

        def check(d: Any) -> bool:
            if d.__class__ is not dict:
                return False
            keys = tuple(d)
            plan = plans.get(keys)
            if plan is None:
                plan = _plan(msg, keys)
                if len(plans) < _MAX_SHAPES:
                    plans[keys] = plan
            if plan is False:
                return False
            types, falsy_ok, field_checks = plan
            values = tuple(d.values())
            if tuple(map(type, values)) != types:
                return False
            if not all(values):
                for i, v in enumerate(values):
                    if not v and i not in falsy_ok:
                        return False
            for i, field_check in field_checks:  # noqa: SIM110 - a loop beats all(genexpr) here
                if not field_check(values[i]):
                    return False
            return True

        checks[msg.full_name] = check
        return check

    def _plan(msg: _Message, keys: tuple[str, ...]) -> Any:
        last = -1
        oneofs: set[str] = set()
        types: list[type] = []
        falsy_ok: set[int] = set()
        field_checks: list[tuple[int, Callable[[Any], bool]]] = []
        for i, key in enumerate(keys):
            fld = msg.by_key.get(key)
            if fld is None or fld.name != key or fld.index <= last:
                return False
            last = fld.index
            if fld.oneof is not None:
                if fld.oneof in oneofs:
                    return False
                oneofs.add(fld.oneof)
            element = _element_check(fld)
            if element is False:
                return False
            if fld.repeated:
                types.append(list)
                field_checks.append((i, _all_of(element[1], element[0])))
                continue
            types.append(element[0])
            if fld.presence or fld.oneof is not None:
                falsy_ok.add(i)
            if element[1] is not None:
                field_checks.append((i, element[1]))
        return tuple(types), frozenset(falsy_ok), tuple(field_checks)

    def _element_check(fld: _Field) -> Any:
        """(python type, extra check or None) of one value of ``fld``; False: never fast."""
        kind = fld.kind
        if kind in ("string", "stringlike"):
            return str, None
        if kind == "bool":
            return bool, None
        if kind == "message":
            assert fld.message is not None
            name = fld.message.full_name
            if name in _UNIQUE_MESSAGES:
                return dict, message_check(fld.message)
            shared = remembered_checks.get(name)  # one memory per message, whatever holds it
            if shared is None:
                shared = remembered_checks[name] = _remembered(message_check(fld.message))
            return dict, shared
        if kind == "enum":
            allowed = fld.enum_names
            if not (fld.presence or fld.oneof is not None or fld.repeated):
                allowed = allowed - {fld.enum_zero}
            return str, allowed.__contains__
        if kind in ("int32", "uint32"):
            lo, hi = _RANGES[kind]
            return int, lambda v: lo <= v <= hi
        if kind in ("int64", "uint64"):
            lo, hi = _RANGES[kind]
            # "0" is a truthy string but the default of a field without presence: not printed.
            zero_ok = fld.presence or fld.oneof is not None or fld.repeated

            def decimal_ok(v: str) -> bool:
                if not (v.isascii() and v.lstrip("-").isdigit()):
                    return False
                n = int(v)
                return lo <= n <= hi and str(n) == v and (zero_ok or n != 0)

            return str, decimal_ok
        if kind == "timestamp":
            return str, timestamp_ok
        return False  # float, opaque: the slow path decides

    def _remembered(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """``check`` with its answers kept by the value's bytes: a flow's endpoints repeat (the
        same pods talk again and again) and are the bulk of its fields, while encoding one is a
        fraction of checking it. Bounded: the memory is dropped when full."""
        seen: dict[bytes, bool] = {}
        dumps = orjson.dumps

        def remembered(v: Any) -> bool:
            try:
                key = dumps(v)
            except (TypeError, orjson.JSONEncodeError):
                return False
            answer = seen.get(key)
            if answer is None:
                if len(seen) >= _MAX_REMEMBERED:
                    seen.clear()
                answer = seen[key] = check(v)
            return answer

        return remembered

    def _all_of(each: Callable[[Any], bool] | None, element_type: type) -> Callable[[Any], bool]:
        if element_type is str and each is None:
            return _all_strings

        def all_ok(values: list[Any]) -> bool:
            for v in values:  # noqa: SIM110 - a loop beats all(genexpr) here
                if v.__class__ is not element_type or (each is not None and not each(v)):
                    return False
            return True

        return all_ok

    event_check = message_check(_event_schema())

    def is_canonical_event(d: Any) -> bool:
        return event_check(d) and not _KIND_KEYS.isdisjoint(d)

    return is_canonical_event


def _proof_schemas() -> Any:
    """The C proof's description of the event schema (``_jsonpb_proof.Schema``), None without
    the C module. Mirrors ``make_canonical_event_check``'s rules field by field."""
    if _jsonpb_proof is None:
        return None
    proof = _jsonpb_proof
    built: dict[str, Any] = {}
    simple = {"string": proof.K_STRING, "stringlike": proof.K_STRING, "bool": proof.K_BOOL,
              "int32": proof.K_INT32, "uint32": proof.K_UINT32, "int64": proof.K_INT64,
              "uint64": proof.K_UINT64, "timestamp": proof.K_TIMESTAMP}

    def schema_of(msg: _Message) -> Any:
        known = built.get(msg.full_name)
        if known is not None:
            return known
        schema = built[msg.full_name] = proof.Schema()  # before the fields: messages recurse
        fields = sorted({f.index: f for f in msg.by_key.values()}.values(), key=lambda f: f.index)
        oneof_ids: dict[str, int] = {}
        rows = []
        for fld in fields:
            aux: Any = None
            if fld.kind == "enum":
                kind = proof.K_ENUM
                allowed = fld.enum_names
                if not (fld.presence or fld.oneof is not None or fld.repeated):
                    allowed = allowed - {fld.enum_zero}
                aux = tuple(sorted(name.encode() for name in allowed))
            elif fld.kind == "message":
                assert fld.message is not None
                kind = proof.K_MESSAGE
                aux = schema_of(fld.message)
            else:
                kind = simple.get(fld.kind, proof.K_NEVER)  # float, opaque: never proven
            oneof = -1 if fld.oneof is None else oneof_ids.setdefault(fld.oneof, len(oneof_ids))
            falsy_ok = fld.presence or fld.oneof is not None
            rows.append((fld.name.encode(), kind, fld.repeated, falsy_ok, oneof, aux))
        schema.setup(tuple(rows))
        return schema

    return schema_of(_event_schema())


_FLOW_HEAD = b'{"flow":'


def make_line_proof() -> Callable[[bytes], int] | None:
    """``prove(line) -> int``, in C: where the flow object of ``line`` ends (``line[8:end]`` is it)
    when the line is a flow event already in the canonical spelling at every level, so that
    ``encode_event(normalize(orjson.loads(line)))`` would give ``line`` back byte for byte; -1
    when that is not proven (another spelling, a lost event, a float... the slow path decides).
    None when the C module was not built. Build one per consumer."""
    schema = _proof_schemas()
    if schema is None:
        return None
    prove = schema.prove

    def prove_flow_line(line: bytes) -> int:
        if not line.startswith(_FLOW_HEAD):
            return -1
        return int(prove(line))

    return prove_flow_line


def canonical_event(data: Any, is_canonical: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    """``data`` as Hubble's protojson holds it (what its jsonpb encoder writes, in order):
    ``data`` itself when ``is_canonical`` (a :func:`make_canonical_event_check`) proves it is,
    else the normalized copy. Raises ProtoJSONError for what is no valid Hubble event."""
    if is_canonical is not None and is_canonical(data):
        return data
    return _validator().normalize(data).event


def _all_strings(values: list[Any]) -> bool:
    """Whether every item is a str (join does the type check in C: labels are on every flow)."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


_HTML_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
                 ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def go_json_escape(raw: bytes) -> bytes:
    """Apply Go json.Encoder's HTML-safe escaping to compact JSON bytes (only strings hold them)."""
    if b"<" in raw or b">" in raw or b"&" in raw or b"\xe2\x80" in raw:
        for old, new in _HTML_ESCAPES:
            raw = raw.replace(old, new)
    return raw


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a canonical event dict (keys already in declaration order)."""
    return go_json_escape(orjson.dumps(event))


__all__ = [
    "EVENT_KINDS",
    "FLOW_DESCRIPTOR",
    "FLOW_SHAPE_ERRORS",
    "EventNormalizer",
    "Normalized",
    "ProtoJSONError",
    "canonical_event",
    "encode_event",
    "event_problem",
    "go_json_escape",
    "is_canonical_flow_event",
    "make_canonical_event_check",
    "make_line_proof",
    "unprocessable_reason",
]
