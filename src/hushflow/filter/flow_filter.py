"""Compile Hubble FlowFilter allow/deny lists into one event predicate.

    pred = compile_filters(allowlist, denylist)
    keep = [ev for ev in events if pred(ev)]

Semantics (Hubble ``pkg/hubble/filters``): an event passes when it matches at least one
allowlist filter (an empty allowlist matches everything) and no denylist filter. Inside one
FlowFilter every set field must match; the values of one field are ORed. Filters on flow fields
never match other events (lost events, agent or debug events), except ``event_type``, which
always lets lost events through and can select agent and debug events by type.

Filters are FlowFilter dicts in protojson form, as ``hubble observe --print-raw-filters`` prints
them (proto names such as ``source_pod``; lowerCamel names and enum numbers are accepted too).

Events are *canonical event dicts*: what ``orjson.loads`` returns for one ``hubble observe -o
jsonpb`` or exporter line, ``{"flow": {...}, "node_name": ..., "time": ...}`` or
``{"lost_events": {...}}`` etc., with proto field names, enum names, 64-bit integers as strings
and default values omitted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message

from hushflow.filter import addresses, endpoints, flowmeta, patterns, protocols, selectors
from hushflow.filter.field_filter import FieldFilter, FilterError, Needles, any_of
from hushflow.proto import flow_pb2

Event = Mapping[str, Any]


class EventPredicate(Protocol):
    """``predicate(event) -> bool`` over canonical event dicts."""

    def __call__(self, event: Event, /) -> bool: ...


def _always(_: Event) -> bool:
    return True


def _never(_: Event) -> bool:
    return False


# ---------------------------------------------------------------------------------------------
# One FlowFilter


def parse_flow_filter(spec: Mapping[str, Any]) -> flow_pb2.FlowFilter:
    """protojson dict -> FlowFilter message (proto or lowerCamel names, enum names or numbers)."""
    if isinstance(spec, Message):
        if not isinstance(spec, flow_pb2.FlowFilter):
            raise FilterError(f"not a FlowFilter: {type(spec).__name__}")
        return spec
    known = _FLOW_FILTER_NAMES
    for key in spec:
        if key not in known:
            raise FilterError(f"invalid FlowFilter: proto: unknown field {json.dumps(key)}")
    message = flow_pb2.FlowFilter()
    try:
        json_format.ParseDict(dict(spec), message)
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise FilterError(f"invalid FlowFilter: {err}") from None
    return message


_FLOW_FILTER_NAMES = frozenset(
    name for fd in flow_pb2.FlowFilter.DESCRIPTOR.fields for name in (fd.name, fd.json_name)
)


def _as_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in messages]


def _endpoint_labels(key: str) -> Callable[[Mapping[str, Any]], Any]:
    def labels_of(flow: Mapping[str, Any]) -> Any:
        ep = flow.get(key)
        return ep.get("labels") if ep is not None else None

    return labels_of


def _node_labels(flow: Mapping[str, Any]) -> Any:
    return flow.get("node_labels")


def _side(name: str) -> str:
    return name.split("_", 1)[0]  # "source" / "destination"


FieldBuilder = Callable[[str, Any], FieldFilter]

# FlowFilter field -> builder(field name, repeated value). event_type, the HTTP fields and CEL
# need more context and are handled in compile_flow_filter.
_BUILDERS: Mapping[str, FieldBuilder] = MappingProxyType({
    "uuid": lambda n, v: flowmeta.compile_uuid_filter(n, list(v)),
    "source_ip": lambda n, v: addresses.compile_ip_filter(n, list(v), "source"),
    "destination_ip": lambda n, v: addresses.compile_ip_filter(n, list(v), "destination"),
    "source_ip_xlated": lambda n, v: addresses.compile_ip_filter(n, list(v), "source_xlated"),
    "source_pod": lambda n, v: endpoints.compile_namespaced_filter(n, list(v), "source", "pod_name", ""),
    "destination_pod": lambda n, v: endpoints.compile_namespaced_filter(n, list(v), "destination", "pod_name", ""),
    "source_service": lambda n, v: endpoints.compile_namespaced_filter(
        n, list(v), n, "name", "invalid source service filter"),
    "destination_service": lambda n, v: endpoints.compile_namespaced_filter(
        n, list(v), n, "name", "invalid destination service filter"),
    # Hubble returns FQDN pattern errors unwrapped, as for node names.
    "source_fqdn": lambda n, v: patterns.compile_fqdn_filter(n, list(v), "source_names"),
    "destination_fqdn": lambda n, v: patterns.compile_fqdn_filter(n, list(v), "destination_names"),
    "source_label": lambda n, v: selectors.compile_label_filter(
        n, list(v), _endpoint_labels("source"), "invalid source label filter"),
    "destination_label": lambda n, v: selectors.compile_label_filter(
        n, list(v), _endpoint_labels("destination"), "invalid destination label filter"),
    "node_labels": lambda n, v: selectors.compile_label_filter(n, list(v), _node_labels, "invalid node label filter"),
    "source_workload": lambda n, v: endpoints.compile_workload_filter(n, _as_dicts(v), _side(n)),
    "destination_workload": lambda n, v: endpoints.compile_workload_filter(n, _as_dicts(v), _side(n)),
    "source_cluster_name": lambda n, v: endpoints.compile_cluster_filter(n, list(v), _side(n)),
    "destination_cluster_name": lambda n, v: endpoints.compile_cluster_filter(n, list(v), _side(n)),
    "source_identity": lambda n, v: endpoints.compile_identity_filter(n, list(v), _side(n)),
    "destination_identity": lambda n, v: endpoints.compile_identity_filter(n, list(v), _side(n)),
    "verdict": lambda n, v: flowmeta.compile_verdict_filter(n, list(v)),
    "traffic_direction": lambda n, v: flowmeta.compile_traffic_direction_filter(n, list(v)),
    "drop_reason_desc": lambda n, v: flowmeta.compile_drop_reason_filter(n, list(v)),
    "interface": lambda n, v: flowmeta.compile_interface_filter(n, _as_dicts(v)),
    "reply": lambda n, v: flowmeta.compile_reply_filter(n, list(v)),
    "ip_version": lambda n, v: flowmeta.compile_ip_version_filter(n, list(v)),
    "trace_id": lambda n, v: flowmeta.compile_trace_id_filter(n, list(v)),
    "ip_trace_id": lambda n, v: flowmeta.compile_ip_trace_id_filter(n, list(v)),
    "encrypted": lambda n, v: flowmeta.compile_encrypted_filter(n, list(v)),
    "node_name": lambda n, v: patterns.compile_node_name_filter(n, list(v)),
    "protocol": lambda n, v: protocols.compile_protocol_filter(n, list(v)),
    "source_port": lambda n, v: protocols.compile_port_filter(n, list(v), n),
    "destination_port": lambda n, v: protocols.compile_port_filter(n, list(v), n),
    "tcp_flags": lambda n, v: protocols.compile_tcp_flags_filter(n, _as_dicts(v)),
    "dns_query": lambda n, v: protocols.compile_dns_query_filter(n, list(v)),
})


@dataclass(frozen=True)
class CompiledFlowFilter:
    """One FlowFilter, compiled: ``match(event)`` and the bytes condition of its fields."""

    fields: tuple[FieldFilter, ...]
    match: Callable[[Event], bool]
    needles: Needles
    uses_cel: bool


def compile_flow_filter(
    spec: Mapping[str, Any] | flow_pb2.FlowFilter, *, cel_env: Any | None = None
) -> CompiledFlowFilter:
    """Compile one FlowFilter. Raises FilterError with Hubble's message for invalid values."""
    ff = parse_flow_filter(spec)
    event_types = _as_dicts(ff.event_type)
    compiled: list[FieldFilter] = []
    other_events: Callable[[Event], bool] = _never

    for fd, value in ff.ListFields():
        name = fd.name
        build = _BUILDERS.get(name)
        if build is not None:
            compiled.append(build(name, value))
        elif name == "event_type":
            flow_match, other_events = flowmeta.compile_event_type_filter(name, event_types)
            compiled.append(flow_match)
        elif name in protocols.HTTP_FIELDS:
            what, compile_http = protocols.HTTP_FIELDS[name]
            protocols.require_l7_event_type(event_types, what)
            compiled.append(compile_http(name, _as_dicts(value) if name == "http_header" else list(value)))
        elif name == "experimental":
            expressions = list(ff.experimental.cel_expression)
            if expressions:
                from hushflow.filter import cel  # the CEL runtime loads only when needed

                compiled.append(cel.compile_cel_filter("experimental.cel_expression", expressions, cel_env))
        else:  # pragma: no cover - a FlowFilter field this version does not know
            raise FilterError(f"unsupported FlowFilter field {name!r}")

    # Cheap checks first, CEL last; ties keep the declaration order (stable sort).
    fields = tuple(sorted(compiled, key=lambda f: f.cost))
    needles: Needles = tuple(clause for f in fields for clause in f.needles)
    uses_cel = any(f.field == "experimental.cel_expression" for f in fields)
    only_event_type = len(fields) == 1 and fields[0].field == "event_type"
    return CompiledFlowFilter(fields, _flow_filter_match(fields, other_events if only_event_type else _never),
                              needles, uses_cel)


