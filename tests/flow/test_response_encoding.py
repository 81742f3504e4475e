"""The served GetFlowsResponse bytes (hushflow.flow.response_encoding) against ParseDict.

Whatever way encode_response takes (the received bytes with the enrichment appended, or the
general ParseDict), the bytes must parse to exactly the message ParseDict makes of the enriched
dict; a dict protobuf refuses gives None, never an exception.
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from hushflow.flow.proto_dict import response_bytes_to_event
from hushflow.flow.reader import FlowEvent
from hushflow.flow.response_encoding import APPENDED_FIELDS, encode_response, encode_response_dict
from hushflow.proto import flow_pb2, observer_pb2
from tests.doubles.observer_server import ObserverTestServer

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"
EXAMPLE = Path(__file__).parents[2] / "examples" / "telemetry-block"


def wire_of(line: bytes) -> bytes:
    return json_format.Parse(line, observer_pb2.GetFlowsResponse()).SerializeToString()


@pytest.fixture(scope="module")
def recorded() -> list[bytes]:
    """The recorded flows (not lost events or node status: the ring keeps only flows), as wire bytes."""
    wires = [wire_of(line) for line in gzip.decompress(RECORDED.read_bytes()).splitlines()]
    return [wire for wire in wires if "flow" in response_bytes_to_event(wire)]


def parse_dict(data: Any) -> observer_pb2.GetFlowsResponse:
    return json_format.ParseDict(data, observer_pb2.GetFlowsResponse(), ignore_unknown_fields=True)


def assert_encodes_as_parse_dict(data: dict[str, Any], wire: bytes | None) -> bytes:
    encoded = encode_response(data, wire)
    assert encoded is not None
    assert observer_pb2.GetFlowsResponse.FromString(encoded) == parse_dict(data)
    return encoded


POLICY = {"name": "deny-egress", "namespace": "shop", "labels": ["k8s:io.cilium.k8s.policy.name=deny-egress",
                                                                  "k8s:io.cilium.k8s.policy.namespace=shop"],
          "revision": "17", "kind": "CiliumNetworkPolicy"}
CLUSTERWIDE = {"name": "baseline", "labels": ["k8s:io.cilium.k8s.policy.name=baseline"], "revision": 3,
               "kind": "CiliumClusterwideNetworkPolicy"}


def enrich(data: dict[str, Any], n: int) -> None:
    """What the attribution does to a flow: Cilium's list (if any) followed by hushflow's entries."""
    flow = data["flow"]
    field = APPENDED_FIELDS[n % 4]
    flow[field] = list(flow.get(field, [])) + [POLICY, CLUSTERWIDE][: 1 + n % 2]
    flow["policy_log"] = list(flow.get("policy_log", [])) + ["shop-egress", ""][: 1 + n % 2]


def test_a_recorded_flow_is_served_as_received(recorded: list[bytes]) -> None:
    assert len(recorded) > 3000
    for wire in recorded:
        data = response_bytes_to_event(wire)
        assert encode_response(data, wire) is wire  # nothing added: the received bytes themselves
        assert observer_pb2.GetFlowsResponse.FromString(wire) == parse_dict(data)


def test_an_enriched_recorded_flow_is_the_received_bytes_with_the_additions_appended(recorded: list[bytes]) -> None:
    with_cilium_entries = 0
    for n, wire in enumerate(recorded):
        data = response_bytes_to_event(wire)
        with_cilium_entries += any(data["flow"].get(field) for field in APPENDED_FIELDS)
        enrich(data, n)
        encoded = assert_encodes_as_parse_dict(data, wire)
        assert encoded.startswith(wire) and len(encoded) > len(wire)
    assert with_cilium_entries > 100  # the recording has Cilium's own entries to append to


def test_flows_enriched_by_the_attribution_encode_as_parse_dict() -> None:
    from hushflow.app.enrich import make_attributor
    from hushflow.app.policies import load_job_policies
    from hushflow.policy.model import BuildOptions

    attributor = make_attributor(load_job_policies([str(EXAMPLE / "policies")], BuildOptions()).policy_set)
    appended = 0
    for line in (EXAMPLE / "flows.jsonl").read_bytes().splitlines():
        wire = wire_of(line)
        data = response_bytes_to_event(wire)
        if "flow" not in data:
            continue
        attributor.observe(data, now=0.0)
        encoded = assert_encodes_as_parse_dict(data, wire)
        assert encoded.startswith(wire)
        appended += len(encoded) > len(wire)
    assert appended >= 3  # the example's drops gain hushflow's policy_log


def changed_verdict(flow: dict[str, Any]) -> None:
    flow["verdict"] = "AUDIT"


def removed_summary(flow: dict[str, Any]) -> None:
    del flow["Summary"]


def added_field(flow: dict[str, Any]) -> None:
    flow["trace_observation_point"] = "TO_STACK"


def cilium_entry_replaced(flow: dict[str, Any]) -> None:
    flow["egress_allowed_by"] = [POLICY]


def cilium_list_dropped(flow: dict[str, Any]) -> None:
    del flow["egress_allowed_by"]


def nested_change(flow: dict[str, Any]) -> None:
    flow["source"]["labels"].append("k8s:extra=1")


@pytest.mark.parametrize("change", [changed_verdict, removed_summary, added_field, cilium_entry_replaced,
                                    cilium_list_dropped, nested_change])
def test_a_dict_changed_in_another_way_than_appending_is_encoded_from_the_dict(change: Any) -> None:
    data = {"flow": {"time": "2026-03-02T09:00:00Z", "verdict": "FORWARDED", "Summary": "TCP",
                     "source": {"labels": ["k8s:app=a"]},
                     "egress_allowed_by": [CLUSTERWIDE]}, "node_name": "n1", "time": "2026-03-02T09:00:00Z"}
    wire = parse_dict(data).SerializeToString()
    changed = copy.deepcopy(response_bytes_to_event(wire))
    change(changed["flow"])
    encoded = assert_encodes_as_parse_dict(changed, wire)
    assert not encoded.startswith(wire)


def test_a_changed_node_name_is_not_served_from_the_received_bytes() -> None:
    wire = parse_dict({"flow": {"verdict": "DROPPED"}, "node_name": "n1"}).SerializeToString()
    data = response_bytes_to_event(wire)
    data["node_name"] = "n2"
    assert observer_pb2.GetFlowsResponse.FromString(assert_encodes_as_parse_dict(data, wire)).node_name == "n2"


HOSTILE: list[tuple[str, Any]] = [
    ("a word for a number", {"flow": {"source": {"identity": "many"}}}),
    ("a tag that is not a string", {"flow": {"policy_log": [1]}}),
    ("a policy name that is not a string", {"flow": {"egress_denied_by": [{"name": 7}]}}),
    ("a negative revision", {"flow": {"egress_denied_by": [{"name": "p", "revision": "-1"}]}}),
    ("a revision past uint64", {"flow": {"egress_denied_by": [{"name": "p", "revision": 1 << 64}]}}),
    ("a boolean revision", {"flow": {"egress_denied_by": [{"name": "p", "revision": True}]}}),
    ("labels that are not a list", {"flow": {"ingress_denied_by": [{"labels": "a=b"}]}}),
    ("a list that is not a list", {"flow": {"policy_log": "tag"}}),
    ("a time that is not one", {"flow": {"time": "yesterday"}}),
    ("a flow that is not an object", {"flow": ["verdict"]}),
    ("a deep nesting", {"flow": {"source": {"labels": [[[[[[[[[[]]]]]]]]]]}}}),
]


@pytest.mark.parametrize(("name", "data"), HOSTILE, ids=[name for name, _ in HOSTILE])
def test_a_hostile_dict_gives_none_never_an_exception(name: str, data: dict[str, Any]) -> None:
    wire = parse_dict({"flow": {"verdict": "DROPPED"}, "node_name": "n1"}).SerializeToString()
    assert encode_response(data, None) is None
    assert encode_response(data, wire) is None
    # Appended to a received flow: the same refusal.
    appended = response_bytes_to_event(wire)
    appended["flow"].update(data["flow"]) if isinstance(data["flow"], dict) else None
    if isinstance(data["flow"], dict):
        assert encode_response(appended, wire) is None


def test_received_bytes_that_are_not_a_response_fall_back_to_the_dict() -> None:
    data = {"flow": {"verdict": "DROPPED", "policy_log": ["t"]}, "node_name": "n1"}
    assert_encodes_as_parse_dict(data, b"\xff\xff\xff")
    assert_encodes_as_parse_dict(data, b"")


def test_unknown_fields_in_the_received_bytes_are_passed_on() -> None:
    flow_field_9999 = b"\xfa\xf0\x04\x01x"  # field 9999 (length-delimited), unknown to this .proto
    flow = flow_pb2.Flow(verdict=flow_pb2.DROPPED).SerializeToString() + flow_field_9999
    wire = b"\x0a" + bytes([len(flow)]) + flow + observer_pb2.GetFlowsResponse(node_name="n1").SerializeToString()
    data = response_bytes_to_event(wire)
    data["flow"]["policy_log"] = ["t"]
    encoded = encode_response(data, wire)
    assert encoded is not None and flow_field_9999 in encoded
    message = observer_pb2.GetFlowsResponse.FromString(encoded)
    message.DiscardUnknownFields()  # the one difference from ParseDict, which cannot know them
    assert message == parse_dict(data)


texts = st.text(max_size=12)
policies = st.fixed_dictionaries({}, optional={
    "name": texts, "namespace": texts, "labels": st.lists(texts, max_size=3), "kind": texts,
    "revision": st.one_of(st.integers(min_value=-2, max_value=(1 << 64) + 1),
                          st.integers(min_value=0, max_value=1 << 66).map(str), texts),
})


@settings(max_examples=200, deadline=None)
@given(additions=st.fixed_dictionaries({}, optional={
    "egress_denied_by": st.lists(policies, max_size=3), "ingress_allowed_by": st.lists(policies, max_size=2),
    "policy_log": st.lists(texts, max_size=3)}))
def test_any_appended_entries_encode_as_parse_dict_or_are_refused(additions: dict[str, Any]) -> None:
    received = {"flow": {"verdict": "DROPPED", "egress_denied_by": [POLICY], "policy_log": [""]}, "node_name": "n1"}
    wire = parse_dict(received).SerializeToString()
    data = response_bytes_to_event(wire)
    for field, entries in additions.items():
        data["flow"][field] = data["flow"].get(field, []) + entries
    expected = encode_response_dict(data)
    encoded = encode_response(data, wire)
    if expected is None:
        assert encoded is None
    else:
        assert encoded is not None
        assert observer_pb2.GetFlowsResponse.FromString(encoded) == parse_dict(data)


def test_the_grpc_source_keeps_the_received_bytes_on_each_flow_event(recorded: list[bytes]) -> None:
    from hushflow.flow.grpc_source import GrpcFlowSource
    from hushflow.flow.protojson import encode_event

    lines = [encode_event(response_bytes_to_event(wire)) for wire in recorded[:50]]
    with ObserverTestServer(lines) as server:
        events: list[FlowEvent] = list(GrpcFlowSource(server.address, follow=False))
    assert len(events) == 50
    for event, wire in zip(events, recorded[:50], strict=True):
        assert event.wire == wire
        assert encode_response(event.data, event.wire) is event.wire


def test_a_file_event_has_no_received_bytes() -> None:
    assert FlowEvent(b"{}", {}, "f.jsonl", 1).wire is None


def test_a_proven_file_line_has_no_received_bytes() -> None:
    from hushflow.flow.reader import ProvenEvent

    line = b'{"flow":{"verdict":"DROPPED"},"node_name":"n1"}'
    assert ProvenEvent(line, len(line) - 18, "f.jsonl", 1).wire is None


def test_received_bytes_with_a_field_set_twice_are_served_as_the_dict_reads_them() -> None:
    # A hostile peer may repeat a singular field (protobuf: the last one wins) or the flow itself
    # (merged): the bytes passed on must say what the dict hushflow enriched and filtered says.
    dropped = parse_dict({"flow": {"verdict": "DROPPED", "Summary": "a"}}).SerializeToString()
    forwarded = parse_dict({"flow": {"verdict": "FORWARDED", "source": {"namespace": "x"}}}).SerializeToString()
    wire = dropped + forwarded + parse_dict({"node_name": "n1"}).SerializeToString()
    data = response_bytes_to_event(wire)
    assert data["flow"]["verdict"] == "FORWARDED" and data["flow"]["Summary"] == "a"
    data["flow"]["policy_log"] = ["t"]
    encoded = assert_encodes_as_parse_dict(data, wire)
    assert encoded.startswith(wire)
