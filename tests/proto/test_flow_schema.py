"""hushflow's copy of the Hubble 1.19.4 schema: numbers, names and declaration order."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from hushflow.proto import (
    EXPORT_EVENT_DESCRIPTOR,
    FLOW_DESCRIPTOR,
    FLOW_FILTER_DESCRIPTOR,
    GET_FLOWS_RESPONSE_DESCRIPTOR,
    field_order,
    flow_pb2,
    observer_pb2,
)

FLOW_NUMBERS = {
    "time": 1, "uuid": 34, "emitter": 41, "verdict": 2, "drop_reason": 3, "auth_type": 35, "ethernet": 4, "IP": 5,
    "l4": 6, "tunnel": 39, "source": 8, "destination": 9, "Type": 10, "node_name": 11, "node_labels": 37,
    "source_names": 13, "destination_names": 14, "l7": 15, "reply": 16, "event_type": 19, "source_service": 20,
    "destination_service": 21, "traffic_direction": 22, "policy_match_type": 23, "trace_observation_point": 24,
    "trace_reason": 36, "file": 38, "drop_reason_desc": 25, "is_reply": 26, "debug_capture_point": 27,
    "interface": 28, "proxy_port": 29, "trace_context": 30, "ip_trace_id": 40, "sock_xlate_point": 31,
    "socket_cookie": 32, "cgroup_id": 33, "Summary": 100000, "extensions": 150000, "egress_allowed_by": 21001,
    "ingress_allowed_by": 21002, "egress_denied_by": 21004, "ingress_denied_by": 21005, "policy_log": 21006,
    "aggregate": 21007,
}
FLOW_FILTER_NUMBERS = {
    "uuid": 29, "source_ip": 1, "source_ip_xlated": 34, "source_pod": 2, "source_fqdn": 7, "source_label": 10,
    "source_service": 16, "source_workload": 26, "source_cluster_name": 37, "destination_ip": 3,
    "destination_pod": 4, "destination_fqdn": 8, "destination_label": 11, "destination_service": 17,
    "destination_workload": 27, "destination_cluster_name": 38, "traffic_direction": 30, "verdict": 5,
    "drop_reason_desc": 33, "interface": 35, "event_type": 6, "http_status_code": 9, "protocol": 12,
    "source_port": 13, "destination_port": 14, "reply": 15, "dns_query": 18, "source_identity": 19,
    "destination_identity": 20, "http_method": 21, "http_path": 22, "http_url": 31, "http_header": 32,
    "tcp_flags": 23, "node_name": 24, "node_labels": 36, "ip_version": 25, "trace_id": 28, "ip_trace_id": 39,
    "encrypted": 40, "experimental": 999,
}


@pytest.mark.parametrize(("descriptor", "numbers"), [(FLOW_DESCRIPTOR, FLOW_NUMBERS),
                                                     (FLOW_FILTER_DESCRIPTOR, FLOW_FILTER_NUMBERS)],
                         ids=["Flow", "FlowFilter"])
def test_field_numbers(descriptor: Descriptor, numbers: dict[str, int]) -> None:
    assert {f.name: f.number for f in descriptor.fields} == numbers


def test_flow_filter_declaration_order_matches_print_raw_filters() -> None:
    # Orders seen in `hubble observe --print-raw-filters` output (protojson = declaration order).
    order = field_order(FLOW_FILTER_DESCRIPTOR)
    for seen in (["source_ip", "destination_identity"], ["verdict", "event_type"], ["traffic_direction", "verdict"],
                 ["source_cluster_name", "verdict"], ["verdict", "protocol", "ip_version"],
                 ["destination_pod", "http_method"], ["verdict", "destination_port"], ["source_pod", "destination_pod"]):
        assert [order[k] for k in seen] == sorted(order[k] for k in seen)


def test_observer_messages() -> None:
    for desc in (GET_FLOWS_RESPONSE_DESCRIPTOR, EXPORT_EVENT_DESCRIPTOR):
        assert desc.fields_by_name["node_name"].number == 1000
        assert desc.fields_by_name["time"].number == 1001
        assert [f.name for f in desc.oneofs_by_name["response_types"].fields][:3] == ["flow", "node_status", "lost_events"]
    assert [f.name for f in EXPORT_EVENT_DESCRIPTOR.oneofs_by_name["response_types"].fields][3:] == ["agent_event", "debug_event"]
    request = observer_pb2.GetFlowsRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "number": 1, "first": 9, "follow": 3, "blacklist": 5, "whitelist": 6, "since": 7, "until": 8,
        "field_mask": 10, "experimental": 999, "extensions": 150000,
    }


def test_enums() -> None:
    assert flow_pb2.Verdict.Name(7) == "TRANSLATED"
    assert flow_pb2.DropReason.Value("POLICY_DENY") == 181
    assert flow_pb2.DropReason.Value("DROP_PUNT_PROXY") == 205
    assert 159 not in flow_pb2.DropReason.values()
    assert flow_pb2.TraceObservationPoint.Value("TO_CRYPTO") == 13
    assert flow_pb2.TraceReason.Name(3) == "REPLY"


GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


def _check_order(obj: dict[str, Any], desc: Descriptor, path: str) -> None:
    order = field_order(desc)
    positions = [order[k] for k in obj]  # KeyError: a key the schema does not know
    assert positions == sorted(positions), f"{path}: {list(obj)}"
    for key, value in obj.items():
        sub = desc.fields_by_name[key].message_type
        if sub is None or sub.full_name.startswith("google.protobuf."):
            continue
        for item in value if isinstance(value, list) else [value]:
            _check_order(item, sub, f"{path}.{key}")


def test_hubble_lines_use_declaration_order() -> None:
    # Hubble 1.19.4 re-encodes these lines byte for byte, so their key order is protojson's,
    # i.e. the upstream declaration order: ours must be the same.
    for line in gzip.decompress(GOLDEN.read_bytes()).splitlines():
        event = orjson.loads(line)
        _check_order(event, GET_FLOWS_RESPONSE_DESCRIPTOR, "")
        json_format.ParseDict(event, observer_pb2.GetFlowsResponse())
