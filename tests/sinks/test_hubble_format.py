"""Hubble output formats: byte-for-byte against hubble 1.19.4 recordings, then one row per rule.

tests/data/hubble-1.19.4-golden holds flows-4k.jsonl.gz (gen_flows.py -n 4000 --seed 3) and formats/*.txt, the exact output
of the real `hubble observe --input-file flows-4k.jsonl -o <format> ...` run with TZ=UTC, no tty.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hushflow.flow.reader import FlowEvent, FlowReader, events_from_bytes
from hushflow.sinks.hubble_format import (
    PrintOptions,
    flow_hostnames,
    flow_type,
    flow_verdict,
    format_identity,
    make_printer,
    tabwriter_format,
)

GOLDEN = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden"


@pytest.fixture(scope="module")
def recorded_events() -> list[FlowEvent]:
    return list(FlowReader([GOLDEN / "flows-4k.jsonl.gz"]))


def _event_type(f: dict[str, Any]) -> int:
    return int(f.get("event_type", {}).get("type", 0))


def _everything(f: dict[str, Any]) -> bool:
    return True


def _dropped(f: dict[str, Any]) -> bool:
    return f.get("verdict") == "DROPPED"


def _l7(f: dict[str, Any]) -> bool:
    return _event_type(f) == 129  # --type l7


def _policy_verdict(f: dict[str, Any]) -> bool:
    return _event_type(f) == 5  # --type policy-verdict


# file, -o, selection (the file name's description, as Hubble --first N would select), options.
# The recordings show no field mask with --input-file: direction, match type and policies print.
GOLDEN_CASES: list[tuple[str, str, Callable[[dict[str, Any]], bool], int, dict[str, bool]]] = [
    ("compact-first120.txt", "compact", _everything, 120, {}),
    ("compact-dropped.txt", "compact", _dropped, 60, {}),  # --verdict DROPPED --first 60
    ("compact-l7.txt", "compact", _l7, 60, {}),  # --type l7 --first 60
    ("compact-node-name.txt", "compact", _policy_verdict, 40, {"node_name": True}),
    ("compact-policy-verdict.txt", "compact", _policy_verdict, 80, {}),
    ("compact-policy-verdict-policy-names.txt", "compact", _policy_verdict, 80, {"policy_names": True}),
    ("dict-first8.txt", "dict", _everything, 8, {}),
    ("json-first20.txt", "json", _everything, 20, {}),  # 1.19.4 -o json = the jsonpb wrapper
    ("table-first40.txt", "table", _everything, 40, {}),
    ("table-l7.txt", "table", _l7, 30, {}),
]


def _print(output: str, events: list[FlowEvent], **options: Any) -> str:
    out = io.BytesIO()
    printer = make_printer(output, out, options=PrintOptions(tz=UTC, **options))
    for e in events:
        printer.write(e)
    printer.close()
    return out.getvalue().decode()


def test_every_recording_has_a_case() -> None:
    assert sorted(p.name for p in (GOLDEN / "formats").iterdir()) == sorted(c[0] for c in GOLDEN_CASES)


@pytest.mark.parametrize(("name", "output", "select", "first", "options"), GOLDEN_CASES,
                         ids=[c[0] for c in GOLDEN_CASES])
def test_output_matches_hubble_recording(
    recorded_events: list[FlowEvent],
    name: str,
    output: str,
    select: Callable[[dict[str, Any]], bool],
    first: int,
    options: dict[str, bool],
) -> None:
    chosen = [e for e in recorded_events if e.flow is not None and select(e.flow)][:first]
    assert _print(output, chosen, **options) == (GOLDEN / "formats" / name).read_text()


def test_jsonpb_passes_every_recorded_line_through_unchanged(recorded_events: list[FlowEvent]) -> None:
    import gzip

    want = gzip.decompress((GOLDEN / "flows-4k.jsonl.gz").read_bytes()).decode()
    assert _print("jsonpb", recorded_events) == want


# -- one row per rule ----------------------------------------------------------------------------

TCP = {"TCP": {"source_port": 1234, "destination_port": 80}}

HOSTNAME_ROWS = [
    ("pod with namespace", {"IP": {"source": "10.0.0.1", "destination": "10.0.0.2"}, "l4": TCP,
                            "source": {"namespace": "ns", "pod_name": "a"}},
     ("ns/a:1234", "10.0.0.2:80")),
    ("service wins over pod", {"IP": {"source": "10.0.0.1", "destination": "10.0.0.2"},
                               "destination": {"namespace": "x", "pod_name": "p"},
                               "destination_service": {"name": "svc", "namespace": "y"}},
     ("10.0.0.1", "y/p")),
    ("dns names joined", {"IP": {"source": "10.0.0.1", "destination": "1.2.3.4"}, "l4": TCP,
                          "destination_names": ["a.example", "b.example"]},
     ("10.0.0.1:1234", "a.example,b.example:80")),
    ("ipv6 gets brackets", {"IP": {"source": "fd00::1", "destination": "fd00::2"}, "l4": TCP},
     ("[fd00::1]:1234", "[fd00::2]:80")),
    ("port 0 is not printed", {"IP": {"source": "10.0.0.1", "destination": "10.0.0.2"},
                               "l4": {"UDP": {"destination_port": 53}}},
     ("10.0.0.1", "10.0.0.2:53")),
    ("icmp has no ports", {"IP": {"source": "10.0.0.1", "destination": "10.0.0.2"},
                           "l4": {"ICMPv4": {"type": 8}}}, ("10.0.0.1", "10.0.0.2")),
    ("no IP: ethernet", {"ethernet": {"source": "aa:bb", "destination": "cc:dd"}}, ("aa:bb", "cc:dd")),
    ("nothing", {}, ("", "")),
    ("pod without namespace", {"IP": {"source": "10.0.0.1"}, "source": {"pod_name": "a"}}, ("a", "")),
]


@pytest.mark.parametrize(("flow", "want"), [r[1:] for r in HOSTNAME_ROWS], ids=[r[0] for r in HOSTNAME_ROWS])
def test_hostnames(flow: dict[str, Any], want: tuple[str, str]) -> None:
    assert flow_hostnames(flow) == want


def test_hostnames_without_ip_translation() -> None:
    flow = {"IP": {"source": "10.0.0.1", "destination": "10.0.0.2"}, "source": {"pod_name": "a"}}
    assert flow_hostnames(flow, translate=False) == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize(("identity", "want"), [(0, "(unknown)"), (1, "(host)"), (2, "(world)"),
                                                (7, "(kube-apiserver)"), (10, "(world-ipv6)"),
                                                (11, "(ID:11)"), (16777217, "(ID:16777217)")])
def test_identity(identity: int, want: str) -> None:
    assert format_identity(identity) == want


TYPE_ROWS = [
    ("trace point", {"event_type": {"type": 4, "sub_type": 3}}, "to-stack"),
    ("unknown trace point", {"event_type": {"type": 4, "sub_type": 99}}, "99"),
    ("drop reason", {"event_type": {"type": 1, "sub_type": 181}}, "Policy denied by denylist"),
    ("unknown drop reason", {"event_type": {"type": 1, "sub_type": 250}}, "250, 0"),
    ("policy verdict", {"event_type": {"type": 5}, "policy_match_type": 3, "traffic_direction": "INGRESS"},
     "policy-verdict:L4-Only INGRESS"),
    ("policy verdict, no fields", {"event_type": {"type": 5}}, "policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN"),
    ("http", {"l7": {"type": "REQUEST", "http": {}}}, "http-request"),
    ("dns", {"l7": {"type": "RESPONSE", "dns": {"observation_source": "proxy"}}}, "dns-response proxy"),
    ("kafka", {"l7": {"type": "REQUEST", "kafka": {}}}, "kafka-request"),
    ("l7 without record", {"l7": {}}, "l7-unknown_l7_type"),
    ("capture", {"event_type": {"type": 3}}, "DBG_CAPTURE_POINT_UNKNOWN"),
    ("trace-sock", {"event_type": {"type": 7}, "sock_xlate_point": "SOCK_XLATE_POINT_PRE_DIRECTION_FWD"},
     "pre-xlate-fwd"),
    ("other", {"event_type": {"type": 2}}, "UNKNOWN"),
]


@pytest.mark.parametrize(("flow", "want"), [r[1:] for r in TYPE_ROWS], ids=[r[0] for r in TYPE_ROWS])
def test_flow_type(flow: dict[str, Any], want: str) -> None:
    assert flow_type(flow) == want


ALLOW = {"name": "allow-a", "kind": "CiliumNetworkPolicy"}
DENY = {"name": "deny-b", "kind": "CiliumClusterwideNetworkPolicy"}
PV = {"type": 5}
VERDICT_ROWS = [
    ("plain verdict", {"verdict": "DROPPED"}, False, "DROPPED"),
    ("no verdict", {}, False, "VERDICT_UNKNOWN"),
    ("policy verdict forwarded", {"verdict": "FORWARDED", "event_type": PV}, False, "ALLOWED"),
    ("policy verdict redirected", {"verdict": "REDIRECTED", "event_type": PV}, False, "ALLOWED"),
    ("policy verdict dropped", {"verdict": "DROPPED", "event_type": PV}, False, "DENIED"),
    ("policy verdict audit", {"verdict": "AUDIT", "event_type": PV}, False, "AUDITED"),
    ("names on allowed", {"verdict": "FORWARDED", "event_type": PV, "egress_allowed_by": [ALLOW, ALLOW]},
     True, "ALLOWED BY allow-a (CiliumNetworkPolicy), allow-a (CiliumNetworkPolicy)"),
    ("names on denied", {"verdict": "DROPPED", "event_type": PV, "ingress_denied_by": [DENY]},
     True, "DENIED BY deny-b (CiliumClusterwideNetworkPolicy)"),
    ("never on audited", {"verdict": "AUDIT", "event_type": PV, "egress_denied_by": [DENY]}, True, "AUDITED"),
    ("policy without kind skipped", {"verdict": "DROPPED", "event_type": PV,
                                     "egress_denied_by": [{"name": "x"}]}, True, "DENIED"),
    ("names only when asked", {"verdict": "DROPPED", "event_type": PV, "egress_denied_by": [DENY]},
     False, "DENIED"),
    ("names only on policy verdicts", {"verdict": "DROPPED", "egress_denied_by": [DENY]}, True, "DROPPED"),
]


@pytest.mark.parametrize(("flow", "names", "want"), [r[1:] for r in VERDICT_ROWS],
                         ids=[r[0] for r in VERDICT_ROWS])
def test_verdict(flow: dict[str, Any], names: bool, want: str) -> None:
    assert flow_verdict(flow, names) == want


def _line(flow: dict[str, Any], **wrapper: Any) -> bytes:
    import orjson

    return orjson.dumps({"flow": flow, **wrapper})


# An endpoint without identity is identity 0, which Cilium names "unknown".
COMPACT_ROWS = [
    ("no time prints N/A", {"verdict": "FORWARDED"},
     "N/A:  (unknown) <>  (unknown) UNKNOWN FORWARDED ()\n"),
    ("millis truncated", {"time": "2026-03-02T09:00:00.999999999Z"},
     "Mar  2 09:00:00.999:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()\n"),
    ("reply swaps sides", {"IP": {"source": "1.1.1.1", "destination": "2.2.2.2"}, "is_reply": True,
                           "source": {"identity": 1}, "destination": {"identity": 2}},
     "N/A: 2.2.2.2 (world) <- 1.1.1.1 (host) UNKNOWN VERDICT_UNKNOWN ()\n"),
    ("not a reply", {"IP": {"source": "1.1.1.1", "destination": "2.2.2.2"}, "is_reply": False},
     "N/A: 1.1.1.1 (unknown) -> 2.2.2.2 (unknown) UNKNOWN VERDICT_UNKNOWN ()\n"),
    ("terminal escapes neutralised", {"Summary": "a\x1b[31mb\rc"},
     "N/A:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN (a^[[31mb\\rc)\n"),
    ("ip trace id and auth", {"Summary": "s", "ip_trace_id": {"trace_id": "42"}, "auth_type": "SPIRE"},
     "N/A:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN (IP Trace ID: 42; s; SPIRE)\n"),
]


@pytest.mark.parametrize(("flow", "want"), [r[1:] for r in COMPACT_ROWS], ids=[r[0] for r in COMPACT_ROWS])
def test_compact_line(flow: dict[str, Any], want: str) -> None:
    assert _print("compact", events_from_bytes(_line(flow))) == want


def test_time_zone_is_applied() -> None:
    out = io.BytesIO()
    printer = make_printer("compact", out, options=PrintOptions(tz=timezone(timedelta(hours=-5))))
    for e in events_from_bytes(_line({"time": "2026-03-02T03:04:05.5Z"})):
        printer.write(e)
    assert out.getvalue().startswith(b"Mar  1 22:04:05.500:")


LOST = b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":2}}\n'
LOST_TIMED = (b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":2,'
              b'"first":"2026-03-02T08:59:00.5Z","last":"2026-03-02T08:59:59Z"},"node_name":"c1/n1",'
              b'"time":"2026-03-02T09:00:00Z"}\n')
SPAN = " (first: Mar  2 08:59:00.500, last: Mar  2 08:59:59.000)"


# What the real hubble 1.19.4 CLI printed for these two lines (`hubble observe --input-file F
# -o FORMAT --print-node-name`, TZ=UTC, 2026-12-01; its printer's WriteLostEvent): the event's
# time (N/A without one), "-" for the missing node, destination and verdict, and the span of
# the lost events when both ends are known.
@pytest.mark.parametrize(("output", "line", "want"), [
    ("compact", LOST, "N/A EVENTS LOST: HUBBLE_RING_BUFFER CPU(2) 7\n"),
    ("dict", LOST, "  TIMESTAMP: N/A\n       NODE: -\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n"
                   "    VERDICT: -\n    SUMMARY: CPU(2) - 7\n"),
    ("table", LOST, "TIMESTAMP   NODE   SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\n"
                    "N/A         -      HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(2) - 7\n"),
    ("compact", LOST_TIMED, f"Mar  2 09:00:00.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(2) 7{SPAN}\n"),
    ("dict", LOST_TIMED, "  TIMESTAMP: Mar  2 09:00:00.000\n       NODE: c1/n1\n     SOURCE: HUBBLE_RING_BUFFER\n"
                         f"       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(2) - 7{SPAN}\n"),
    ("table", LOST_TIMED,
     "TIMESTAMP             NODE    SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\n"
     f"Mar  2 09:00:00.000   c1/n1   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(2) - 7{SPAN}\n"),
])
def test_lost_events_are_printed_as_hubble_1_19_4_prints_them(output: str, line: bytes, want: str) -> None:
    assert _print(output, events_from_bytes(line), node_name=True) == want


def test_lost_events_in_jsonpb_are_the_line() -> None:
    assert _print("jsonpb", events_from_bytes(LOST)) == LOST.decode()


# Go's text/tabwriter acts on tabs, vertical tabs, newlines and form feeds inside the values
# Hubble writes into it (a form feed also ends the block of aligned columns); checked against
# hubble 1.19.4 `-o table` on flows whose Summary holds them.
@pytest.mark.parametrize(("rows", "want"), [
    ([["a", "b"], ["ccc", "d"]], "a     b\nccc   d\n"),
    ([["a", "x\ty"], ["ccc", "d"]], "a     x   y\nccc   d\n"),
    ([["a", "x\vy"], ["ccc", "d"]], "a     x   y\nccc   d\n"),
    ([["a", "x\ny"], ["ccc", "d"]], "a   x\ny\nccc   d\n"),  # the one-cell line "y" breaks the column
    ([["aaaa", "x\f"], ["c", "d"]], "aaaa   x\n\nc   d\n"),
])
def test_the_table_follows_go_tabwriter_on_control_characters(rows: list[list[str]], want: str) -> None:
    from hushflow.sinks.hubble_format import go_tabwriter

    assert go_tabwriter(rows, minwidth=2, padding=3) == want


@pytest.mark.parametrize("output", ["compact", "dict", "table", "jsonpb"])
def test_agent_and_debug_events_are_not_printed(output: str) -> None:
    lines = b'{"agent_event":{"type":"AGENT_STARTED"}}\n{"debug_event":{"type":"DBG_GENERIC"}}\n'
    assert _print(output, events_from_bytes(lines)) == ""


def test_node_status_errors_go_to_err() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    printer = make_printer("compact", out, err=err, options=PrintOptions(tz=UTC))
    lines = (b'{"node_status":{"state_change":"NODE_UNAVAILABLE","node_names":["a","b"]},'
             b'"node_name":"relay","time":"2026-03-02T09:00:00Z"}\n'
             b'{"node_status":{"state_change":"NODE_CONNECTED","node_names":["a"]}}\n')
    for e in events_from_bytes(lines):
        printer.write(e)
    assert out.getvalue() == b""
    assert err.getvalue() == b"Mar  2 09:00:00.000 [relay]: 2 nodes are unavailable: a, b\n"


def test_jsonpb_applies_go_html_escaping() -> None:
    line = _line({"Summary": "<a&b>\u2028"})
    assert _print("jsonpb", events_from_bytes(line)) == (
        '{"flow":{"Summary":"\\u003ca\\u0026b\\u003e\\u2028"}}\n'
    )


def test_legacy_json_prints_the_bare_flow() -> None:
    line = _line({"verdict": "DROPPED"}, node_name="n")
    assert _print("json", events_from_bytes(line), legacy_json=True) == '{"verdict":"DROPPED"}\n'


def test_unknown_output_format() -> None:
    with pytest.raises(ValueError, match="invalid output format 'yaml'"):
        make_printer("yaml", io.BytesIO())


TABWRITER_ROWS = [
    ("columns padded to widest + 3", [["a", "bb", "x"], ["ccc", "d", "y"]], "a     bb   x\nccc   d    y\n"),
    ("minwidth 2 applies to empty columns", [["", "a"], ["", "b"]], "   a\n   b\n"),
    ("last cell never padded", [["a", "long last cell"], ["bb", "c"]], "a    long last cell\nbb   c\n"),
    ("a shorter row ends the column block", [["a", "b", "c"], ["x"], ["yyyy", "z", "w"]],
     "a   b   c\nx\nyyyy   z   w\n"),
]


@pytest.mark.parametrize(("rows", "want"), [r[1:] for r in TABWRITER_ROWS], ids=[r[0] for r in TABWRITER_ROWS])
def test_tabwriter(rows: list[list[str]], want: str) -> None:
    assert tabwriter_format(rows, minwidth=2, padding=3) == want