def _flow_filter_match(
    fields: tuple[FieldFilter, ...], other_events: Callable[[Event], bool]
) -> Callable[[Event], bool]:
    if not fields:
        return _always  # an empty FlowFilter matches every event
    matchers = tuple(f.match for f in fields)
    if len(matchers) == 1:
        only = matchers[0]

        def match_one(event: Event) -> bool:
            flow = event.get("flow")
            if flow is None:
                return other_events(event)
            return only(flow)

        return match_one
    if len(matchers) == 2:
        first, second = matchers

        def match_two(event: Event) -> bool:
            flow = event.get("flow")
            if flow is None:
                return other_events(event)
            return first(flow) and second(flow)

        return match_two

    def match_all(event: Event) -> bool:
        flow = event.get("flow")
        if flow is None:
            return other_events(event)
        for m in matchers:
            if not m(flow):
                return False
        return True

    return match_all


# ---------------------------------------------------------------------------------------------
# Allow and deny lists


def _any(filters: Sequence[Callable[[Event], bool]]) -> Callable[[Event], bool] | None:
    """OR of the filters of one list; None for an empty list (which the caller treats apart)."""
    return any_of(filters) if filters else None


def _line_check(allow: Sequence[CompiledFlowFilter]) -> Callable[[bytes], bool]:
    if not allow or any(not f.needles for f in allow):
        return lambda raw: True
    per_filter = tuple(f.needles for f in allow)
    if len(per_filter) == 1 and len(per_filter[0]) == 1 and len(per_filter[0][0]) == 1:
        needle = per_filter[0][0][0]
        return lambda raw: needle in raw

    def may_match(raw: bytes) -> bool:
        for clauses in per_filter:
            for alternatives in clauses:
                for needle in alternatives:
                    if needle in raw:
                        break
                else:
                    break  # this clause has no needle in the line: the filter cannot match
            else:
                return True
        return False

    return may_match


