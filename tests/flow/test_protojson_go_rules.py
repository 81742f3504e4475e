"""protojson's reading rules, as Hubble applies them to `--input-file` lines.

Each row was checked by hand against the real hubble CLI 1.19.4 (built from cilium/hubble
v1.19.4, `hubble observe --input-file F -o jsonpb`, 2026-12-01): "printed" rows are the value
it printed for the field, "refused" rows are lines it skipped with "Failed to unmarshal json to
flow". The rules come from:
- google.golang.org/protobuf encoding/protojson/decode.go: unmarshalInt/unmarshalUint (a
  quoted integer: no surrounding space, one JSON number token at the start), unmarshalEnum
  (a number is read as an int32, so 1.0 is 1; an unknown name is left unset with
  DiscardUnknown), a field given twice is an error;
- internal/encoding/json decode_number.go: parseNumber (the token ends at a delimiter, so
  "42,1" is 42), parseNumberParts + normalizeToIntString (exponents applied, trailing zeros of
  the fraction dropped, at most 20 digits);
- hubble cmd/observe io_reader_observer.go (vendored in cilium/hubble): a line that fails is
  read again with DiscardUnknown, and from then on every line is;
- Go's time.Parse(time.RFC3339Nano) for a Timestamp: "T" and "Z" in upper case only.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from hushflow.cli.observe import run_observe
from tests.flow.test_jsonpb_proof import BASE

TIME = b'"time":"2026-03-02T09:00:00.516957955Z"}'


def _cookie(value: str) -> bytes:
    return BASE.replace(b'"Summary":', b'"socket_cookie":' + value.encode() + b',"Summary":', 1)


def _port(value: str) -> bytes:
    return BASE.replace(b'"source_port":36844', b'"source_port":' + value.encode(), 1)


def _verdict(value: str) -> bytes:
    return BASE.replace(b'"verdict":"FORWARDED"', b'"verdict":' + value.encode(), 1)


def _time(value: str) -> bytes:
    return BASE.replace(TIME, b'"time":' + value.encode() + b"}", 1)


REFUSED = object()
ABSENT = None

# (id, line, path to the field in the printed event, what hubble 1.19.4 printed there)
ROWS = [
    ('uint64 "042": a leading zero', _cookie('"042"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 " 42": surrounding space', _cookie('" 42"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "42 "', _cookie('"42 "'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "+1": no plus sign', _cookie('"+1"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "0x10"', _cookie('"0x10"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "42x"', _cookie('"42x"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "0.5": not an integer', _cookie('"0.5"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "1e20": over 20 digits', _cookie('"1e20"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "42\\n"', _cookie('"42\\n"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "1e2"', _cookie('"1e2"'), ("flow", "socket_cookie"), "100"),
    ('uint64 "1E+2"', _cookie('"1E+2"'), ("flow", "socket_cookie"), "100"),
    ('uint64 "100e-2"', _cookie('"100e-2"'), ("flow", "socket_cookie"), "1"),
    ('uint64 "1.50e1"', _cookie('"1.50e1"'), ("flow", "socket_cookie"), "15"),
    ('uint64 "4.2e1"', _cookie('"4.2e1"'), ("flow", "socket_cookie"), "42"),
    ('uint64 "1e19"', _cookie('"1e19"'), ("flow", "socket_cookie"), "10000000000000000000"),
    ('uint64 "42,1": the token ends at the comma', _cookie('"42,1"'), ("flow", "socket_cookie"), "42"),
    ('uint64 "42]"', _cookie('"42]"'), ("flow", "socket_cookie"), "42"),
    ('uint64 "4 2"', _cookie('"4 2"'), ("flow", "socket_cookie"), "4"),
    ('uint64 "\\u0034\\u0032": escapes are the string', _cookie('"\\u0034\\u0032"'), ("flow", "socket_cookie"), "42"),
    ('uint64 "42\\u001f": not white space to Go, so a delimiter', _cookie('"42\\u001f"'), ("flow", "socket_cookie"), "42"),
    ('uint64 "42\\u00a0": Go trims no-break spaces', _cookie('"42\\u00a0"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "42\\u0085"', _cookie('"42\\u0085"'), ("flow", "socket_cookie"), REFUSED),
    ('uint64 "-0" is zero, the default', _cookie('"-0"'), ("flow", "socket_cookie"), ABSENT),
    ('uint64 "0e5" is zero', _cookie('"0e5"'), ("flow", "socket_cookie"), ABSENT),
    ("uint64 max as a number", _cookie("18446744073709551615"), ("flow", "socket_cookie"), "18446744073709551615"),
    ('uint32 "3.6844e4"', _port('"3.6844e4"'), ("flow", "l4", "TCP", "source_port"), 36844),
    ('uint32 " 36844"', _port('" 36844"'), ("flow", "l4", "TCP", "source_port"), REFUSED),
    ("uint32 36844.0", _port("36844.0"), ("flow", "l4", "TCP", "source_port"), 36844),
    ("uint32 4294967296", _port("4294967296"), ("flow", "l4", "TCP", "source_port"), REFUSED),
    ("enum 1.0 is the number 1", _verdict("1.0"), ("flow", "verdict"), "FORWARDED"),
    ("enum 1", _verdict("1"), ("flow", "verdict"), "FORWARDED"),
    ('enum "1": an unknown name, discarded', _verdict('"1"'), ("flow", "verdict"), ABSENT),
    ('enum "forwarded": names are case-sensitive, discarded', _verdict('"forwarded"'), ("flow", "verdict"), ABSENT),
    ("enum 99 stays a number", _verdict("99"), ("flow", "verdict"), 99),
    ("enum 1.5", _verdict("1.5"), ("flow", "verdict"), REFUSED),
    ("time in lower case", _time('"2026-03-02t09:00:00z"'), ("time",), REFUSED),
    ("time with an offset", _time('"2026-03-02T10:00:00+01:00"'), ("time",), "2026-03-02T09:00:00Z"),
    ("time .000Z", _time('"2026-03-02T09:00:00.000Z"'), ("time",), "2026-03-02T09:00:00Z"),
    ("a field given twice", _verdict('"FORWARDED","verdict":"DROPPED"'), ("flow", "verdict"), REFUSED),
]


def _observe(line: bytes) -> tuple[bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    run_observe(["--input-file", "-", "-o", "jsonpb"], stdout=out, stderr=err, stdin=io.BytesIO(line + b"\n"))
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("line", "path", "hubble"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_observe_reads_each_spelling_as_hubble_does(line: bytes, path: tuple[str, ...], hubble: object) -> None:
    printed, err = _observe(line)
    if hubble is REFUSED:
        assert printed == b""
        assert "bad line" in err
        return
    value: object = orjson.loads(printed)
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None  # type: ignore[union-attr]
    assert value == hubble


def test_a_discarded_enum_name_is_reported_as_unknown() -> None:
    printed, err = _observe(_verdict('"forwarded"'))
    assert printed and "verdict" not in orjson.loads(printed)["flow"]
    assert "unknown fields ignored" in err and "flow.Verdict value forwarded" in err


def test_a_duplicate_key_is_refused_with_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(BASE + b"\n" + _verdict('"FORWARDED","verdict":"DROPPED"') + b"\n")
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", str(path), "-o", "compact"], stdout=out, stderr=err)
    assert code == 2
    assert f"{path}:2: duplicate field 'verdict'" in err.getvalue()
    assert out.getvalue().count(b"\n") == 1  # the good line is still printed


@pytest.mark.parametrize("output", ["compact", "dict", "table"])
@pytest.mark.parametrize(("line", "_path", "_hubble"), [r[1:] for r in ROWS if r[3] is REFUSED],
                         ids=[r[0] for r in ROWS if r[3] is REFUSED])
def test_a_line_hubble_refuses_is_refused_in_every_output(output: str, line: bytes, _path: object,
                                                          _hubble: object) -> None:
    """hubble refuses the whole line before printing anything, so the text outputs (which print
    none of these fields) must refuse it too: a line the proof does not vouch for is validated
    at every level, not only where the printer reads."""
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", "-", "-o", output], stdout=out, stderr=err, stdin=io.BytesIO(line + b"\n"))
    assert code == 2
    assert out.getvalue() == b""
