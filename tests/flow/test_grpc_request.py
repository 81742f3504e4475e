"""The GetFlows request: filters, field mask and since pushed upstream, checked as Hubble checks them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from hushflow.flow.grpc_request import HUSHFLOW_FIELD_MASK, HUSHFLOW_UPSTREAM_FILTERS, upstream_request
from hushflow.flow.grpc_source import GrpcFlowSource, GrpcSourceError
from hushflow.proto import flow_pb2
from tests.doubles.observer_server import ObserverTestServer
from tests.flow.conftest import flow_line


def test_filters_and_field_mask_are_pushed_upstream(server: ObserverTestServer, lines: list[bytes]) -> None:
    source = GrpcFlowSource(server.address, follow=False, allowlist=HUSHFLOW_UPSTREAM_FILTERS,
                            denylist=[{"source_pod": ["kube-system/"]}], field_mask=HUSHFLOW_FIELD_MASK)
    events = list(source)
    (request,) = server.requests
    assert [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.whitelist] == [
        {"event_type": [{"type": 129}], "protocol": ["dns"]},
        {"event_type": [{"type": 5}]},
        {"event_type": [{"type": 1}]},
    ]
    assert [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in request.blacklist] == [
        {"source_pod": ["kube-system/"]}
    ]
    assert list(request.field_mask.paths) == list(HUSHFLOW_FIELD_MASK)
    # The double applies the mask as Hubble does: only those Flow fields come back.
    assert len(events) == len(lines)
    for event, line in zip(events, lines, strict=True):
        original = orjson.loads(line)
        kept = {k: v for k, v in original["flow"].items() if k in HUSHFLOW_FIELD_MASK}
        assert event.data == {"flow": kept, "node_name": original["node_name"], "time": original["time"]}
        assert "emitter" not in event.data["flow"]


def test_nested_field_mask_paths_make_the_parent_present_as_in_hubble() -> None:
    with ObserverTestServer([flow_line(1, "2026-03-02T09:00:00Z", "u1")]) as server:
        (event,) = GrpcFlowSource(server.address, follow=False, field_mask=["source.namespace"])
    assert event.data == {"flow": {"time": "2026-03-02T09:00:00Z", "uuid": "u1", "source": {}},
                          "time": "2026-03-02T09:00:00Z"}
    # time and uuid were added to the mask: resuming needs them.
    assert list(server.requests[0].field_mask.paths) == ["source.namespace", "time", "uuid"]


def test_upstream_request() -> None:
    request = upstream_request(follow=True, allowlist=[{"verdict": ["DROPPED"]}, flow_pb2.FlowFilter(reply=[True])],
                               field_mask=["l7", "source.namespace"], since="2026-03-02T09:00:00.25+01:00")
    assert request.follow and not request.number
    assert request.whitelist[0].verdict == [flow_pb2.DROPPED] and request.whitelist[1].reply == [True]
    assert list(request.field_mask.paths) == ["l7", "source.namespace"]
    assert (request.since.seconds, request.since.nanos) == (1772438400, 250_000_000)
    aware = dt.datetime(2026, 3, 2, 9, 0, 0, 5, tzinfo=dt.UTC)
    assert upstream_request(follow=False, allowlist=(), field_mask=(), since=aware).since.nanos == 5000
    assert not upstream_request(follow=False, allowlist=(), field_mask=()).HasField("field_mask")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"field_mask": ["flow.verdict"]}, "flow.Flow has no field 'flow'"),
        ({"field_mask": ["verdict.name"]}, "'verdict' has no sub-fields"),
        ({"allowlist": [{"no_such_filter": [1]}]}, "allowlist[0]: not a Hubble FlowFilter"),
        ({"since": "yesterday"}, "expected RFC 3339"),
        ({"since": dt.datetime(2026, 3, 2)}, "a time zone is needed"),
        ({"since": "2026-03-02T09:00:00Z", "number": 5}, "since cannot be combined with number"),
    ],
)
def test_upstream_request_errors_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"follow": True, "allowlist": (), "field_mask": (), **kwargs}
    with pytest.raises(ValueError, match=None) as info:
        upstream_request(**args)
    assert message in str(info.value)
    with pytest.raises(GrpcSourceError) as info2:
        GrpcFlowSource("localhost:4245", **{k: v for k, v in args.items() if k != "follow"})
    assert message in str(info2.value)