class CompiledFilters:
    """The compiled allow/deny lists; call it with a canonical event dict.

    ``matches`` is the bare predicate (bind it in hot loops: ``keep = compiled.matches``).

    ``line_may_match(raw)`` is a cheap *necessary* condition on the raw bytes of one line: when it
    returns False, ``matches(orjson.loads(raw))`` is False, so the caller may skip parsing. It is
    only exact for canonical lines (compact ``hubble observe -o jsonpb`` / exporter output: no
    whitespace between tokens, proto names, enum names, defaults omitted); do not use it on
    other spellings. It looks for literal substrings that every matching canonical line contains
    (``"verdict":"DROPPED"``, ``"namespace":"checkout"``, a quoted IP, ...), built only from
    values that JSON encoding leaves untouched, and answers True whenever a filter gives no such
    literal (regexes, CEL, negative selectors, ...). Denylists never make it return False.
    """

    __slots__ = ("allowlist", "denylist", "line_may_match", "matches", "uses_cel")

    def __init__(self, allowlist: Sequence[CompiledFlowFilter], denylist: Sequence[CompiledFlowFilter]) -> None:
        self.allowlist = tuple(allowlist)
        self.denylist = tuple(denylist)
        self.uses_cel = any(f.uses_cel for f in (*self.allowlist, *self.denylist))
        self.matches: Callable[[Event], bool] = _combine(
            _any([f.match for f in self.allowlist]), _any([f.match for f in self.denylist])
        )
        self.line_may_match: Callable[[bytes], bool] = _line_check(self.allowlist)

    def __call__(self, event: Event, /) -> bool:
        return self.matches(event)


def _combine(allow: Callable[[Event], bool] | None, deny: Callable[[Event], bool] | None) -> Callable[[Event], bool]:
    if allow is None and deny is None:
        return _always
    if deny is None:
        assert allow is not None
        return allow
    if allow is None:
        denied = deny

        def not_denied(event: Event) -> bool:
            return not denied(event)

        return not_denied
    allowed = allow
    denied = deny

    def allowed_not_denied(event: Event) -> bool:
        return allowed(event) and not denied(event)

    return allowed_not_denied


def compile_filters(allowlist: Sequence[Mapping[str, Any]], denylist: Sequence[Mapping[str, Any]]) -> CompiledFilters:
    """Compile Hubble allow/deny FlowFilter lists (protojson dicts) into one event predicate.

    Raises FilterError (message as Hubble prints it) for the first invalid filter.
    """
    cel_env: Any | None = None
    if any(_has_cel(f) for f in (*allowlist, *denylist)):
        from hushflow.filter import cel

        cel_env = cel.new_environment()
    allow = [compile_flow_filter(f, cel_env=cel_env) for f in allowlist]
    deny = [compile_flow_filter(f, cel_env=cel_env) for f in denylist]
    return CompiledFilters(allow, deny)


def _has_cel(spec: Mapping[str, Any]) -> bool:
    return isinstance(spec, Mapping) and "experimental" in spec
