"""`-o jsonpb` / `-o json` print what Hubble prints, whatever spelling the input line had.

Hubble's printer re-encodes every flow (hubble/pkg/printer/printer.go: `jsonEncoder.Encode` of the
GetFlowsResponse, whose MarshalJSON is protojson with proto names; encoding/json compacts it and
escapes <, >, &). So the bytes depend on the flow, never on how the input line was written. Each
row below rewrites recorded Hubble 1.19.4 lines (tests/data/hubble-1.19.4-golden, the real CLI's
output) into another spelling the reader accepts; the printed line must be the recorded one.
Timestamps: protobuf's Timestamp JSON (google.golang.org/protobuf/encoding/protojson,
well_known_types.go) writes 0, 3, 6 or 9 fraction digits, so `.000Z` is never printed.
"""

from __future__ import annotations

import copy
import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from hushflow.flow.protojson import EventNormalizer, encode_event, make_canonical_event_check
from hushflow.flow.reader import events_from_bytes
from hushflow.sinks.hubble_format import PrintOptions, make_printer

GOLDEN = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden"
LINES = gzip.decompress((GOLDEN / "flows-4k.jsonl.gz").read_bytes()).splitlines()
# A spread of recorded lines: DNS (escaped quotes in Summary), policy verdicts, drops, L7.
SAMPLE = LINES[:40] + LINES[::97]


def _print(output: str, data: bytes, **options: Any) -> bytes:
    out = io.BytesIO()
    printer = make_printer(output, out, options=PrintOptions(**options))
    for event in events_from_bytes(data):
        printer.write(event)
    printer.close()
    return out.getvalue()


def _reversed_keys(obj: Any) -> Any:
    if type(obj) is dict:
        return {k: _reversed_keys(obj[k]) for k in reversed(list(obj))}
    if type(obj) is list:
        return [_reversed_keys(v) for v in obj]
    return obj


def _reordered(d: dict[str, Any]) -> bytes:
    return orjson.dumps(_reversed_keys(d))


def _millis_zero(d: dict[str, Any]) -> bytes:
    # Whole seconds written with a .000 fraction, and a +00:00 offset on the wrapper time.
    f = d["flow"]
    if f["time"].endswith(":00Z") or "." not in f["time"]:
        f["time"] = f["time"][:-1] + ".000Z"
    else:
        f["time"] = f["time"][:-1] + "000Z" if len(f["time"]) == 24 else f["time"]
    d["time"] = d["time"][:-1] + "+00:00"
    return orjson.dumps(d)


def _zero_values(d: dict[str, Any]) -> bytes:
    # Defaults protojson omits: a zero int32, an empty string, an empty list, an enum's zero name,
    # a zero 64-bit integer, a zero sub_type (nested), a null.
    f = d["flow"]
    f.setdefault("drop_reason", 0)
    f.setdefault("Summary", "")
    f.setdefault("source_names", [])
    f.setdefault("auth_type", "DISABLED")
    f.setdefault("socket_cookie", "0")
    f["event_type"].setdefault("sub_type", 0)
    f["destination"].setdefault("pod_name", "")
    f["trace_context"] = None
    return orjson.dumps(d)


def _legacy_json(d: dict[str, Any]) -> bytes:
    # Hubble < 1.16 `-o json`: the bare Flow; its node_name and time make the wrapper.
    return orjson.dumps(d["flow"])


def _exporter(d: dict[str, Any]) -> bytes:
    # An exporter / log-shipper line: wrapper fields first, the shipper's own fields around them.
    return orjson.dumps({"time": d["time"], "node_name": d["node_name"], "stream": "stdout",
                         "flow": d["flow"], "kubernetes": {"pod_name": "hubble-exporter"}})


def _whitespace(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d, indent=1, ensure_ascii=False).replace("\n", " ").encode() + b"  "


def _ascii_escapes(d: dict[str, Any]) -> bytes:
    # Python's json: every non-ASCII character and / escaped; Go writes them as they are.
    import json

    d["flow"]["Summary"] = d["flow"].get("Summary", "") + " caf\u00e9/\u2603"
    return json.dumps(d, separators=(",", ":")).encode()


def _camel_and_numbers(d: dict[str, Any]) -> bytes:
    # lowerCamel names deep in the flow, an enum by number, 32-bit integers as strings.
    f = d["flow"]
    f["nodeName"] = f.pop("node_name")
    for proto in ("TCP", "UDP"):
        ports = f.get("l4", {}).get(proto)
        if ports is not None and "destination_port" in ports:
            ports["destinationPort"] = str(ports.pop("destination_port"))
    f["event_type"]["type"] = str(f["event_type"]["type"])
    f["verdict"] = {"FORWARDED": 1, "DROPPED": 2}.get(f["verdict"], f["verdict"])
    return orjson.dumps(d)


# (name, rewrite of a parsed recorded line into another spelling of the same flow)
FORMS: list[tuple[str, Callable[[dict[str, Any]], bytes]]] = [
    ("fields in another order at every level", _reordered),
    ("timestamps with .000 and +00:00", _millis_zero),
    ("zero values written out", _zero_values),
    ("legacy -o json bare flow", _legacy_json),
    ("exporter / log-shipper wrapper", _exporter),
    ("extra whitespace", _whitespace),
    ("ASCII escapes", _ascii_escapes),
    ("lowerCamel, enum numbers, integers as strings", _camel_and_numbers),
]


def _canonical(line: bytes) -> bytes:
    return encode_event(EventNormalizer().normalize(orjson.loads(line)).event)


