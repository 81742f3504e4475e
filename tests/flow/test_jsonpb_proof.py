"""The C proof that a line is already Hubble's jsonpb bytes (hushflow/flow/_jsonpb_proof.c).

`observe -o jsonpb` prints a proven line as it is read, so a wrong "proven" prints bytes Hubble
does not print. The property every test here holds the proof to: when ``prove(line) >= 0``, the
slow path (parse, normalize, encode) gives ``line`` back byte for byte, and ``line[8:end]`` is
what ``-o json`` prints. Held on every recorded line in tests/ and ../shared/data, on one row per
rule (both ways: proven, and not proven although the line is valid protojson), and on random
byte mutations of Hubble lines.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from hushflow.flow import protojson
from hushflow.flow.protojson import EventNormalizer, encode_event, make_canonical_event_check, make_line_proof
from hushflow.flow.reader import FlowReader, ProvenEvent

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"

prove = make_line_proof()


def test_the_c_module_is_built() -> None:
    """`make test` installs with a C compiler: the proof must be there (so no test here skips)."""
    assert prove is not None


def _slow(line: bytes) -> tuple[bytes, bytes] | None:
    """(jsonpb, json) bytes of the slow path, None when it refuses the line."""
    try:
        event = EventNormalizer().normalize(orjson.loads(line)).event
    except (orjson.JSONDecodeError, protojson.ProtoJSONError, RecursionError):
        return None
    flow = event.get("flow")
    return encode_event(event), (protojson.go_json_escape(orjson.dumps(flow)) if flow is not None else b"")


def _assert_sound(line: bytes) -> bool:
    """The property: proven implies the slow path gives the same bytes. Returns proven."""
    assert prove is not None
    end = prove(line)
    if end < 0:
        return False
    slow = _slow(line)
    assert slow is not None, f"proven but refused by the slow path: {line[:200]!r}"
    assert slow[0] == line, f"proven but re-encoded differently:\n{line[:300]!r}\n{slow[0][:300]!r}"
    assert line[8:end] == slow[1]
    return True


def _golden_lines() -> list[bytes]:
    return [ln for ln in gzip.decompress(GOLDEN.read_bytes()).split(b"\n") if ln]


GOLDEN_LINES = _golden_lines()
BASE = max(GOLDEN_LINES, key=len)  # a FORWARDED TCP flow with policies, workloads, labels


def test_every_hubble_line_of_the_golden_recording_is_proven() -> None:
    proven = sum(_assert_sound(line) for line in GOLDEN_LINES)
    # gen_flows writes Hubble's jsonpb bytes; only its lost-events lines are not flow lines.
    flows = sum(1 for line in GOLDEN_LINES if line.startswith(b'{"flow":'))
    assert proven == flows > 3900


def test_every_recorded_line_elsewhere_is_sound() -> None:
    files = [*REPO.glob("tests/**/*.jsonl"), *REPO.glob("examples/**/*.jsonl"), *REPO.glob("src/**/*.jsonl")]
    assert len(files) >= 4  # the example's, the enriched golden's, the real flows quoted in public
    lines = 0
    for path in files:
        for line in path.read_bytes().split(b"\n"):
            line = line.rstrip(b"\r")
            if line:
                lines += 1
                _assert_sound(line)
    assert lines > 50


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def mutate(line: bytes) -> bytes:
        assert old in line, old
        return line.replace(old, new, 1)

    return mutate


def _flow_field(text: bytes) -> Callable[[bytes], bytes]:
    """Add ``"key":value`` in declaration order (before "Summary", a late field)."""
    return _replace(b'"Summary":', text + b',"Summary":')


# One row per rule of the proof: valid protojson (the slow path takes it) in another spelling.
NOT_PROVEN = {
    "whitespace after a colon": _replace(b'"verdict":"FORWARDED"', b'"verdict": "FORWARDED"'),
    "a trailing newline is the reader's, a trailing space is not canonical": lambda ln: ln + b" ",
    "keys out of declaration order": _replace(
        b'"uuid":"7c2c74e3-ee13-4f26-b586-6942c4f63dbe","emitter":{"name":"Hubble","version":"1.19.4+g1a2b3c4d"}',
        b'"emitter":{"name":"Hubble","version":"1.19.4+g1a2b3c4d"},"uuid":"7c2c74e3-ee13-4f26-b586-6942c4f63dbe"'),
    "out of order inside a nested message": _replace(b'{"name":"Hubble","version"', b'{"version":"1.19.4","name"'),
    "a lowerCamel JSON name": _replace(b'"traffic_direction"', b'"trafficDirection"'),
    "an empty string where there is no presence": _flow_field(b'"source_names":[""],"destination_names":[]'),
    "an empty list": _flow_field(b'"policy_log":[]'),
    "false where there is no presence": _replace(b'"Summary":', b'"reply":false,"Summary":'),
    "a zero 32-bit integer": _replace(b'"policy_match_type":3', b'"policy_match_type":0'),
    "a zero 64-bit integer (a truthy string)": _replace(b'"Summary":', b'"socket_cookie":"0","Summary":'),
    "a 64-bit integer as a JSON number": _replace(b'"Summary":', b'"socket_cookie":42,"Summary":'),
    "a 64-bit integer with a leading zero": _replace(b'"Summary":', b'"socket_cookie":"042","Summary":'),
    "a 32-bit integer as a string": _replace(b'"policy_match_type":3', b'"policy_match_type":"3"'),
    "a 32-bit integer as 3.0": _replace(b'"policy_match_type":3', b'"policy_match_type":3.0'),
    "a 32-bit integer with an exponent": _replace(b'"policy_match_type":3', b'"policy_match_type":3e0'),
    "-0": _replace(b'"source_port":36844', b'"source_port":-0'),
    "an enum by number": _replace(b'"verdict":"FORWARDED"', b'"verdict":1'),
    "the enum's zero name": _replace(b'"Summary":', b'"auth_type":"DISABLED","Summary":'),
    "a timestamp with .000 milliseconds": _replace(b'"time":"2026-03-02T09:00:00.516957955Z"}',
                                                   b'"time":"2026-03-02T09:00:00.000Z"}'),
    "a timestamp with a zone offset": _replace(b'"time":"2026-03-02T09:00:00.516957955Z"}',
                                               b'"time":"2026-03-02T10:00:00.516957955+01:00"}'),
    "a timestamp with trailing zero nanoseconds": _replace(b'.516957955Z"}', b'.516957000Z"}'),
    "null": _replace(b'"Summary":', b'"tunnel":null,"Summary":'),
    "an escaped slash": _replace(b'"k8s:app=web"', b'"k8s:app\\/web"'),
    "an unnecessary unicode escape": _replace(b'"k8s:app=web"', b'"k8s:\\u0061pp=web"'),
    "an upper-case hex escape": _replace(b'"Summary":"', b'"Summary":"\\u001F'),
    "a raw <, which Go escapes": _replace(b'"Summary":"', b'"Summary":"<'),
    "a raw U+2028, which Go escapes": _replace(b'"Summary":"', '"Summary":"\u2028'.encode()),
    "\\u0008 where orjson writes \\b": _replace(b'"Summary":"', b'"Summary":"\\u0008'),
    "an unknown field": _flow_field(b'"hushflow":{"expected":true}'),
}

# Canonical, but left to the slow path (it prints the same bytes, only slower).
CANONICAL_NOT_PROVEN = {
    "an opaque Any (extensions)": _replace(b'"Summary":"TCP Flags: SYN"',
                                           b'"Summary":"TCP Flags: SYN","extensions":{}'),
    "a lost-events line is not a flow line": lambda _ln: b'{"lost_events":{"source":"HUBBLE_RING_BUFFER",'
                                                        b'"num_events_lost":"1"},"time":"2026-03-02T09:00:00Z"}',
    "a legacy bare flow": lambda ln: ln[8 : ln.index(b',"node_name":"prod-eu1/ip-10-40-1-34.eu-west-1.compute.'
                                                    b'internal","time"')],
}

# Still canonical after the change: what orjson + Go's escaping write, and zero values with presence.
PROVEN = {
    "Go's HTML escapes": _replace(b'"Summary":"', b'"Summary":"\\u003c\\u003e\\u0026\\u2028\\u2029'),
    "orjson's short escapes": _replace(b'"Summary":"', b'"Summary":"\\"\\\\\\b\\f\\n\\r\\t'),
    "other control characters in lower-case hex": _replace(b'"Summary":"', b'"Summary":"\\u0000\\u001f'),
    "multi-byte UTF-8 and DEL": _replace(b'"Summary":"', '"Summary":"é😀\x7f'.encode()),
    "false where the field has presence (is_reply)": _replace(b'"Summary":', b'"is_reply":false,"Summary":'),
    "an empty message": _replace(b'"Summary":', b'"file":{},"Summary":'),
    "millisecond and microsecond timestamps": _replace(b'.516957955Z"}', b'.516957Z"}'),
    "the largest uint64": _replace(b'"Summary":', b'"socket_cookie":"18446744073709551615","Summary":'),
}


@pytest.mark.parametrize("mutate", NOT_PROVEN.values(), ids=NOT_PROVEN.keys())
def test_another_spelling_is_not_proven(mutate: Callable[[bytes], bytes]) -> None:
    assert prove is not None and prove(BASE) > 0
    line = mutate(BASE)
    assert prove(line) == -1
    slow = _slow(line)
    assert slow is None or slow[0] != line  # the row is meaningful: the line is truly not canonical


@pytest.mark.parametrize("mutate", CANONICAL_NOT_PROVEN.values(), ids=CANONICAL_NOT_PROVEN.keys())
def test_what_the_proof_does_not_know_goes_the_slow_way(mutate: Callable[[bytes], bytes]) -> None:
    assert prove is not None
    line = mutate(BASE)
    assert prove(line) == -1
    assert _slow(line) is not None


@pytest.mark.parametrize("mutate", PROVEN.values(), ids=PROVEN.keys())
def test_the_canonical_spelling_is_proven(mutate: Callable[[bytes], bytes]) -> None:
    assert _assert_sound(mutate(BASE))


@pytest.mark.parametrize(
    "value",
    ["18446744073709551616", "-1", "99999999999999999999999"],
    ids=["uint64 overflow", "negative uint64", "far too long"],
)
def test_a_64_bit_value_out_of_range_is_not_proven(value: str) -> None:
    assert prove is not None
    assert prove(BASE.replace(b'"Summary":', b'"socket_cookie":"' + value.encode() + b'","Summary":', 1)) == -1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"source_port":36844', b'"source_port":4294967296'),  # uint32 overflow
        (b'"source_port":36844', b'"source_port":-1'),
        (b'"time":"2026-03-02T09:00:00.516957955Z"}', b'"time":"2026-02-30T09:00:00.516957955Z"}'),
        (b'"time":"2026-03-02T09:00:00.516957955Z"}', b'"time":"2026-03-02T09:00:60.516957955Z"}'),
        (b'"time":"2026-03-02T09:00:00.516957955Z"}', b'"time":"2026-03-02T24:00:00.516957955Z"}'),
        (b'"Summary":"', b'"Summary":"\xed\xa0\x80'),  # a UTF-8 encoded surrogate
        (b'"Summary":"', b'"Summary":"\xc0\xaf'),  # overlong
        (b'"Summary":"', b'"Summary":"\xf4\x90\x80\x80'),  # past U+10FFFF
        (b'"Summary":"', b'"Summary":"\xff'),
        (b'"verdict":"FORWARDED"', b'"verdict":"FORWARDED","verdict":"DROPPED"'),  # twice
    ],
)
def test_what_is_no_valid_event_is_never_proven(old: bytes, new: bytes) -> None:
    assert prove is not None
    assert prove(BASE.replace(old, new, 1)) == -1


def test_a_oneof_set_twice_is_not_proven() -> None:
    assert prove is not None
    line = BASE.replace(b'"l4":{"TCP":{', b'"l4":{"TCP":{"source_port":1},"UDP":{', 1)
    assert prove(line) == -1


def test_nesting_beyond_the_limit_is_not_proven_and_does_not_crash() -> None:
    assert prove is not None
    deep = b'{"flow":{"l7":{"dns":' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"
    assert prove(deep) == -1


def test_random_mutations_of_hubble_lines_are_never_proven_wrongly() -> None:
    """Byte-level mutations (delete, insert, replace, duplicate a span) of real lines: whatever
    the proof still accepts must be what the slow path writes (seeded: the same run each time)."""
    rng = random.Random(20261201)
    alphabet = b'"{}[],:\\0123456789-.eEtrufalsn Z <>&u' + "é\u2028".encode() + b"\x00\x1f\xff"
    proven = 0
    for _ in range(3000):
        line = bytearray(GOLDEN_LINES[rng.randrange(len(GOLDEN_LINES))])
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line))
            op = rng.randrange(4)
            if op == 0:
                del line[at : at + rng.randint(1, 8)]
            elif op == 1:
                line[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            elif op == 2:
                line[at] = rng.choice(alphabet)
            else:
                span = line[at : at + rng.randint(1, 40)]
                line[at:at] = span
        proven += _assert_sound(bytes(line))
    assert proven > 0  # some mutations keep a canonical line (e.g. inside a string)


def test_the_python_proof_refuses_a_zero_64_bit_value_too() -> None:
    """The same rule in make_canonical_event_check: "0" is truthy but a default (was accepted,
    so `socket_cookie: "0"` was printed where Hubble omits it)."""
    data = orjson.loads(BASE.replace(b'"Summary":', b'"socket_cookie":"0","Summary":', 1))
    assert not make_canonical_event_check()(data)
    assert "socket_cookie" not in protojson.canonical_event(data, make_canonical_event_check())["flow"]


def test_the_reader_hands_out_proven_lines_unparsed_and_parses_them_when_read(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(BASE + b"\n" + BASE.replace(b'"verdict": ', b"") + b"\n")
    events = list(FlowReader([path], prove_lines=True))
    assert [type(e) for e in events] == [ProvenEvent, ProvenEvent]
    assert events[0]._parsed is None
    assert events[0].data["flow"]["verdict"] == "FORWARDED"
    assert events[0].raw == BASE
    with pytest.raises(AttributeError):
        events[0].data = {}


def test_observe_prints_the_same_bytes_with_and_without_the_c_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every golden line and every NOT_PROVEN row, through `hushflow observe -o jsonpb` and
    `-o json`: the output with the proof equals the output of the pure-Python path."""
    from hushflow.cli.observe import run_observe

    rows = [*NOT_PROVEN.values(), *CANONICAL_NOT_PROVEN.values(), *PROVEN.values()]
    lines = [*GOLDEN_LINES[:400], *(mutate(BASE) for mutate in rows)]
    data = b"\n".join(lines) + b"\n"

    def observe(output: str) -> bytes:
        out, err = io.BytesIO(), io.StringIO()
        run_observe(["--input-file", "-", "-o", output], stdout=out, stderr=err, stdin=io.BytesIO(data))
        return out.getvalue()

    with_proof = {o: observe(o) for o in ("jsonpb", "json")}
    monkeypatch.setattr(protojson, "_jsonpb_proof", None)
    assert make_line_proof() is None
    for output, printed in with_proof.items():
        assert printed == observe(output)
        assert printed.count(b"\n") > 400
