"""Filters on what Hubble says about a flow rather than on its endpoints or packets:
uuid, verdict, drop reason, traffic direction, event type, reply, interface, node labels,
IP version, trace ids and encryption.

- ``drop_reason_desc`` only matches DROPPED flows.
- ``reply`` compares with ``is_reply``; a flow without ``is_reply`` (unknown) fails, except a
  DROPPED one, which counts as not a reply.
- ``event_type``: type 0 is a wildcard and the sub-type is compared only with
  ``match_sub_type``. Non-flow events: lost events always pass; agent (130) and debug (2) events
  match a filter of their type (and sub-type = their agent/debug event type).
- ``interface``: a filter index > 0 and a non-empty filter name must both equal the flow's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hushflow.filter.field_filter import (
    COST_LOOKUP,
    COST_SCAN,
    FieldFilter,
    FlowDict,
    Needles,
    enum_members,
    enum_name,
    json_safe,
    key_string,
)
from hushflow.proto import flow_pb2

_VERDICT = flow_pb2.Verdict.DESCRIPTOR
_DROP_REASON = flow_pb2.DropReason.DESCRIPTOR
_DIRECTION = flow_pb2.TrafficDirection.DESCRIPTOR
_IP_VERSION = flow_pb2.IPVersion.DESCRIPTOR
_AGENT_EVENT_TYPE = flow_pb2.AgentEventType.DESCRIPTOR
_DEBUG_EVENT_TYPE = flow_pb2.DebugEventType.DESCRIPTOR

AGENT_EVENT_TYPE = 130  # monitor MessageTypeAgent
DEBUG_EVENT_TYPE = 2  # monitor MessageTypeDebug
DROPPED = "DROPPED"
_DROPPED_NUMBER = flow_pb2.DROPPED

EventMatch = Callable[[Mapping[str, Any]], bool]


def compile_uuid_filter(field: str, uuids: Sequence[str]) -> FieldFilter:
    wanted = frozenset(uuids)

    def match(flow: FlowDict) -> bool:
        return flow.get("uuid", "") in wanted

    clause = ((tuple(key_string("uuid", u) for u in uuids),) if all(u and json_safe(u) for u in uuids) else ())
    return FieldFilter(field, match, COST_LOOKUP, clause)


def _enum_filter(field: str, key: str, enum: Any, numbers: Sequence[int], default: str) -> FieldFilter:
    wanted = enum_members(enum, numbers)

    def match(flow: FlowDict) -> bool:
        return flow.get(key, default) in wanted

    names = [enum_name(enum, n) for n in numbers]
    clause: Needles = ()
    if all(name is not None and name != default for name in names):
        clause = (tuple(key_string(key, name) for name in names if name is not None),)
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_verdict_filter(field: str, verdicts: Sequence[int]) -> FieldFilter:
    return _enum_filter(field, "verdict", _VERDICT, verdicts, "VERDICT_UNKNOWN")


def compile_traffic_direction_filter(field: str, directions: Sequence[int]) -> FieldFilter:
    return _enum_filter(field, "traffic_direction", _DIRECTION, directions, "TRAFFIC_DIRECTION_UNKNOWN")


def compile_drop_reason_filter(field: str, reasons: Sequence[int]) -> FieldFilter:
    wanted = enum_members(_DROP_REASON, reasons)
    dropped = frozenset((DROPPED, _DROPPED_NUMBER))

    def match(flow: FlowDict) -> bool:
        return flow.get("verdict") in dropped and flow.get("drop_reason_desc", "DROP_REASON_UNKNOWN") in wanted

    names = [enum_name(_DROP_REASON, n) for n in reasons]
    clauses: Needles = ((key_string("verdict", DROPPED),),)
    if all(name is not None and name != "DROP_REASON_UNKNOWN" for name in names):
        clauses += (tuple(key_string("drop_reason_desc", name) for name in names if name is not None),)
    return FieldFilter(field, match, COST_LOOKUP, clauses)


def compile_ip_version_filter(field: str, versions: Sequence[int]) -> FieldFilter:
    wanted = enum_members(_IP_VERSION, versions)

    def match(flow: FlowDict) -> bool:
        ip = flow.get("IP")
        return (ip.get("ipVersion", "IP_NOT_USED") if ip is not None else "IP_NOT_USED") in wanted

    names = [enum_name(_IP_VERSION, n) for n in versions]
    clause: Needles = ()
    if all(name is not None and name != "IP_NOT_USED" for name in names):
        clause = (tuple(key_string("ipVersion", name) for name in names if name is not None),)
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_reply_filter(field: str, replies: Sequence[bool]) -> FieldFilter:
    wanted = frozenset(bool(r) for r in replies)
    dropped = frozenset((DROPPED, _DROPPED_NUMBER))

    def match(flow: FlowDict) -> bool:
        reply = flow.get("is_reply")
        if reply is None:
            # Cilium leaves is_reply unset on drops; Hubble counts those as non-replies.
            if flow.get("verdict") not in dropped:
                return False
            reply = False
        return reply in wanted

    return FieldFilter(field, match, COST_LOOKUP)


def compile_encrypted_filter(field: str, values: Sequence[bool]) -> FieldFilter:
    wanted = frozenset(bool(v) for v in values)

    def match(flow: FlowDict) -> bool:
        ip = flow.get("IP")
        return (ip.get("encrypted", False) if ip is not None else False) in wanted

    clause: Needles = ((b'"encrypted":true',),) if wanted == {True} else ()
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_trace_id_filter(field: str, trace_ids: Sequence[str]) -> FieldFilter:
    wanted = frozenset(trace_ids)

    def match(flow: FlowDict) -> bool:
        ctx = flow.get("trace_context")
        parent = ctx.get("parent") if ctx is not None else None
        return (parent.get("trace_id", "") if parent is not None else "") in wanted

    clause: Needles = ()
    if all(t and json_safe(t) for t in trace_ids):
        clause = (tuple(key_string("trace_id", t) for t in trace_ids),)
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_ip_trace_id_filter(field: str, ids: Sequence[int]) -> FieldFilter:
    # uint64 values are JSON strings in canonical lines.
    wanted = frozenset(str(int(i)) for i in ids)

    def match(flow: FlowDict) -> bool:
        tid = flow.get("ip_trace_id")
        if tid is None:
            return False
        return str(tid.get("trace_id", 0)) in wanted

    clause: Needles = ((tuple(f'"trace_id":"{i}"'.encode() for i in sorted(wanted)),) if "0" not in wanted else ())
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_interface_filter(field: str, interfaces: Sequence[Mapping[str, Any]]) -> FieldFilter:
    specs = tuple((int(i.get("index", 0)), i.get("name", "")) for i in interfaces)

    def match(flow: FlowDict) -> bool:
        iface = flow.get("interface")
        if iface is None:
            return False
        index = iface.get("index", 0)
        name = iface.get("name", "")
        for want_index, want_name in specs:
            if (want_index == 0 or want_index == index) and (not want_name or want_name == name):
                return True
        return False

    return FieldFilter(field, match, COST_LOOKUP, ((b'"interface":{',),))


# ---------------------------------------------------------------------------------------------
# event_type: the one filter that also looks at non-flow events.


def compile_event_type_filter(field: str, filters: Sequence[Mapping[str, Any]]) -> tuple[FieldFilter, EventMatch]:
    """Returns the flow matcher and the matcher for non-flow events (whole event dicts)."""
    specs = tuple(
        (int(f.get("type", 0)), bool(f.get("match_sub_type", False)), int(f.get("sub_type", 0))) for f in filters
    )

    def match_flow(flow: FlowDict) -> bool:
        et = flow.get("event_type")
        if et is None:
            return False
        etype = et.get("type", 0)
        sub = et.get("sub_type", 0)
        for want_type, match_sub, want_sub in specs:
            if want_type != 0 and want_type != etype:
                continue
            if match_sub and want_sub != sub:
                continue
            return True
        return False

    # Type 0 is a wildcard here too.
    agent_subs = [(m, s) for t, m, s in specs if t in (0, AGENT_EVENT_TYPE)]
    debug_subs = [(m, s) for t, m, s in specs if t in (0, DEBUG_EVENT_TYPE)]

    def _sub_number(enum: Any, value: Any) -> int:
        if isinstance(value, int):
            return value
        v = enum.values_by_name.get(value)
        return 0 if v is None else int(v.number)

    def match_other(event: Mapping[str, Any]) -> bool:
        if "lost_events" in event:
            return True  # Hubble: lost events cannot be filtered out by type
        agent = event.get("agent_event")
        if agent is not None:
            number = _sub_number(_AGENT_EVENT_TYPE, agent.get("type", 0))
            return any(not m or s == number for m, s in agent_subs)
        debug = event.get("debug_event")
        if debug is not None:
            number = _sub_number(_DEBUG_EVENT_TYPE, debug.get("type", 0))
            return any(not m or s == number for m, s in debug_subs)
        return False

    needles: Needles = ()
    if all(t != 0 for t, _, _ in specs):
        alternatives = [f'"event_type":{{"type":{t}'.encode() for t, _, _ in specs]
        alternatives += [b'"lost_events":', b'"agent_event":', b'"debug_event":']
        needles = (tuple(dict.fromkeys(alternatives)),)
    return FieldFilter(field, match_flow, COST_SCAN, needles), match_other
