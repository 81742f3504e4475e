"""What hushflow asks Hubble for: the ``observer.Observer/GetFlows`` request.

:func:`upstream_request` builds the ``GetFlowsRequest`` that pushes the allowlist, denylist and
field mask upstream so Hubble sends only what hushflow reads (:data:`HUSHFLOW_UPSTREAM_FILTERS`,
:data:`HUSHFLOW_FIELD_MASK`): FlowFilters given as protojson dicts or messages, field mask paths
checked against ``flow.Flow`` as Hubble checks them, and ``since`` as RFC 3339 text, a datetime,
``(seconds, nanos)`` or a Timestamp. Pushing the allowlist upstream is what keeps a busy node
within the gRPC source's budget (see :mod:`hushflow.flow.grpc_source`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.protobuf import json_format, timestamp_pb2

from hushflow.flow.times import parse_timestamp
from hushflow.proto import flow_pb2, observer_pb2

__all__ = [
    "HUSHFLOW_FIELD_MASK",
    "HUSHFLOW_UPSTREAM_FILTERS",
    "FlowFilterLike",
    "SinceLike",
    "to_timestamp",
    "upstream_request",
]

#: What hushflow needs from Hubble (the allowlist pushed upstream; a flow matching any is sent):
#: DNS from the DNS proxy (L7 event, type 129; the answers teach hushflow the IPs behind names, and
#: the requests the proxy refuses are L7 drops), policy verdict events (type 5: FORWARDED, DROPPED
#: and AUDIT verdicts with their rule) and drop notifications (type 1: default deny and others).
HUSHFLOW_UPSTREAM_FILTERS: tuple[Mapping[str, Any], ...] = (
    {"event_type": [{"type": 129}], "protocol": ["dns"]},
    {"event_type": [{"type": 5}]},
    {"event_type": [{"type": 1}]},
)

#: The Flow fields hushflow reads (GetFlowsRequest.field_mask). Hubble validates the paths against
#: ``flow.Flow`` and copies only these (``pkg/hubble/parser/fieldmask``), so they name Flow fields
#: directly, without a ``flow.`` prefix. ``time`` and ``node_name`` must stay: Hubble builds the
#: response's own ``time`` and ``node_name`` from the masked flow.
HUSHFLOW_FIELD_MASK: tuple[str, ...] = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "IP", "l4", "source", "destination",
    "Type", "node_name", "node_labels", "source_names", "destination_names", "l7", "is_reply",
    "event_type", "source_service", "destination_service", "traffic_direction", "policy_match_type",
    "egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by", "policy_log",
    "Summary",
)

FlowFilterLike: TypeAlias = Mapping[str, Any] | flow_pb2.FlowFilter
SinceLike: TypeAlias = str | datetime | tuple[int, int] | timestamp_pb2.Timestamp


def upstream_request(
    *,
    follow: bool,
    allowlist: Sequence[FlowFilterLike],
    field_mask: Sequence[str],
    since: SinceLike | None = None,
    denylist: Sequence[FlowFilterLike] = (),
    number: int = 0,
) -> observer_pb2.GetFlowsRequest:
    """The ``GetFlowsRequest`` that asks Hubble for what hushflow reads.

    ``allowlist``/``denylist``: FlowFilters as dicts in protojson form
    (``{"event_type": [{"type": 129}], "protocol": ["dns"]}``) or messages; Hubble sends the flows
    matching any allowlist filter and no denylist filter. ``field_mask``: Flow field paths
    (``"l7"``, ``"source.namespace"``), checked here as Hubble checks them. ``since``: RFC 3339
    text, an aware datetime, ``(seconds, nanos)`` or a Timestamp. ``number``: the last N flows
    first (not with ``since``). Raises ValueError naming the bad filter, path or time.
    """
    request = observer_pb2.GetFlowsRequest(follow=follow, number=number)
    for i, f in enumerate(allowlist):
        request.whitelist.append(_flow_filter(f, f"allowlist[{i}]"))
    for i, f in enumerate(denylist):
        request.blacklist.append(_flow_filter(f, f"denylist[{i}]"))
    if field_mask:
        for path in field_mask:
            _check_field_mask_path(path)
        request.field_mask.paths.extend(field_mask)
    if since is not None:
        if number:
            raise ValueError("since cannot be combined with number (Hubble refuses it)")
        request.since.CopyFrom(to_timestamp(since))
    return request


def _flow_filter(f: FlowFilterLike, where: str) -> flow_pb2.FlowFilter:
    if isinstance(f, flow_pb2.FlowFilter):
        return f
    try:
        return json_format.ParseDict(dict(f), flow_pb2.FlowFilter())
    except json_format.ParseError as e:
        raise ValueError(f"{where}: not a Hubble FlowFilter: {e}") from None


def _check_field_mask_path(path: str) -> None:
    desc = flow_pb2.Flow.DESCRIPTOR
    parts = path.split(".")
    for i, part in enumerate(parts):
        fd = desc.fields_by_name.get(part) if desc is not None else None
        if fd is None:
            raise ValueError(
                f"field mask path {path!r}: flow.Flow has no field {'.'.join(parts[: i + 1])!r} "
                "(paths are relative to Flow, e.g. 'l7' or 'source.namespace')"
            )
        if i < len(parts) - 1 and (fd.is_repeated or fd.message_type is None):
            raise ValueError(f"field mask path {path!r}: {part!r} has no sub-fields")
        desc = fd.message_type


def to_timestamp(since: SinceLike) -> timestamp_pb2.Timestamp:
    """``since`` as a Timestamp (also for a resumed stream); raises ValueError saying what is wrong."""
    if isinstance(since, timestamp_pb2.Timestamp):
        return since
    if isinstance(since, tuple):
        seconds, nanos = since
    elif isinstance(since, datetime):
        if since.tzinfo is None:
            raise ValueError(f"since {since.isoformat()}: a time zone is needed (e.g. UTC)")
        delta = since - datetime(1970, 1, 1, tzinfo=UTC)
        seconds = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000
    else:
        try:
            seconds, nanos = parse_timestamp(since)
        except ValueError as e:
            raise ValueError(f"since: {e} (expected RFC 3339, e.g. 2026-03-02T09:00:00Z)") from None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
