"""One odd flow never ends `observe` (every output format, every flag family), `observe --enrich`
or `explain`: it is counted, named by file:line, and the flows after it are still printed.

Each odd line is valid JSON of a wrong shape, put between two good flows; the reader's fast path
trusts values below a flow's first level, so these reach the filters, the attribution and the
printers, which must not be where the command ends.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from hushflow.app.example import example_dir
from hushflow.app.observe import EXIT_BAD_INPUT, EXIT_OK
from hushflow.cli.explain import explain_argv
from hushflow.cli.observe import run_observe

EXAMPLE = example_dir()
assert EXAMPLE is not None
POLICIES = str(EXAMPLE / "policies")
# A policy-verdict drop of the bundled example (my-app -> ingest.telemetry.example.com:443).
DROP: dict[str, Any] = json.loads((EXAMPLE / "flows.jsonl").read_text().splitlines()[11])
assert DROP["flow"]["verdict"] == "DROPPED"


def good(n: int) -> dict[str, Any]:
    event = copy.deepcopy(DROP)
    event["flow"]["Summary"] = f"good-{n}"
    return event


def odd(*changes: tuple[str, Any]) -> bytes:
    """The drop with `path = value` changes (dotted paths; `flow.l4` is event["flow"]["l4"])."""
    event = good(2)
    for path, value in changes:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return json.dumps(event).encode()


ODD_LINES: dict[str, bytes] = {
    # wrong shape at the first level: the reader's own check refuses them
    "flow is a list": b'{"flow": []}',
    "flow is a string": b'{"flow": "x"}',
    "source is a string": odd(("flow.source", "x")),
    "destination is a number": odd(("flow.destination", 5)),
    "event time is a number": odd(("time", 5)),
    "verdict is a list": odd(("flow.verdict", [1])),
    # Hubble refuses a key given twice (protojson); orjson alone would keep the last one.
    "a key given twice": odd().replace(b'"verdict": "DROPPED"', b'"verdict": "DROPPED", "verdict": "FORWARDED"', 1),
    "a huge integer": odd(("flow.drop_reason", 10**19)),
    "policy lists of numbers": odd(("flow.egress_denied_by", [1])),
    "not an object": b'"just a string"',
    "nesting 10,000 deep": b'{"flow": ' + b"[" * 10000 + b"]" * 10000 + b"}",
    "NaN literal": odd().replace(b'"identity": 2', b'"identity": NaN'),
    "not UTF-8": odd().replace(b"demo/node-1", b"demo/node-\xff"),
    "a BOM not at the start of the file": "\ufeff".encode() + odd(),
    "another spelling with extensions too deep to write back": odd(
        ("flow.extensions", json.loads('{"@type": "x", "v": ' + "[" * 300 + "]" * 300 + "}"))
    ).replace(b'"node_name"', b'"nodeName"', 1),
    # wrong shape deeper: trusted by the fast path, met by the stages
    "flow time is a number": odd(("flow.time", 5)),
    "flow time is no date": odd(("flow.time", "9999-99-99"), ("time", "9999-99-99")),
    "flow time in year 0": odd(("flow.time", "0000-01-01T00:00:00Z"), ("time", "0000-01-01T00:00:00Z")),
    "flow time in year 10000": odd(("flow.time", "10000-01-01T00:00:00Z")),
    "flow time with a bad fraction": odd(("flow.time", "2026-11-27T09:00:00.abcZ")),
    "flow time is a list": odd(("flow.time", ["x"])),
    "l4 TCP is a string": odd(("flow.l4", {"TCP": "x"})),
    "ports are strings": odd(("flow.l4", {"TCP": {"source_port": "x", "destination_port": "y"}})),
    "TCP flags are a string": odd(("flow.l4", {"TCP": {"destination_port": 443, "flags": "SYN"}})),
    "ICMP type is a string": odd(("flow.l4", {"ICMPv4": {"type": "x"}})),
    "IP source is a list": odd(("flow.IP", {"source": ["x"], "destination": "198.51.100.10"})),
    "policy_log holds a number and null": odd(("flow.policy_log", [1, None])),
    "labels hold a number, null and an object": odd(("flow.source.labels", [1, None, {"a": 1}])),
    "destination labels hold numbers": odd(("flow.destination.labels", [1, None])),
    "namespace is a number": odd(("flow.source.namespace", 5)),
    "pod name is a list": odd(("flow.source.pod_name", [])),
    "workloads is a string": odd(("flow.source.workloads", "x")),
    "workloads hold numbers": odd(("flow.source.workloads", [1])),
    "destination names hold numbers": odd(("flow.destination_names", [1, None])),
    "event type fields are wrong": odd(("flow.event_type", {"type": "x", "sub_type": []})),
    "l7 dns is a string": odd(("flow.l7", {"type": "RESPONSE", "dns": "x"})),
    "l7 http fields are wrong": odd(("flow.l7", {"type": "REQUEST", "http": {"code": "x", "method": 5}})),
    "a service is a string": odd(("flow.destination_service", "x")),
    "Summary is a number": odd(("flow.Summary", 5)),
    "extensions nested 500 deep": odd(("flow.extensions", json.loads("[" * 500 + "]" * 500))),
    # valid protojson in another spelling than Hubble's
    "l4 TCP is null": odd(("flow.l4", {"TCP": None})),
    "verdict is an unknown number": odd(("flow.verdict", 12345)),
}

# Reported whatever the command: the reader refuses them before any stage sees them.
ALWAYS_REPORTED = {
    "flow is a list", "flow is a string", "source is a string", "destination is a number",
    "event time is a number", "verdict is a list", "a key given twice",
    "policy lists of numbers", "not an object", "nesting 10,000 deep", "NaN literal", "not UTF-8",
    "a BOM not at the start of the file", "another spelling with extensions too deep to write back",
}

CONFIGS: dict[str, list[str]] = {
    "compact": [],
    "dict": ["-o", "dict"],
    "json": ["-o", "json"],
    "jsonpb": ["-o", "jsonpb"],
    "table": ["-o", "table"],
    "node and policy names": ["--print-node-name", "--print-policy-names"],
    "verdict and type": ["--verdict", "DROPPED", "-t", "policy-verdict", "-o", "dict"],
    "pods, IPs, ports": ["--from-pod", "my-namespace/my-app", "--to-ip", "198.51.100.0/24", "--port", "443"],
    "labels, protocol, flags": ["--from-label", "k8s:app.kubernetes.io/name=my-app", "--protocol", "tcp",
                                "--tcp-flags", "SYN"],
    "fqdn, direction, identity": ["--to-fqdn", "*.example.com", "--traffic-direction", "egress",
                                  "--to-identity", "2", "-o", "jsonpb"],
    "negated filters": ["--not", "--http-method", "GET", "--not", "-t", "l7", "--node-name", "demo/node-1",
                        "--from-workload", "my-app"],
    "cel": ["--cel-expression", "_flow.source.namespace == 'my-namespace' && size(_flow.source.labels) > 0 "
            "&& _flow.l4.TCP.destination_port == 443u", "-o", "jsonpb"],
    "since, until, last": ["--since", "2026-11-27T08:00:00Z", "--until", "2026-11-28T00:00:00Z", "--last", "3"],
    "first": ["--first", "3", "-o", "table"],
    "enrich": ["--enrich", POLICIES, "-o", "jsonpb"],
    "enrich with filters": ["--enrich", POLICIES, "--print-policy-names", "--not", "--cel-expression",
                            "'unplanned' in _flow.policy_log"],
    "explain": ["explain"],
}


def run(path: Path, config: str) -> tuple[int, bytes, str]:
    args = CONFIGS[config]
    if args == ["explain"]:
        argv = explain_argv(["--policies", POLICIES, "--input-file", str(path)])
        assert argv is not None
    else:
        argv = ["--input-file", str(path), *args]
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(argv, stdout=out, stderr=err, stdin=io.BytesIO())
    return code, out.getvalue(), err.getvalue()


def flows_file(tmp_path: Path, middle: bytes) -> Path:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(json.dumps(good(1)).encode() + b"\n" + middle + b"\n" + json.dumps(good(3)).encode() + b"\n")
    return path


def printed(out: bytes, path: Path, config: str, n: int) -> bool:
    if config == "explain":
        return f"{path}:{n}".encode() in out
    return f"good-{n}".encode() in out


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", list(ODD_LINES))
def test_one_odd_flow_is_skipped_and_named_and_the_next_one_is_printed(tmp_path: Path, name: str,
                                                                       config: str) -> None:
    path = flows_file(tmp_path, ODD_LINES[name])
    code, out, err = run(path, config)  # raising here is the bug this test is about
    assert "Traceback" not in err
    assert printed(out, path, config, 1) and printed(out, path, config, 3), err
    assert code in (EXIT_OK, EXIT_BAD_INPUT), err
    if code == EXIT_BAD_INPUT:
        assert f"{path}:2: " in err
        assert "1 bad line skipped" in err
        assert not printed(out, path, config, 2)
    if name in ALWAYS_REPORTED:
        assert code == EXIT_BAD_INPUT


def report(err: str, path: Path) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"warning: {path}:")]


@pytest.mark.parametrize(("config", "middle", "reason"), [
    ("compact", odd(("flow.l4", {"TCP": "x"})), "flow.l4.TCP: expected an object, got string"),
    ("table", odd(("flow.source.namespace", 5)), "flow.source.namespace: expected a string, got number"),
    ("labels, protocol, flags", odd(("flow.source.labels", [1])), "flow.source.labels[0]: expected a string, got number"),
    ("enrich", odd(("flow.time", "9999-99-99")), "flow.time: invalid timestamp '9999-99-99'"),
    ("enrich", odd(("flow.time", "0000-01-01T00:00:00Z")), "flow.time: invalid timestamp '0000-01-01T00:00:00Z'"),
    ("explain", odd(("flow.policy_log", [1, None])), "flow.policy_log[0]: expected a string, got number"),
    ("enrich", odd(("flow.extensions", json.loads("[" * 500 + "]" * 500))), "flow.extensions: expected an object, got array"),
    ("enrich", odd(("flow.extensions", json.loads('{"@type": "x", "v": ' + "[" * 300 + "]" * 300 + "}"))),
     "flow.extensions: nested deeper than 64 levels"),
])
def test_the_report_names_the_file_line_and_the_value_that_was_wrong(tmp_path: Path, config: str, middle: bytes,
                                                                     reason: str) -> None:
    path = flows_file(tmp_path, middle)
    code, out, err = run(path, config)
    assert code == EXIT_BAD_INPUT
    # Refused by the reader (the line is validated at every level, as protojson reads it).
    assert report(err, path) == [f"warning: {path}:2: {reason}"]
    assert printed(out, path, config, 1) and printed(out, path, config, 3)


def test_a_value_protojson_reads_as_a_default_is_processed_not_skipped(tmp_path: Path) -> None:
    # `"TCP": null` is "no TCP" to protojson (Hubble reads the line); the attribution gets the flow
    # in the canonical spelling, and prints it so.
    path = flows_file(tmp_path, odd(("flow.l4", {"TCP": None})))
    code, out, err = run(path, "enrich")
    assert code == EXIT_OK, err
    assert not report(err, path)
    middle = json.loads(out.splitlines()[1])
    assert middle["flow"]["Summary"] == "good-2" and middle["flow"]["l4"] == {}


def test_an_unknown_verdict_number_is_explained(tmp_path: Path) -> None:
    path = flows_file(tmp_path, odd(("flow.verdict", 12345)))
    code, out, err = run(path, "explain")
    assert code == EXIT_OK, err
    assert b"policy-verdict EGRESS 12345 (POLICY_DENY)" in out


def test_strict_stops_at_the_odd_flow_with_its_place(tmp_path: Path) -> None:
    path = flows_file(tmp_path, odd(("flow.l4", {"TCP": "x"})))
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", str(path), "--strict"], stdout=out, stderr=err)
    assert code == EXIT_BAD_INPUT
    assert err.getvalue() == f"{path}:2: flow.l4.TCP: expected an object, got string\n"
    assert b"good-1" in out.getvalue() and b"good-3" not in out.getvalue()


def test_a_skipped_first_flow_leaves_no_header_behind_in_a_table(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(odd(("flow.l4", {"TCP": "x"})) + b"\n" + json.dumps(good(3)).encode() + b"\n")
    code, out, _ = run(path, "table")
    assert code == EXIT_BAD_INPUT
    assert out.count(b"TIMESTAMP") == 1 and out.count(b"good-3") == 1


def test_terminal_escapes_in_flow_names_do_not_reach_the_terminal(tmp_path: Path) -> None:
    sneaky = odd(("flow.source.pod_name", "my-app\x1b]0;owned\x07\x1b[2J"))
    path = flows_file(tmp_path, sneaky + b"\n" + odd(("flow.source.labels", ["k8s:\x1bx=1"]), ("flow.x\x1b", 1)))
    for config in ("explain", "compact"):
        code, out, err = run(path, config)
        assert b"\x1b" not in out, config
        assert "\x1b" not in err, config
        assert code == EXIT_OK, err
