"""CEL compatibility with Hubble (cel-go): typing, enums, uint, has(), repeated fields, errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from hushflow.filter import FilterError, compile_filters
from hushflow.filter.cel import CelFilterError, referenced_fields
from hushflow.filter.flowmessage import FlowMessageBuilder
from hushflow.proto import flow_pb2

FLOW: dict[str, Any] = {
    "time": "2026-03-02T09:00:00.001742260Z",
    "uuid": "u-1",
    "verdict": "DROPPED",
    "IP": {"source": "10.244.1.2", "destination": "1.1.1.1", "ipVersion": "IPv4"},
    "l4": {"TCP": {"source_port": 40000, "destination_port": 443, "flags": {"SYN": True}}},
    "source": {"identity": 49369, "namespace": "payments", "labels": ["k8s:app=api"], "pod_name": "api-1",
               "workloads": [{"name": "api", "kind": "Deployment"}]},
    "destination": {"identity": 2, "labels": ["reserved:world"]},
    "Type": "L3_L4",
    "destination_names": ["api.stripe.com", "stripe.com"],
    "event_type": {"type": 5},
    "traffic_direction": "EGRESS",
    "drop_reason_desc": "POLICY_DENY",
    "socket_cookie": "18446744073709551615",
    "egress_denied_by": [{"name": "block", "namespace": "payments", "labels": ["k8s:a=b"], "revision": "7",
                          "kind": "CiliumNetworkPolicy"}],
    "policy_log": ["pci-egress", "audit"],
}
EVENT = {"flow": FLOW}

MATCH_ROWS: list[tuple[str, str, bool]] = [
    ("enum constant", "_flow.verdict == Verdict.DROPPED", True),
    ("enum constant other", "_flow.verdict == Verdict.FORWARDED", False),
    ("qualified enum constant", "_flow.verdict == flow.Verdict.DROPPED", True),
    ("enum is an int", "_flow.verdict == 2", True),
    ("uint conversion", "_flow.l4.TCP.destination_port == uint(443)", True),
    ("uint literal", "_flow.l4.TCP.destination_port == 443u", True),
    ("has on set oneof", "has(_flow.l4.TCP)", True),
    ("has on unset oneof", "has(_flow.l4.UDP)", False),
    ("has on unset message", "has(_flow.l7)", False),
    ("unset nested message reads defaults", "_flow.l7.dns.query == ''", True),
    ("string field", "_flow.IP.source.startsWith('10.244.')", True),
    ("repeated string in", "'pci-egress' in _flow.policy_log", True),
    ("repeated string exists", "_flow.policy_log.exists(l, l.endsWith('egress'))", True),
    ("repeated string size", "size(_flow.destination_names) > 1", True),
    ("repeated message exists", "_flow.egress_denied_by.exists(p, p.name == 'block' && p.revision == 7u)", True),
    ("repeated message empty", "_flow.ingress_denied_by.size() > 0", False),
    ("nested message", "_flow.source.workloads[0].kind == 'Deployment'", True),
    ("int32 field", "_flow.event_type.type == 5", True),
    ("uint64 from JSON string", "_flow.socket_cookie == 18446744073709551615u", True),
    ("timestamp", "_flow.time > timestamp('2026-03-02T09:00:00Z')", True),
    ("timestamp nanos", "_flow.time == timestamp('2026-03-02T09:00:00.001742260Z')", True),
    ("wrapper unset is null", "_flow.is_reply == null", True),
    ("bool field", "_flow.l4.TCP.flags.SYN && !_flow.l4.TCP.flags.ACK", True),
    ("runtime error is no match", "_flow.destination_names[5] == 'x'", False),
    ("whole _flow used", "_flow != flow.Flow{}", True),
    ("literal mentioning _flow", "'_flow.uuid' != _flow.uuid", True),
]


@pytest.mark.parametrize(("expr", "expected"), [r[1:] for r in MATCH_ROWS], ids=[r[0] for r in MATCH_ROWS])
def test_cel_expression_matches_like_hubble(expr: str, expected: bool) -> None:
    compiled = compile_filters([{"experimental": {"cel_expression": [expr]}}], [])
    assert compiled(EVENT) is expected


REJECT_ROWS: list[tuple[str, str, str]] = [
    ("not bool", "_flow.verdict", 'error compiling CEL expression: got "int", wanted "bool" result type'),
    ("string result", "_flow.uuid", 'error compiling CEL expression: got "string", wanted "bool" result type'),
    ("message result", "_flow.source", 'error compiling CEL expression: got "flow.Endpoint", wanted "bool" result type'),
    ("wrapper is not bool", "_flow.is_reply", 'error compiling CEL expression: got "wrapper(bool)", wanted "bool" result type'),
    ("list result", "_flow.policy_log", 'error compiling CEL expression: got "list(string)", wanted "bool" result type'),
    ("uint vs int", "_flow.l4.TCP.destination_port == 443",
     "error compiling CEL expression: ERROR: <input>:1:31: found no matching overload for '_==_' applied to"
     " '(uint, int)'\n | _flow.l4.TCP.destination_port == 443\n | ..............................^"),
    ("enum vs string", "_flow.verdict == 'DROPPED'",
     "error compiling CEL expression: ERROR: <input>:1:15: found no matching overload for '_==_' applied to"
     " '(int, string)'\n | _flow.verdict == 'DROPPED'\n | ..............^"),
    ("undefined field", "_flow.nonexistent_field == 1",
     "error compiling CEL expression: ERROR: <input>:1:6: undefined field 'nonexistent_field'\n"
     " | _flow.nonexistent_field == 1\n | .....^"),
    ("undefined nested field", "_flow.source.pod == 'x'",
     "error compiling CEL expression: ERROR: <input>:1:13: undefined field 'pod'\n"
     " | _flow.source.pod == 'x'\n | ............^"),
    ("member call on a list", "_flow.policy_log.endsWith('x')",
     "error compiling CEL expression: ERROR: <input>:1:26: found no matching overload for 'endsWith' applied to"
     " 'list(string).(string)'\n | _flow.policy_log.endsWith('x')\n | .........................^"),
    ("global call on a message", "size(_flow.source) > 0",
     "error compiling CEL expression: ERROR: <input>:1:5: found no matching overload for 'size' applied to"
     " '(flow.Endpoint)'\n | size(_flow.source) > 0\n | ....^"),
    ("undeclared variable", "verdict == 1",
     "error compiling CEL expression: ERROR: <input>:1:1: undeclared reference to 'verdict' (in container 'flow')\n"
     " | verdict == 1\n | ^"),
]


@pytest.mark.parametrize(("expr", "message"), [r[1:] for r in REJECT_ROWS], ids=[r[0] for r in REJECT_ROWS])
def test_cel_expression_rejected_like_hubble(expr: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters([{"experimental": {"cel_expression": [expr]}}], [])
    assert str(info.value) == message


def test_syntax_error_is_rejected() -> None:
    with pytest.raises(FilterError, match=r"^error compiling CEL expression: ERROR: <input>:1:4: Syntax error"):
        compile_filters([{"experimental": {"cel_expression": ["1 +"]}}], [])


def test_expression_size_limit() -> None:
    expr = "true" + " && true" * 600
    with pytest.raises(FilterError, match="expression code point size exceeds limit"):
        compile_filters([{"experimental": {"cel_expression": [expr]}}], [])


HINT_ROWS = [
    ("_flow.policy_log.endsWith('x')", "_flow.policy_log.exists(l, l.endsWith('x'))"),
    ("_flow.source.labels.contains('app')", "_flow.source.labels.exists(l, l.contains('app'))"),
]


@pytest.mark.parametrize(("expr", "suggestion"), HINT_ROWS)
def test_hint_for_string_function_on_list(expr: str, suggestion: str) -> None:
    with pytest.raises(CelFilterError) as info:
        compile_filters([{"experimental": {"cel_expression": [expr]}}], [])
    assert info.value.hint is not None and suggestion in info.value.hint
    assert "hint" not in str(info.value)  # Hubble's message stays exactly Hubble's


FIELD_ROWS: list[tuple[str, frozenset[str] | None]] = [
    ("_flow.verdict == Verdict.AUDIT", frozenset({"verdict"})),
    ("has(_flow.l4.TCP) && _flow . source.namespace == 'a'", frozenset({"l4", "source"})),
    ("'_flow.uuid' in _flow.policy_log", frozenset({"policy_log"})),
    ("_flow == flow.Flow{}", None),
    ("[1].exists(_flow, _flow > 0)", None),
    ("true", frozenset()),
]


@pytest.mark.parametrize(("expr", "fields"), FIELD_ROWS)
def test_referenced_fields(expr: str, fields: frozenset[str] | None) -> None:
    assert referenced_fields(expr) == fields


GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


def test_message_builder_agrees_with_json_format() -> None:
    build = FlowMessageBuilder()
    for line in gzip.decompress(GOLDEN.read_bytes()).splitlines()[:600]:
        flow = orjson.loads(line)["flow"]
        expected = json_format.ParseDict(flow, flow_pb2.Flow())
        assert build(flow) == expected


def test_message_builder_converts_special_values() -> None:
    expected = json_format.ParseDict(FLOW | {"is_reply": False, "l7": {"latency_ns": "12", "dns": {"query": "a."}}},
                                     flow_pb2.Flow())
    assert FlowMessageBuilder()(FLOW | {"is_reply": False, "l7": {"latency_ns": "12", "dns": {"query": "a."}}}) == expected


def test_message_builder_ignores_unknown_fields() -> None:
    message = FlowMessageBuilder()({"verdict": "AUDIT", "field_from_the_future": 1})
    assert message.verdict == flow_pb2.AUDIT


def test_message_builder_prunes_fields() -> None:
    message = FlowMessageBuilder({"verdict", "time"})(FLOW)
    assert message.verdict == flow_pb2.DROPPED
    assert message.time.nanos == 1742260
    assert not message.HasField("IP")


FAST_EXPRESSIONS = [
    "_flow.verdict == Verdict.DROPPED",
    "_flow.verdict != Verdict.FORWARDED",
    "Verdict.AUDIT == _flow.verdict",
    "_flow.verdict == flow.Verdict.AUDIT",
    "_flow.verdict == 0",
    "_flow.traffic_direction == TrafficDirection.INGRESS",
    "_flow.drop_reason_desc == DropReason.POLICY_DENIED",
    "_flow.Type == FlowType.L7",
    "_flow.l7.type == L7FlowType.RESPONSE",
    "'pci-egress' in _flow.policy_log",
    "'api.stripe.com' in _flow.destination_names",
    "_flow.l7.dns.rcode == 3u",
    "_flow.l7.http.code == 404u",
    "_flow.event_type.type == 5",
    "_flow.event_type.sub_type == 0",
    "_flow.source.namespace == 'payments'",
    "_flow.source.namespace != \"payments\"",
    "_flow.destination.pod_name == ''",
    "_flow.l4.TCP.destination_port == 443u",
    "_flow.l4.UDP.destination_port != 53u",
    "_flow.l4.TCP.flags.SYN == true",
    "_flow.IP.encrypted == false",
    "_flow.IP.ipVersion == IPVersion.IPv4",
    "_flow.node_name == 'prod-eu1/ip-10-40-1-34.eu-west-1.compute.internal'",
    "_flow.interface.index == 0u",
    "_flow.trace_observation_point == TraceObservationPoint.TO_ENDPOINT",
    # the golden cases of hubble 1.19.4
    '_flow.source.namespace == "staging" && has(_flow.l4.TCP)',
    "size(_flow.destination_names) > 1",
    "_flow.egress_denied_by.size() > 0",
    # combinations, presence, sizes, ordering
    "has(_flow.l7) || _flow.verdict == Verdict.AUDIT",
    "!(has(_flow.is_reply)) && _flow.verdict != Verdict.FORWARDED",
    "has(_flow.l7.dns) && !has(_flow.l7.http)",
    "has(_flow.destination_names) && size(_flow.destination_names) <= 2",
    "has(_flow.source.workloads)",
    "has(_flow.uuid) && has(_flow.drop_reason_desc)",
    "_flow.l4.TCP.destination_port >= 1024u || _flow.l4.UDP.source_port < 100u",
    "_flow.verdict > Verdict.FORWARDED",
    "size(_flow.uuid) == 36 && _flow.source.pod_name >= 'm'",
    "(_flow.verdict == Verdict.DROPPED || _flow.verdict == Verdict.AUDIT) && _flow.traffic_direction == TrafficDirection.EGRESS",
    "_flow.source.namespace == 'payments' && 'pci-egress' in _flow.policy_log || _flow.verdict == Verdict.AUDIT",
    "size(_flow.egress_allowed_by) == 0",
    # comprehensions over repeated messages and strings, string methods
    "_flow.egress_allowed_by.exists(p, p.namespace == 'payments')",
    "_flow.ingress_allowed_by.exists(p, p.kind == 'CiliumNetworkPolicy' && p.name.startsWith('allow'))",
    "_flow.egress_denied_by.all(p, p.namespace != 'payments')",
    "_flow.egress_allowed_by.exists_one(p, size(p.labels) > 1)",
    "_flow.policy_log.exists(l, l.endsWith('egress'))",
    "_flow.destination_names.exists(n, n == 'api.stripe.com' || n.contains('amazonaws'))",
    "_flow.source.labels.exists(l, l.startsWith('k8s:app='))",
    "_flow.source.workloads.all(w, w.kind == 'Deployment') && has(_flow.source.workloads)",
    "_flow.node_labels.exists(l, size(l) > 40)",
    "_flow.egress_allowed_by.exists(p, p.labels.exists(l, l == 'k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy'))",
    "_flow.source.pod_name.startsWith('coredns') || _flow.destination.pod_name.endsWith('-0')",
]


@pytest.mark.parametrize("expr", FAST_EXPRESSIONS)
def test_fast_path_agrees_with_cel_runtime(expr: str) -> None:
    from hushflow.filter import cel

    env = cel.new_environment()
    program = cel.compile_expression(env, expr)
    shortcut = cel.fast_path(expr)
    assert shortcut is not None
    build = FlowMessageBuilder()
    lines = gzip.decompress(GOLDEN.read_bytes()).splitlines()
    for line in lines:
        flow = orjson.loads(line)["flow"]
        expected = program.eval(data={"_flow": build(flow)}).value() is True
        assert shortcut.match(flow) is expected, line[:200]
        if expected:
            assert all(any(n in line for n in clause) for clause in shortcut.needles)


NOT_FAST = [
    "_flow.socket_cookie == 5u",  # 64-bit: JSON string in the dict
    "_flow.egress_allowed_by.exists(p, p.namespace == _flow.source.namespace)",
    "_flow.policy_log.exists(l, l.matches('x'))",
    "_flow.time > timestamp('2026-01-01T00:00:00Z')",
    "_flow.source.namespace == 'a\\'b'",
    "_flow.is_reply == true",  # wrapper
    "_flow.event_type.type == Verdict.DROPPED",  # enum constant on an int field
]


@pytest.mark.parametrize("expr", NOT_FAST)
def test_no_fast_path_for_other_shapes(expr: str) -> None:
    from hushflow.filter.celfast import fast_path

    assert fast_path(expr) is None
