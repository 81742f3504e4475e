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
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message

from hushflow.filter import addresses, endpoints, flowmeta, patterns, protocols, selectors
from hushflow.filter.base import FieldFilter, FilterError, Needles
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
        if name in ("source_ip", "destination_ip", "source_ip_xlated"):
            ip_key = {"source_ip": "source", "destination_ip": "destination", "source_ip_xlated": "source_xlated"}
            compiled.append(addresses.compile_ip_filter(name, list(value), ip_key[name]))
        elif name in ("source_pod", "destination_pod"):
            side = name.split("_")[0]
            compiled.append(endpoints.compile_namespaced_filter(name, list(value), side, "pod_name", ""))
        elif name in ("source_service", "destination_service"):
            side = name.split("_")[0]
            compiled.append(
                endpoints.compile_namespaced_filter(name, list(value), name, "name", f"invalid {side} service filter")
            )
        elif name in ("source_fqdn", "destination_fqdn"):
            # Hubble returns the pattern error unwrapped, as for node names.
            compiled.append(patterns.compile_fqdn_filter(name, list(value), f"{name.split('_')[0]}_names"))
        elif name in ("source_label", "destination_label"):
            side = name.split("_")[0]
            compiled.append(selectors.compile_label_filter(
                name, list(value), _endpoint_labels(side), f"invalid {side} label filter"))
        elif name == "node_labels":
            compiled.append(
                selectors.compile_label_filter(name, list(value), _node_labels, "invalid node label filter")
            )
        elif name in ("source_workload", "destination_workload"):
            compiled.append(endpoints.compile_workload_filter(name, _as_dicts(value), name.split("_")[0]))
        elif name in ("source_cluster_name", "destination_cluster_name"):
            compiled.append(endpoints.compile_cluster_filter(name, list(value), name.split("_")[0]))
        elif name in ("source_identity", "destination_identity"):
            compiled.append(endpoints.compile_identity_filter(name, list(value), name.split("_")[0]))
        elif name == "uuid":
            compiled.append(flowmeta.compile_uuid_filter(name, list(value)))
        elif name == "verdict":
            compiled.append(flowmeta.compile_verdict_filter(name, list(value)))
        elif name == "traffic_direction":
            compiled.append(flowmeta.compile_traffic_direction_filter(name, list(value)))
        elif name == "drop_reason_desc":
            compiled.append(flowmeta.compile_drop_reason_filter(name, list(value)))
        elif name == "interface":
            compiled.append(flowmeta.compile_interface_filter(name, _as_dicts(value)))
        elif name == "event_type":
            flow_match, other_events = flowmeta.compile_event_type_filter(name, event_types)
            compiled.append(flow_match)
        elif name == "reply":
            compiled.append(flowmeta.compile_reply_filter(name, list(value)))
        elif name == "ip_version":
            compiled.append(flowmeta.compile_ip_version_filter(name, list(value)))
        elif name == "trace_id":
            compiled.append(flowmeta.compile_trace_id_filter(name, list(value)))
        elif name == "ip_trace_id":
            compiled.append(flowmeta.compile_ip_trace_id_filter(name, list(value)))
        elif name == "encrypted":
            compiled.append(flowmeta.compile_encrypted_filter(name, list(value)))
        elif name == "node_name":
            compiled.append(patterns.compile_node_name_filter(name, list(value)))
        elif name == "protocol":
            compiled.append(protocols.compile_protocol_filter(name, list(value)))
        elif name in ("source_port", "destination_port"):
            compiled.append(protocols.compile_port_filter(name, list(value), name))
        elif name == "tcp_flags":
            compiled.append(protocols.compile_tcp_flags_filter(name, _as_dicts(value)))
        elif name == "dns_query":
            compiled.append(protocols.compile_dns_query_filter(name, list(value)))
        elif name in protocols.HTTP_FIELDS:
            what, compile_http = protocols.HTTP_FIELDS[name]
            protocols.require_l7_event_type(event_types, what)
            items = _as_dicts(value) if name == "http_header" else list(value)
            compiled.append(compile_http(name, items))
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
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]
    fs = tuple(filters)

    def match_any(event: Event) -> bool:
        for f in fs:
            if f(event):
                return True
        return False

    return match_any


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