@pytest.mark.parametrize("rewrite", [f[1] for f in FORMS], ids=[f[0] for f in FORMS])
@pytest.mark.parametrize("output", ["jsonpb", "json"])
def test_every_spelling_prints_hubbles_bytes(output: str, rewrite: Callable[[dict[str, Any]], bytes]) -> None:
    variants = b"\n".join(rewrite(copy.deepcopy(orjson.loads(line))) for line in SAMPLE) + b"\n"
    if rewrite is _ascii_escapes:
        want = [_canonical(orjson.dumps(orjson.loads(v))) for v in variants.splitlines()]
    else:
        want = list(SAMPLE)
    assert _print(output, variants).splitlines() == want


def test_the_reader_lets_these_spellings_through_as_canonical() -> None:
    # Why printing the line as read was wrong: the reader's shallow fast path takes all of these.
    from hushflow.flow.reader import FlowReader, ReadStats

    stats = ReadStats()
    variants = [_reordered, _millis_zero, _whitespace]
    data = b"\n".join(v(copy.deepcopy(orjson.loads(LINES[0]))) for v in variants)
    list(FlowReader(["-"], stats=stats, stdin=io.BytesIO(data)))
    assert stats.converted < len(variants)


def test_legacy_json_option_prints_the_canonical_bare_flow() -> None:
    line = orjson.dumps({"flow": {"verdict": "DROPPED", "drop_reason": 0, "Summary": "",
                                  "time": "2026-03-02T09:00:00.000Z"}, "node_name": "n"})
    want = b'{"time":"2026-03-02T09:00:00Z","verdict":"DROPPED"}\n'
    assert _print("json", line, legacy_json=True) == want


def test_lost_events_are_reencoded() -> None:
    # cpu is an Int32Value (flow.proto): its zero is printed.
    line = b'{ "lost_events" : {"num_events_lost": 7, "source": 1, "cpu": 0} }'
    assert _print("jsonpb", line) == b'{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":0}}\n'


def test_html_characters_are_escaped_as_go_does() -> None:
    line = orjson.dumps({"flow": {"Summary": "<a&b>\u2028", "drop_reason": 0}})
    assert _print("jsonpb", line) == b'{"flow":{"Summary":"\\u003ca\\u0026b\\u003e\\u2028"}}\n'


# -- the proof behind the fast path --------------------------------------------------------------


def test_recorded_lines_are_proven_canonical() -> None:
    check = make_canonical_event_check()
    assert all(check(orjson.loads(line)) for line in LINES)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[key]
        d[last] = value

    return edit


# Values one level or more inside the flow, where the reader's fast path does not look; the
# proof must refuse each (protojson's canonical form: proto names, declaration order, defaults
# omitted, enums by name, 64-bit integers as decimal strings, timestamps with 0/3/6/9 digits).
NOT_CANONICAL = [
    ("port as a string", _set("flow.l4.UDP.destination_port", "53")),
    ("port out of uint32 range", _set("flow.l4.UDP.destination_port", 2**32)),
    ("port as a float", _set("flow.l4.UDP.destination_port", 53.0)),
    ("TCP null", _set("flow.l4.TCP", None)),
    ("lowerCamel nested", _set("flow.l4.UDP.sourcePort", 1)),
    ("unknown nested field", _set("flow.source.color", "red")),
    ("zero identity", _set("flow.source.identity", 0)),
    ("empty labels", _set("flow.source.labels", [])),
    ("label not a string", _set("flow.source.labels", [1])),
    ("enum zero name", _set("flow.IP.ipVersion", "IP_NOT_USED")),
    ("unknown enum name", _set("flow.IP.ipVersion", "IPv5")),
    ("int64 as a number", _set("flow.socket_cookie", 5)),
    ("int64 with a leading zero", _set("flow.socket_cookie", "05")),
    ("int64 zero", _set("flow.socket_cookie", "0")),
    ("time with .000", _set("flow.time", "2026-03-02T09:00:00.000Z")),
    ("time with .100000", _set("flow.time", "2026-03-02T09:00:00.100000Z")),
    ("time with one digit", _set("flow.time", "2026-03-02T09:00:00.5Z")),
    ("time with an offset", _set("flow.time", "2026-03-02T09:00:00+00:00")),
    ("time on no date", _set("flow.time", "2026-02-30T09:00:00Z")),
    ("wrapper node name empty", _set("node_name", "")),
    ("workload kind empty", _set("flow.source.workloads", [{"name": "bff", "kind": ""}])),
]


@pytest.mark.parametrize("edit", [r[1] for r in NOT_CANONICAL], ids=[r[0] for r in NOT_CANONICAL])
def test_the_proof_refuses_what_normalizing_would_change(edit: Callable[[dict[str, Any]], None]) -> None:
    check = make_canonical_event_check()
    d = orjson.loads(LINES[0])
    assert check(d)
    edit(d)
    assert not check(d)


def test_the_proof_keeps_presence_fields_with_zero_values() -> None:
    # is_reply is a BoolValue (flow.proto): false is printed, and Hubble's recordings hold it.
    d = orjson.loads(LINES[0])
    assert d["flow"]["is_reply"] is False
    assert make_canonical_event_check()(d)


def test_remembered_answers_are_per_value() -> None:
    # Endpoint answers are remembered by their bytes: a changed endpoint is checked again.
    check = make_canonical_event_check()
    good = orjson.loads(LINES[0])
    assert check(good)
    for edit in (r[1] for r in NOT_CANONICAL if r[0] in ("zero identity", "empty labels", "unknown nested field")):
        bad = orjson.loads(LINES[0])
        edit(bad)
        assert not check(bad)
        assert check(orjson.loads(LINES[0]))
