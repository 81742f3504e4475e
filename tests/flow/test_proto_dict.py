"""proto_dict: a GetFlowsResponse message → the canonical dict, byte-identical to Hubble's jsonpb."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import any_pb2, json_format, timestamp_pb2
from google.protobuf.message import DecodeError

from hushflow.flow.proto_dict import (
    ProtoDictError,
    compile_message_to_dict,
    format_duration,
    response_bytes_to_event,
    response_to_event,
)
from hushflow.flow.protojson import encode_event
from hushflow.flow.times import format_timestamp
from hushflow.proto import flow_pb2, observer_pb2

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


def parse(line: bytes | str) -> observer_pb2.GetFlowsResponse:
    return json_format.Parse(line, observer_pb2.GetFlowsResponse())


def test_every_recorded_line_round_trips_byte_for_byte() -> None:
    lines = gzip.decompress(RECORDED.read_bytes()).splitlines()
    assert len(lines) == 4000
    mismatched = [i for i, line in enumerate(lines, 1) if encode_event(response_to_event(parse(line))) != line]
    assert mismatched == []


def test_converted_dict_equals_what_orjson_reads_from_the_line() -> None:
    line = gzip.decompress(RECORDED.read_bytes()).splitlines()[0]
    event = response_to_event(parse(line))
    assert event == orjson.loads(line)
    assert list(event["flow"]) == list(orjson.loads(line)["flow"])  # declaration order, not numbers


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (1772442000, 0, "2026-03-02T09:00:00Z"),
        (1772442000, 500_000_000, "2026-03-02T09:00:00.500Z"),
        (1772442000, 1_000, "2026-03-02T09:00:00.000001Z"),
        (1772442000, 1_742_260, "2026-03-02T09:00:00.001742260Z"),
        (1772442000, 1, "2026-03-02T09:00:00.000000001Z"),
        (0, 0, "1970-01-01T00:00:00Z"),
    ],
)
def test_timestamps_use_0_3_6_or_9_fraction_digits(seconds: int, nanos: int, expected: str) -> None:
    assert format_timestamp(seconds, nanos) == expected
    msg = observer_pb2.GetFlowsResponse(time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    msg.flow.time.CopyFrom(msg.time)
    assert response_to_event(msg) == {"flow": {"time": expected}, "time": expected}


def test_timestamp_memo_does_not_leak_between_seconds() -> None:
    out = []
    for seconds in (10, 10, 11, 10):
        msg = observer_pb2.GetFlowsResponse(time=timestamp_pb2.Timestamp(seconds=seconds, nanos=7))
        out.append(response_to_event(msg)["time"])
    assert out == ["1970-01-01T00:00:10.000000007Z", "1970-01-01T00:00:10.000000007Z",
                   "1970-01-01T00:00:11.000000007Z", "1970-01-01T00:00:10.000000007Z"]


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(253402300800, 0), (-62135596801, 0), (1 << 62, 0), (-(1 << 63), 0), ((1 << 63) - 1, 0),
     (1772442000, -1), (1772442000, 1_000_000_000)],
)
def test_a_timestamp_out_of_protojsons_range_has_no_json_form(seconds: int, nanos: int) -> None:
    # Go's protojson refuses to write it; so do both converters (the C one hands it to Python).
    msg = observer_pb2.GetFlowsResponse(time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    with pytest.raises(ProtoDictError, match="out of range"):
        response_to_event(msg)
    with pytest.raises(ProtoDictError, match="out of range"):
        response_bytes_to_event(msg.SerializeToString())
    ext = any_pb2.Any()
    ext.Pack(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    with pytest.raises(ProtoDictError, match="out of range"):
        flow_event(extensions=ext)


@pytest.mark.parametrize("raw", [
    b"\x00\x00",  # GetFlowsResponse: field 0
    b"\x02\x00\n\x00",  # field 0 (length-delimited), then an empty flow
    b"\n\x02\x00\x00",  # field 0 inside the Flow
    b"\n\x05\xd2\x01\x02\x00\x00",  # inside the is_reply wrapper
    b"\n\x08\n\x06\x00\x90\xa3\x95\xcd\x06",  # inside the flow's time (a Timestamp)
    b"\x80\x80\x80\x80\x10\x00",  # field 2**29: one above the largest field number
    b"\n\x06\x80\x80\x80\x80\x10\x00",  # the same inside the Flow
], ids=["response", "before the flow", "flow", "wrapper", "timestamp", "2**29", "2**29 in the flow"])
def test_a_tag_of_no_field_number_is_refused_by_both_converters(raw: bytes) -> None:
    # Fields are numbered 1 to 2**29 - 1 and protobuf refuses any other tag; the C converter hands
    # such bytes back instead of skipping the tag as an unknown field.
    with pytest.raises(DecodeError):
        observer_pb2.GetFlowsResponse.FromString(raw)
    with pytest.raises(DecodeError):
        response_bytes_to_event(raw)


def test_an_any_in_a_flow_a_later_oneof_member_replaces_is_never_converted() -> None:
    raw = b"\n\x04\x82\x9fI\x00\x12\x00"  # flow {extensions: Any{}}, then node_status {}: it wins
    assert response_to_event(observer_pb2.GetFlowsResponse.FromString(raw)) == {"node_status": {}}
    assert response_bytes_to_event(raw) == {"node_status": {}}


def test_the_ends_of_a_timestamps_range_are_written_by_both_converters() -> None:
    for seconds, nanos, text in ((-62135596800, 0, "0001-01-01T00:00:00Z"),
                                 (253402300799, 999_999_999, "9999-12-31T23:59:59.999999999Z")):
        msg = observer_pb2.GetFlowsResponse(time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        assert response_to_event(msg) == response_bytes_to_event(msg.SerializeToString()) == {"time": text}


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [(1, 0, "1s"), (1, 500_000_000, "1.500s"), (-1, -500_000_000, "-1.500s"), (0, 1_000, "0.000001s"),
     (0, 0, "0s")],
)
def test_durations(seconds: int, nanos: int, expected: str) -> None:
    assert format_duration(seconds, nanos) == expected


def flow_event(**flow: Any) -> dict[str, Any]:
    return response_to_event(observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(**flow)))


def test_defaults_are_omitted_and_64_bit_integers_are_strings() -> None:
    event = flow_event(verdict=flow_pb2.VERDICT_UNKNOWN, drop_reason=0, socket_cookie=2**64 - 1, cgroup_id=0,
                       node_labels=[])
    assert event == {"flow": {"socket_cookie": "18446744073709551615"}}


def test_is_reply_is_a_plain_bool_printed_when_set_even_false() -> None:
    assert flow_event(is_reply={"value": False}) == {"flow": {"is_reply": False}}
    assert flow_event(is_reply={"value": True}) == {"flow": {"is_reply": True}}
    assert flow_event() == {"flow": {}}


def test_an_empty_but_set_message_is_printed_as_an_empty_object() -> None:
    msg = observer_pb2.GetFlowsResponse()
    msg.flow.source.SetInParent()
    assert response_to_event(msg) == {"flow": {"source": {}}}


def test_unknown_enum_numbers_stay_numbers() -> None:
    msg = flow_pb2.Flow()
    msg.verdict = 99  # type: ignore[assignment]  # proto3 enums are open
    msg.drop_reason_desc = 133  # type: ignore[assignment]
    assert response_to_event(observer_pb2.GetFlowsResponse(flow=msg)) == {
        "flow": {"verdict": 99, "drop_reason_desc": "POLICY_DENIED"}
    }


def test_oneof_member_is_printed_even_when_empty() -> None:
    msg = observer_pb2.GetFlowsResponse()
    msg.flow.l4.UDP.SetInParent()
    assert response_to_event(msg) == {"flow": {"l4": {"UDP": {}}}}


def test_lost_events_and_node_status() -> None:
    lost = parse(b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"42","cpu":0},'
                 b'"node_name":"n1","time":"2026-03-02T09:00:00.100Z"}')
    assert encode_event(response_to_event(lost)) == (
        b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"42","cpu":0},'
        b'"node_name":"n1","time":"2026-03-02T09:00:00.100Z"}')
    status = observer_pb2.GetFlowsResponse(node_status={"state_change": "NODE_UNAVAILABLE", "node_names": ["a", "b"]})
    assert response_to_event(status) == {"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["a", "b"]}}


def test_html_characters_are_escaped_as_go_does() -> None:
    event = flow_event(Summary="a<b>&c")
    assert encode_event(event) == b'{"flow":{"Summary":"a\\u003cb\\u003e\\u0026c"}}'


def test_any_extension_of_a_known_type_is_inlined_with_its_type() -> None:
    ext = any_pb2.Any()
    ext.Pack(flow_pb2.Emitter(name="Hubble", version="1.19.4"))
    event = flow_event(extensions=ext)
    assert event == {"flow": {"extensions": {"@type": "type.googleapis.com/flow.Emitter",
                                             "name": "Hubble", "version": "1.19.4"}}}
    # protobuf's own JSON agrees.
    assert json_format.MessageToDict(flow_pb2.Flow(extensions=ext), preserving_proto_field_name=True) == event["flow"]


def test_any_extension_of_a_well_known_type_has_a_value_key() -> None:
    ext = any_pb2.Any()
    ext.Pack(timestamp_pb2.Timestamp(seconds=1, nanos=0))
    assert flow_event(extensions=ext) == {
        "flow": {"extensions": {"@type": "type.googleapis.com/google.protobuf.Timestamp",
                                "value": "1970-01-01T00:00:01Z"}}}


def test_any_extension_of_an_unknown_type_is_an_error() -> None:
    ext = any_pb2.Any(type_url="type.googleapis.com/vendor.Unknown", value=b"\x08\x01")
    with pytest.raises(ProtoDictError, match=r"vendor\.Unknown"):
        flow_event(extensions=ext)


def test_other_message_types_agree_with_protobuf_json_except_key_order() -> None:
    # Agent and debug events carry wrappers, 64-bit fields, repeated messages and enums.
    event = observer_pb2.ExportEvent()
    json_format.ParseDict({
        "agent_event": {"type": "ENDPOINT_REGENERATE_SUCCESS",
                        "endpoint_regenerate": {"id": "12", "labels": ["k8s:app=a"]}},
        "node_name": "n", "time": "2026-03-02T09:00:00Z"}, event)
    convert = compile_message_to_dict(observer_pb2.ExportEvent.DESCRIPTOR)
    assert convert(event) == json_format.MessageToDict(event, preserving_proto_field_name=True)
    debug = observer_pb2.ExportEvent()
    json_format.ParseDict({"debug_event": {"type": "DBG_CT_VERDICT", "hash": 7, "arg1": 0, "cpu": 1,
                                           "message": "m"}}, debug)
    assert convert(debug) == json_format.MessageToDict(debug, preserving_proto_field_name=True)
