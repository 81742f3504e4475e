"""Crashes the fuzz targets found, each as the smallest input that shows it.

A crash in a file another session owns is an xfail (strict) test here, with its owner in the
reason, and a `harness.KNOWN` entry so the fuzz targets go on past it; when the fix lands the
test passes, strict xfail turns that into a failure, and both the mark and the entry go.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError

from hushflow.enforce.state import DenyState, StateError, journal_path
from hushflow.flow.proto_dict import response_bytes_to_event, response_to_event
from hushflow.flow.reader import FlowReader, ReadStats
from hushflow.policy.lint import lint_paths
from hushflow.proto import observer_pb2


def _lint(text: str) -> list[str]:
    report = lint_paths(["-"], stdin=io.StringIO(text))
    return [f"{d.code} {d.location}" for d in report.diagnostics]


def test_fqdn_deny_with_toports_not_a_list_is_diagnosed() -> None:
    text = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
            "spec:\n  endpointSelector: {}\n  egressDeny:\n  - toFQDNs: []\n    toPorts: true\n")
    found = _lint(text)
    assert any(line.startswith("HF010 <stdin>:8") for line in found), found



@pytest.mark.parametrize("l7", [
    "rules: true", "rules: [dns]", "rules: {dns: 5}", "rules: {dns: [5, {matchName: 7}, {matchPattern: [1]}]}",
    "serverNames: 5", "serverNames: [1, {a: b}]",
])
def test_l7_of_any_shape_in_a_deny_rule_is_diagnosed(l7: str) -> None:
    # Found by test_fuzz_policy_documents: the schema names L7 in a deny rule (HF021) without
    # checking its shape, and the model builder then failed on it (AttributeError, TypeError).
    text = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
            "spec:\n  endpointSelector: {}\n  egressDeny:\n  - toCIDR: [10.0.0.0/8]\n    toPorts:\n"
            f"    - ports: [{{port: '80'}}]\n      {l7}\n")
    assert any(line.startswith("HF021 <stdin>:10") for line in _lint(text)), _lint(text)


@pytest.mark.parametrize("auth", ["true", "5", "[1]", "{mode: [1]}"])
def test_authentication_of_any_shape_in_a_deny_rule_is_diagnosed(auth: str) -> None:
    # Found next to the L7 case: authentication in a deny rule (HF022) is not checked by the schema either.
    text = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
            f"spec:\n  endpointSelector: {{}}\n  egressDeny:\n  - toCIDR: [10.0.0.0/8]\n    authentication: {auth}\n")
    assert any(line.startswith("HF022 <stdin>:8") for line in _lint(text)), _lint(text)

# -- flow/reader.py: the line layer --------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_an_overlong_line_is_a_line_whatever_the_chunks(chunk_size: int) -> None:
    # Found by test_fuzz_flow_lines: a line longer than max_line_bytes that did not end in the
    # chunk it started in was a bad line but not a line (lines != events + bad_lines).
    doc = b'{"flow":{}}\n' + b"x" * 100 + b"\n" + b'{"flow":{}}'
    stats = ReadStats()
    events = list(FlowReader(["-"], stdin=io.BytesIO(doc), stats=stats, chunk_size=chunk_size, max_line_bytes=80))
    assert [e.line for e in events] == [1, 3]
    assert [b.line for b in stats.reported] == [2]
    assert (stats.lines, stats.events, stats.bad_lines) == (3, 2, 1)



@pytest.mark.parametrize("chunk_size", [1, 2, 1 << 20])
def test_one_bom_is_stripped_whatever_the_chunks(chunk_size: int) -> None:
    # Found by test_fuzz_flow_lines: read a byte at a time, every BOM before the first newline
    # was stripped (the check ran while the line number was 0), read at once only the first.
    bom = b"\xef\xbb\xbf"
    doc = bom + bom + b'{"flow":{}}\n' + bom + b'{"flow":{}}\n'
    stats = ReadStats()
    events = list(FlowReader(["-"], stdin=io.BytesIO(doc), stats=stats, chunk_size=chunk_size))
    assert events == [] and [b.line for b in stats.reported] == [1, 2]
    single = list(FlowReader(["-"], stdin=io.BytesIO(bom + b'{"flow":{}}\n'), chunk_size=chunk_size))
    assert [e.line for e in single] == [1]

# -- enforce/state.py (the lead's): DenyState.load and replay_journal ---------------------------

_LEAD_STATE = "enforce/state.py (lead): "
_DENY = "cnp.my-namespace.app-external-block-policy.egressdeny-0"
_RECORD = {"expires": 2e9, "first_seen": 1.8e9, "last_seen": 1.8e9, "names": ["a.example.com"], "sources": []}
_LINE = json.dumps({"d": _DENY, "ip": "198.51.100.7", "n": "a.example.com", "t": 60, "at": 1.8e9, "s": "observed"})


def _state_files(tmp_path: Path, state: bytes | None, journal: bytes | None) -> str:
    path = tmp_path / "state.json"
    if state is not None:
        path.write_bytes(state)
    if journal is not None:
        Path(journal_path(str(path))).write_bytes(journal)
    return str(path)


def test_a_state_file_nested_too_deep_is_a_state_error(tmp_path: Path) -> None:
    path = _state_files(tmp_path, b"[" * 100_000, None)
    with pytest.raises(StateError, match=r"state\.json"):
        DenyState.load(path)


def test_a_journal_line_nested_too_deep_is_skipped(tmp_path: Path) -> None:
    path = _state_files(tmp_path, None, b"[" * 100_000 + b"\n" + _LINE.encode() + b"\n")
    assert DenyState.load(path).ips(_DENY) == ["198.51.100.7"]


def test_a_record_time_too_big_for_a_float_is_repaired(tmp_path: Path) -> None:
    record = {**_RECORD, "expires": 10**400}
    doc = {"version": 1, "denies": {_DENY: {"198.51.100.10": record, "198.51.100.11": _RECORD}}}
    state = DenyState.load(_state_files(tmp_path, json.dumps(doc).encode(), None))
    assert state.ips(_DENY) == ["198.51.100.11"]
    assert any("198.51.100.10" in line for line in state.repaired)


def test_an_allowed_expiry_too_big_for_a_float_is_repaired(tmp_path: Path) -> None:
    doc = {"version": 1, "denies": {}, "allowed": {"198.51.100.10": {"rule": {"a.example.com": 10**400}}}}
    state = DenyState.load(_state_files(tmp_path, json.dumps(doc).encode(), None))
    assert state.allowed == {}
    assert state.repaired


@pytest.mark.parametrize("line", [
    {"d": _DENY, "ip": "198.51.100.8", "n": "a.example.com", "t": 10**400, "at": 1.8e9, "s": "observed"},
    {"a": "rule", "ip": "198.51.100.8", "n": "a.example.com", "x": 10**400},
], ids=["deny ttl", "allowed expiry"])
def test_a_journal_time_too_big_for_a_float_is_skipped(tmp_path: Path, line: dict[str, Any]) -> None:
    journal = (json.dumps(line) + "\n" + _LINE + "\n").encode()
    state = DenyState.load(_state_files(tmp_path, None, journal))
    assert state.ips(_DENY) == ["198.51.100.7"]
    assert "198.51.100.8" not in state.allowed


# -- flow/_wiredict.c: the C converter against protobuf ---------------------------------------------


@pytest.mark.parametrize("raw", [
    b"\x00\x00",  # GetFlowsResponse: field 0, varint 0
    b"\x02\x00\n\x00",  # field 0 (length-delimited, empty), then an empty flow
    b"\n\x02\x00\x00",  # inside the Flow
    b"\n\x05\xd2\x01\x02\x00\x00",  # inside the is_reply wrapper (BoolValue)
    b"\x80\x80\x80\x80\x10\x00",  # field 2**29: one above the largest field number
    b"\n\x06\x80\x80\x80\x80\x10\x00",  # the same inside the Flow
], ids=["0 in the response", "0 before the flow", "0 in the flow", "0 in a wrapper", "2**29", "2**29 in the flow"])
def test_invalid_field_numbers_are_refused_as_protobuf_refuses_them(raw: bytes) -> None:
    # Found by test_fuzz_protobuf_converters_agree: the C converter skipped a tag of field number
    # 0 or above 2**29 - 1 as an unknown field, where protobuf refuses the bytes (fixed in 92f601d).
    with pytest.raises(DecodeError):
        observer_pb2.GetFlowsResponse.FromString(raw)
    with pytest.raises(DecodeError):
        response_bytes_to_event(raw)


def test_an_any_in_a_flow_a_later_oneof_member_replaces_is_not_converted() -> None:
    # Found by test_fuzz_protobuf_converters_agree: C converted the flow's Any as it read it and
    # raised ProtoDictError, though node_status replaces the flow and protobuf never converts it.
    raw = b"\n\x04\x82\x9fI\x00\x12\x00"  # flow {extensions: Any{}} then node_status {}
    assert response_to_event(observer_pb2.GetFlowsResponse.FromString(raw)) == {"node_status": {}}
    assert response_bytes_to_event(raw) == {"node_status": {}}


def test_a_journal_expiry_that_overflows_is_not_kept_as_infinity(tmp_path: Path) -> None:
    line = {"d": _DENY, "ip": "198.51.100.10", "n": "x.example.com", "t": 1e308, "at": 1e308, "s": "observed"}
    path = _state_files(tmp_path, None, (json.dumps(line) + "\n").encode())
    state = DenyState.load(path)
    records = state.denies.get(_DENY, {})
    assert all(math.isfinite(r.expires) for r in records.values()), records
    state.save(path)
    assert DenyState.load(path).ips(_DENY) == state.ips(_DENY)  # what is denied survives a restart


# -- app/daemon.py (the lead's): valid flows in another spelling ----------------------------------


@pytest.mark.parametrize("where", [("l4", "TCP"), ("l4", "TCP", "destination_port"), ("destination", "identity")],
                         ids=".".join)
def test_the_daemon_processes_a_valid_flow_with_a_null_for_a_default(tmp_path: Path, where: tuple[str, ...]) -> None:
    from hushflow.app.daemon import Daemon, RunOptions

    example = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"
    lines = (example / "flows.jsonl").read_bytes().splitlines()
    event = next(json.loads(line) for line in lines if b'"event_type":{"type":5}' in line and b'"TCP"' in line)
    target = event["flow"]
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = None
    flows = tmp_path / "flows.jsonl"
    flows.write_text(json.dumps(event, separators=(",", ":")) + "\n")
    options = RunOptions(policies=(str(example / "policies"),), input_files=(str(flows),), resolve=False,
                         clock="flows", out_dir=str(tmp_path / "groups"))
    daemon = Daemon(options, stderr=io.StringIO())
    daemon.run()
    assert (daemon.summary.flows, daemon.summary.flows_skipped, daemon.summary.verdicts) == (1, 0, 1)
