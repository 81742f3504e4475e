"""Every JSON spelling of a Hubble event converts to the one `hubble observe -o jsonpb` prints."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from hushflow.flow.protojson import (
    EventNormalizer,
    ProtoJSONError,
    encode_event,
    format_timestamp,
    is_canonical_flow_event,
    parse_timestamp,
)
from hushflow.proto import observer_pb2

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


@pytest.fixture(scope="module")
def recorded_lines() -> list[bytes]:
    return gzip.decompress(RECORDED.read_bytes()).splitlines()


def _normalize(data: Any) -> tuple[bytes, bool]:
    result = EventNormalizer().normalize(data)
    return encode_event(result.event), result.changed


def test_recorded_lines_are_canonical_and_unchanged(recorded_lines: list[bytes]) -> None:
    for line in recorded_lines:
        data = orjson.loads(line)
        assert is_canonical_flow_event(data)
        assert _normalize(data) == (line, False)


def _proto(line: bytes) -> observer_pb2.GetFlowsResponse:
    msg = observer_pb2.GetFlowsResponse()
    json_format.Parse(line, msg)
    return msg


SPELLINGS = {
    "lowerCamel": {},
    "enum numbers": {"use_integers_for_enums": True, "preserving_proto_field_name": True},
    "lowerCamel and enum numbers": {"use_integers_for_enums": True},
}


@pytest.mark.parametrize("options", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_protojson_spellings_convert_to_the_recorded_line(recorded_lines: list[bytes], options: Any) -> None:
    for line in recorded_lines[:300]:
        other = json_format.MessageToJson(_proto(line), indent=None, **options).encode()
        assert not is_canonical_flow_event(orjson.loads(other)) or other == line
        assert _normalize(orjson.loads(other))[0] == line


def test_sixty_four_bit_numbers_convert_to_strings(recorded_lines: list[bytes]) -> None:
    line = next(ln for ln in recorded_lines if b'"revision":"' in ln)
    data = orjson.loads(line)
    for pol in data["flow"]["egress_allowed_by"] + data["flow"].get("ingress_allowed_by", []):
        pol["revision"] = int(pol["revision"])
    assert not is_canonical_flow_event(data)
    assert _normalize(data) == (line, True)


def test_bare_flow_is_wrapped_like_hubble(recorded_lines: list[bytes]) -> None:
    line = recorded_lines[0]
    bare = orjson.loads(line)["flow"]
    assert _normalize(bare) == (line, True)


CONVERSION_ROWS = [
    ("keys put in declaration order", {"flow": {"verdict": "DROPPED", "time": "2026-03-02T09:00:00Z"}},
     b'{"flow":{"time":"2026-03-02T09:00:00Z","verdict":"DROPPED"}}'),
    ("default values dropped", {"flow": {"verdict": "VERDICT_UNKNOWN", "uuid": "", "node_labels": [],
                                         "source": {"identity": 0}}},
     b'{"flow":{"source":{}}}'),
    ("null means default", {"flow": {"verdict": None, "Summary": "x"}}, b'{"flow":{"Summary":"x"}}'),
    ("wrapper false kept", {"flow": {"is_reply": False}}, b'{"flow":{"is_reply":false}}'),
    ("32-bit from string", {"flow": {"source": {"identity": "42"}}}, b'{"flow":{"source":{"identity":42}}}'),
    ("timestamp with offset", {"flow": {"time": "2026-03-02T10:00:00.5+01:00"}},
     b'{"flow":{"time":"2026-03-02T09:00:00.500Z"}}'),
    ("unknown enum number kept as number", {"flow": {"drop_reason_desc": 250}},
     b'{"flow":{"drop_reason_desc":250}}'),
    ("bare lost event", {"source": "HUBBLE_RING_BUFFER", "num_events_lost": 3},
     b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"}}'),
    ("camel lost events", {"lostEvents": {"source": 1, "numEventsLost": "3", "cpu": 1}, "nodeName": "n"},
     b'{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"3","cpu":1},"node_name":"n"}'),
    ("agent event", {"agent_event": {"type": "AGENT_STARTED"}, "time": "2026-03-02T09:00:00Z"},
     b'{"agent_event":{"type":"AGENT_STARTED"},"time":"2026-03-02T09:00:00Z"}'),
    ("html characters escaped as Go does", {"flow": {"Summary": "<&>"}},
     b'{"flow":{"Summary":"\\u003c\\u0026\\u003e"}}'),
]


@pytest.mark.parametrize(("data", "want"), [r[1:] for r in CONVERSION_ROWS], ids=[r[0] for r in CONVERSION_ROWS])
def test_conversion(data: Any, want: bytes) -> None:
    assert _normalize(data)[0] == want


ERROR_ROWS = [
    ("not an object", [1, 2], "expected a JSON object, got array"),
    ("no event", {"time": "2026-03-02T09:00:00Z"}, "no flow or event in line"),
    ("enum of wrong type", {"flow": {"verdict": 5.5}}, "flow.verdict: expected an enum name or number"),
    ("object of wrong type", {"flow": {"source": "x"}}, "flow.source: expected an object, got string"),
    ("list of wrong type", {"flow": {"source": {"labels": "k8s:a=b"}}}, "flow.source.labels: expected an array"),
    ("list element of wrong type", {"flow": {"node_labels": [1]}}, "flow.node_labels[0]: expected a string"),
    ("uint32 out of range", {"flow": {"source": {"identity": -1}}}, "-1 out of range for uint32"),
    ("64-bit not a number", {"flow": {"socket_cookie": "abc"}}, "flow.socket_cookie: expected an integer"),
    ("bad timestamp", {"flow": {"time": "yesterday"}}, "flow.time: invalid timestamp 'yesterday'"),
    ("two events in one line", {"flow": {}, "lost_events": {}}, "oneof response_types already set"),
    ("field given twice", {"flow": {}, "node_name": "a", "nodeName": "b"}, "field given twice"),
    ("bool of wrong type", {"flow": {"is_reply": "yes"}}, "flow.is_reply: expected true or false"),
]


@pytest.mark.parametrize(("data", "message"), [r[1:] for r in ERROR_ROWS], ids=[r[0] for r in ERROR_ROWS])
def test_invalid_values_are_rejected(data: Any, message: str) -> None:
    with pytest.raises(ProtoJSONError, match=None) as info:
        EventNormalizer().normalize(data)
    assert message in str(info.value)


def test_unknown_fields_are_dropped_and_reported() -> None:
    result = EventNormalizer().normalize({"flow": {"verdict": "DROPPED", "future_field": 1}})
    assert result.event == {"flow": {"verdict": "DROPPED"}}
    assert result.changed
    assert result.unknown_fields == ["flow.Flow.future_field"]


FAST_PATH_REJECTS = [
    ("camel key", {"flow": {"eventType": {"type": 1}}}),
    ("enum number", {"flow": {"verdict": 2}}),
    ("unhashable enum", {"flow": {"verdict": ["DROPPED"]}}),
    ("wrong object type", {"flow": {"source": "x"}}),
    ("64-bit number", {"flow": {"socket_cookie": 5}}),
    ("revision number", {"flow": {"egress_denied_by": [{"revision": 2}]}}),
    ("latency number", {"flow": {"l7": {"latency_ns": 2}}}),
    ("wrapper key unknown", {"flow": {}, "extra": 1}),
    ("not a flow", {"lost_events": {}}),
]


@pytest.mark.parametrize("data", [r[1] for r in FAST_PATH_REJECTS], ids=[r[0] for r in FAST_PATH_REJECTS])
def test_fast_path_sends_other_spellings_to_the_slow_path(data: Any) -> None:
    assert not is_canonical_flow_event(data)


@pytest.mark.parametrize(("text", "want"), [
    ("2026-03-02T09:00:00Z", "2026-03-02T09:00:00Z"),
    ("2026-03-02T09:00:00.1Z", "2026-03-02T09:00:00.100Z"),
    ("2026-03-02T09:00:00.0001Z", "2026-03-02T09:00:00.000100Z"),
    ("2026-03-02T09:00:00.123456789Z", "2026-03-02T09:00:00.123456789Z"),
    ("2026-03-02T09:00:00-02:30", "2026-03-02T11:30:00Z"),
])
def test_timestamp_round_trip(text: str, want: str) -> None:
    assert format_timestamp(*parse_timestamp(text)) == want


@pytest.mark.parametrize("number", [2**31, -(2**31) - 1])
def test_an_enum_number_beyond_int32_is_refused(number):
    """An enum is an int32 on the wire; protojson (and the CEL message builder) refuse a bigger
    number. Found by the CEL fuzz target (FUZZ_SEED=1248679085)."""
    from hushflow.flow.protojson import EventNormalizer, ProtoJSONError

    with pytest.raises(ProtoJSONError, match="out of range"):
        EventNormalizer().normalize({"flow": {"traffic_direction": number}})
    assert EventNormalizer().normalize({"flow": {"traffic_direction": 2**31 - 1}}).event["flow"] == {
        "traffic_direction": 2**31 - 1}
