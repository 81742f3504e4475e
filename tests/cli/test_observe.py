"""`hushflow observe` against what hubble 1.19.4 did on the same input (tests/data/hubble-1.19.4-golden).

Every golden case runs through the library (`run_observe`), a handful through the installed CLI.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hushflow.app.observe import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, FollowControl
from hushflow.cli.observe import run_observe
from hushflow.cli.observe_args import observe_help

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden"
FLOWS = GOLDEN / "flows-4k.jsonl.gz"
CASES = json.loads((GOLDEN / "cases.json").read_text())
INPUT_LINES = gzip.decompress(FLOWS.read_bytes()).splitlines()
NOW_NS = 1_772_442_000 * 10**9  # 2026-03-02T09:00:00Z


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(argv, stdout=out, stderr=err, stdin=io.BytesIO(stdin), now_ns=lambda: NOW_NS)
    return code, out.getvalue(), err.getvalue()


def _case_id(case: dict[str, Any]) -> str:
    return " ".join(case["args"])


# --- golden cases -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["cases"], ids=_case_id)
def test_golden_case_selects_the_same_flows(case: dict[str, Any]) -> None:
    code, out, err = run(["--input-file", str(FLOWS), *case["args"], "-o", "jsonpb"])
    assert code == case["exit_code"], err
    if code != 0:
        assert err.splitlines()[0] == case["stderr_first_line"]
        return
    printed = out.splitlines()
    expected = [INPUT_LINES[number - 1] for number in case["matching_input_lines"]]
    assert len(printed) == case["count"]
    assert printed == expected
    assert hashlib.sha256(out).hexdigest() == case["output_sha256"]


@pytest.mark.parametrize("case", CASES["cases"], ids=_case_id)
def test_golden_case_print_raw_filters(case: dict[str, Any]) -> None:
    expected = case["print_raw_filters"]
    code, out, err = run([*case["args"], "--print-raw-filters"])
    assert code == expected["exit_code"]
    assert out.decode() == expected["stdout"]
    assert (err.splitlines() or [""])[0] == expected["stderr_first_line"]


@pytest.mark.parametrize("case", CASES["error_cases"], ids=_case_id)
def test_golden_error_case(case: dict[str, Any]) -> None:
    code, out, err = run(["--input-file", str(FLOWS), *case["args"]])
    assert (code, out) == (case["exit_code"], b"")
    # Hubble's message word for word; hushflow may add one `hushflow hint:` line after it.
    hubble_part, _, hint = err.partition("\nhushflow hint: ")
    assert hubble_part + ("\n" if hint else "") == case["stderr"] + "\n"
    if "policy_log.endsWith" in " ".join(case["args"]):
        assert "_flow.policy_log.exists(l, l.endsWith('x'))" in hint


# --- request flags ------------------------------------------------------------------------------

REQUEST_ERRORS = [
    (["--first", "1", "--last", "1"], "cannot set both --first and --last"),
    (["--first", "1", "--all"], "cannot set both --first and --all"),
    (["--first", "1", "-f"], "cannot set both --first and --follow"),
    (["--last", "1", "--all"], "cannot set both --last and --all"),
    (["--first", "x"], 'invalid argument "x" for "--first" flag: strconv.ParseUint: parsing "x": invalid syntax'),
    (["--all=maybe"], 'invalid argument "maybe" for "--all" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["--since", "yesterday"], "failed to parse the since time: failed to convert yesterday to time"),
    (["--until", "2026-13-01"], "failed to parse the until time: failed to convert 2026-13-01 to time"),
    (["-o", "yaml"], "invalid output format: yaml"),
    (["-o", "table", "--follow"], "table output format is not compatible with follow mode"),
    (["--verdict", "DROPPED", "--not", "-o", "yaml"], "trailing --not found in the arguments"),
    (["--allowlist", "{"], "invalid --allowlist flag: failed to decode '{': "),
    (["--last", "1000001"], "--last must be <= 1_000_000, got 1000001"),
    (["--server", "localhost:4245"], "--server is not supported: "),
    (["-P"], "--auto-port-forward is not supported: "),
    (["flows.json"], 'unexpected argument "flows.json": flows are read with --input-file FILE'),
]


@pytest.mark.parametrize(("argv", "message"), REQUEST_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_request_flag_errors(argv: list[str], message: str) -> None:
    code, out, err = run(["--input-file", str(FLOWS), *argv])
    assert (code, out) == (EXIT_USAGE, b"")
    assert err.startswith(message) and err.endswith("\n")
    assert "Traceback" not in err


def test_no_input_is_a_clear_error() -> None:
    code, _out, err = run(["--verdict", "DROPPED"])
    assert code == EXIT_USAGE
    assert err.startswith("no input: pass --input-file FILE")


def test_print_raw_filters_is_checked_after_hubble_s_request_checks() -> None:
    assert run(["--first", "1", "--last", "2", "--print-raw-filters"])[0] == EXIT_USAGE
    assert run(["--protocol", "quic", "--print-raw-filters"]) == (
        EXIT_OK, b"allowlist:\n    - '{\"protocol\":[\"quic\"]}'\n", ""
    )


def _event(time: str | None, uuid: str) -> bytes:
    flow: dict[str, Any] = {"uuid": uuid, "verdict": "FORWARDED"}
    event: dict[str, Any] = {"flow": flow, "node_name": "n"}
    if time is not None:
        flow["time"] = time
        event["time"] = time
    return json.dumps(event, separators=(",", ":")).encode()


SMALL = b"\n".join([
    _event("2026-03-02T08:59:59.999999999Z", "a"),
    _event("2026-03-02T09:00:00Z", "b"),
    _event("2026-03-02T09:00:00.000000001Z", "c"),
    _event(None, "no-time"),
    _event("2026-03-02T09:05:00Z", "d"),
]) + b"\n"


def _uuids(out: bytes) -> list[str]:
    return [json.loads(line)["flow"]["uuid"] for line in out.splitlines()]


WINDOW_ROWS = [
    ("since is inclusive, to the nanosecond", ["--since", "2026-03-02T09:00:00Z"], ["b", "c", "d"]),
    ("until is inclusive", ["--until", "2026-03-02T09:00:00Z"], ["a", "b", "no-time"]),
    ("relative since", ["--since", "0s"], ["b", "c", "d"]),
    ("until ignored when following", ["--until", "2026-03-02T09:00:00Z", "--follow", "--input-file", "-"],
     ["a", "b", "c", "no-time", "d"]),
    ("first", ["--first", "2"], ["a", "b"]),
    ("last keeps the newest", ["--last", "2"], ["no-time", "d"]),
    ("last larger than the input", ["--last", "10"], ["a", "b", "c", "no-time", "d"]),
    ("all", ["--all"], ["a", "b", "c", "no-time", "d"]),
    ("first 0 means no limit", ["--first", "0"], ["a", "b", "c", "no-time", "d"]),
    ("first with a time window", ["--first", "1", "--since", "2026-03-02T09:00:00.5Z"], ["d"]),
]


@pytest.mark.parametrize(("argv", "uuids"), [row[1:] for row in WINDOW_ROWS], ids=[row[0] for row in WINDOW_ROWS])
def test_time_window_and_counts(argv: list[str], uuids: list[str]) -> None:
    code, out, err = run(["--input-file", "-", "-o", "jsonpb", *argv], stdin=SMALL)
    assert (code, err) == (EXIT_OK, "")
    assert _uuids(out) == uuids


def test_input_files_are_read_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    first.write_bytes(_event("2026-03-02T09:00:00Z", "x") + b"\n")
    second.write_bytes(_event("2026-03-02T09:00:01Z", "y") + b"\n")
    code, out, _err = run(["--input-file", str(second), "--input-file", str(first), "-o", "json"])
    assert (code, _uuids(out)) == (EXIT_OK, ["y", "x"])


def test_follow_reads_lines_appended_later(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(_event("2026-03-02T09:00:00Z", "old") + b"\n")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            with path.open("ab") as file:
                file.write(_event("2026-03-02T09:00:01Z", "new") + b"\n")

    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(
        ["--input-file", str(path), "-f", "-o", "jsonpb", "--not", "--uuid", "nothing"],
        stdout=out, stderr=err, follow_control=FollowControl(sleep=sleep, stop=lambda: len(waits) >= 3),
    )
    assert (code, err.getvalue()) == (EXIT_OK, "")
    assert _uuids(out.getvalue()) == ["old", "new"]


def test_bad_lines_are_skipped_summarised_and_fail_the_run() -> None:
    code, out, err = run(["--input-file", "-", "-o", "jsonpb"], stdin=SMALL + b"not json\n")
    assert code == EXIT_BAD_INPUT
    assert len(out.splitlines()) == 5
    assert "-:6:" in err and "Traceback" not in err


def test_strict_stops_at_the_first_bad_line() -> None:
    code, out, err = run(["--input-file", "-", "-o", "jsonpb", "--strict"], stdin=b"{]\n" + SMALL)
    assert code == EXIT_BAD_INPUT
    assert out == b""
    assert err.startswith("-:1:")


def test_silent_errors_hides_the_summary_but_not_the_exit_code() -> None:
    code, _out, err = run(["--input-file", "-", "-s"], stdin=b"nope\n")
    assert (code, err) == (EXIT_BAD_INPUT, "")


def test_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    code, _out, err = run(["--input-file", str(tmp_path / "missing.json")])
    assert code != EXIT_OK
    assert "missing.json" in err and "Traceback" not in err


def test_help_teaches_every_flag_in_groups() -> None:
    code, out, _err = run(["--verdict", "DROPPED", "-h"])
    text = out.decode()
    assert code == EXIT_OK and text == observe_help()
    for group in ("Input:", "Selectors:", "Filters:", "Raw filters:", "Formatting:"):
        assert f"\n{group}\n" in text
    for flag in ("--not", "--verdict", "-t, --type", "-n, --namespace", "-A, --all-namespaces", "-l, --label",
                 "-4, --ipv4", "--cel-expression", "--allowlist", "--since", "--first", "--last", "--all",
                 "-o, --output", "--print-raw-filters", "--print-policy-names", "--print-node-name",
                 "--input-file", "-f, --follow", "--strict"):
        assert flag in text, flag


def test_compact_output_is_the_default() -> None:
    code, out, _err = run(["--input-file", str(FLOWS), "--first", "1"])
    assert code == EXIT_OK
    assert b" -> " in out and not out.startswith(b"{")


# --- the real CLI -------------------------------------------------------------------------------


def hushflow(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "hushflow", "observe", *args],
        input=stdin, capture_output=True, check=False, env={**os.environ, "TZ": "UTC"},
    )


CLI_CASES = [case for case in CASES["cases"] if case["args"] in (
    ["--not", "--verdict", "FORWARDED"],
    ["-A", "--verdict", "DROPPED"],
    ["--not", "--http-method", "GET", "--not", "--to-namespace", "catalog", "--type", "l7"],
    ["--type", "trace:to-stack"],
    ["--cel-expression", "'pci-egress' in _flow.policy_log"],
    ["--reply"],
)]


@pytest.mark.parametrize("case", CLI_CASES, ids=_case_id)
def test_cli_golden_case(case: dict[str, Any]) -> None:
    result = hushflow("--input-file", str(FLOWS), *case["args"], "-o", "jsonpb")
    assert result.returncode == case["exit_code"]
    if case["exit_code"]:
        assert result.stderr.decode().splitlines()[0] == case["stderr_first_line"]
        return
    assert hashlib.sha256(result.stdout).hexdigest() == case["output_sha256"]
    raw = hushflow(*case["args"], "--print-raw-filters")
    assert raw.stdout.decode() == case["print_raw_filters"]["stdout"]


def test_cli_error_case_exact_stderr() -> None:
    case = next(c for c in CASES["error_cases"] if c["args"][0] == "--from-namespace")
    result = hushflow("--input-file", str(FLOWS), *case["args"])
    assert (result.returncode, result.stdout) == (case["exit_code"], b"")
    assert result.stderr.decode() == case["stderr"] + "\n"


def test_cli_reads_stdin_and_keeps_grouped_short_flags() -> None:
    result = hushflow("--input-file", "-", "-4A", "--print-raw-filters")
    assert result.stdout.decode() == (
        "allowlist:\n"
        "    - '{\"source_pod\":[\"/\"],\"ip_version\":[\"IPv4\"]}'\n"
        "    - '{\"destination_pod\":[\"/\"],\"ip_version\":[\"IPv4\"]}'\n"
    )
    piped = hushflow("--input-file", "-", "-o", "jsonpb", stdin=SMALL)
    assert (piped.returncode, _uuids(piped.stdout)) == (0, ["a", "b", "c", "no-time", "d"])


FORMAT_ROWS = [
    ("compact-first120.txt", ["--first", "120"]),
    ("dict-first8.txt", ["--first", "8", "-o", "dict"]),
    ("table-first40.txt", ["--first", "40", "-o", "table"]),
    ("json-first20.txt", ["--first", "20", "-o", "json"]),
]


@pytest.mark.parametrize(("name", "argv"), FORMAT_ROWS, ids=[row[0] for row in FORMAT_ROWS])
def test_cli_output_formats_match_hubble(name: str, argv: list[str]) -> None:
    result = hushflow("--input-file", str(FLOWS), *argv)
    assert result.returncode == 0
    assert result.stdout == (GOLDEN / "formats" / name).read_bytes()


def test_cli_keeps_a_double_dash() -> None:
    result = hushflow("--", "--verdict", "DROPPED")
    assert result.returncode == 1
    assert result.stderr.decode().startswith('unexpected argument "--verdict"')


def test_cli_help() -> None:
    result = hushflow("--help")
    assert result.returncode == 0 and b"Filters:" in result.stdout


def test_cli_quiet_on_broken_pipe() -> None:
    result = subprocess.run(
        f"{sys.executable} -m hushflow observe --input-file {FLOWS} -o jsonpb | head -1",
        shell=True, capture_output=True, check=False,
    )
    assert result.stdout == INPUT_LINES[0] + b"\n"
    assert result.stderr == b""


# --- jsonpb is Hubble's encoding, not the input line ----------------------------------------------


def test_jsonpb_reencodes_lines_written_in_another_spelling(tmp_path: Path) -> None:
    # hubble/pkg/printer/printer.go re-encodes every flow: reordered fields, `.000Z`, written-out
    # zero values and whitespace all print as the recorded line (tests/sinks/test_jsonpb_reencode.py
    # has one row per spelling).
    recorded = [json.loads(line) for line in INPUT_LINES[:30]]
    rewritten = []
    for event in recorded:
        flow = dict(reversed(list(event["flow"].items())))
        flow.setdefault("drop_reason", 0)
        if "." not in flow["time"]:
            flow["time"] = flow["time"][:-1] + ".000Z"
        rewritten.append(json.dumps({"time": event["time"], "flow": flow, "node_name": event["node_name"]}))
    path = tmp_path / "respelled.jsonl"
    path.write_text("\n".join(rewritten) + "\n")
    for output in ("jsonpb", "json"):
        code, out, err = run(["--input-file", str(path), "-o", output])
        assert code == EXIT_OK, err
        assert out.splitlines() == INPUT_LINES[:30]
