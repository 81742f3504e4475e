"""Lint output formats and the command line: text, JSON, SARIF 2.1.0, exit codes, stdin."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.cli import main
from hushflow.policy.lint import lint_paths
from hushflow.policy.lint_output import to_json, to_sarif, write_json, write_text
from hushflow.policy.source import Location, printable

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "telemetry-block")
CLEAN = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: a}
spec:
  endpointSelector: {}
  egress: [{toEntities: [world]}]
"""
WARNING_ONLY = CLEAN.replace("egress: [{toEntities: [world]}]", "egressDeny: [{}]")  # ingress: [{}] is an info


def run(*args, stdin=None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_example_reports_the_fqdn_deny_and_exits_1():
    result = run("lint", "--no-color", EXAMPLE)
    assert result.exit_code == 1
    assert "app-external-block-policy.yaml:15:5: error[HF020] spec.egressDeny[0].toFQDNs:" in result.output
    assert "1 error(s), 0 warning(s)" in result.output


def test_clean_input_exits_0_and_strict_fails_on_warnings(tmp_path):
    (tmp_path / "ok.yaml").write_text(CLEAN)
    (tmp_path / "warn" ).mkdir()
    (tmp_path / "warn" / "w.yaml").write_text(WARNING_ONLY)
    assert run("lint", str(tmp_path / "ok.yaml")).exit_code == 0
    assert run("lint", str(tmp_path / "warn")).exit_code == 0
    assert run("lint", "--strict", str(tmp_path / "warn")).exit_code == 1


def test_stdin_and_unreadable_paths():
    assert run("lint", "-", stdin=CLEAN).exit_code == 0
    result = run("lint", "/nonexistent/policies")
    assert result.exit_code == 2
    assert "no such file or directory: /nonexistent/policies" in result.output


def test_bad_yaml_is_a_diagnostic_and_other_files_are_still_linted(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: [\n")
    (tmp_path / "b.yaml").write_text(CLEAN.replace("egress: [{toEntities: [world]}]", "egressDeny: [{}]"))
    result = run("lint", "--format", "json", str(tmp_path))
    assert result.exit_code == 1
    codes = [(d["code"], Path(d["file"]).name) for d in json.loads(result.output)["diagnostics"]]
    assert codes == [("HF001", "a.yaml"), ("HF052", "b.yaml")]


def test_usage_error_exits_2():
    result = run("lint", "--format", "xml", EXAMPLE)
    assert result.exit_code == 2
    result = run("lint", "--cilium-version", "latest", EXAMPLE)
    assert result.exit_code == 2 and "not a Cilium version" in result.output


def test_json_document():
    document = to_json(lint_paths([EXAMPLE]))
    assert document["summary"]["errors"] == 1 and document["summary"]["policies"] == 4
    (diagnostic,) = document["diagnostics"]
    assert diagnostic["code"] == "HF020" and diagnostic["line"] == 15 and diagnostic["column"] == 5
    assert diagnostic["path"] == "spec.egressDeny[0].toFQDNs" and diagnostic["severity"] == "error"


def test_sarif_document():
    sarif = to_sarif(lint_paths([EXAMPLE]))
    assert sarif["version"] == "2.1.0"
    run_ = sarif["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    (result,) = run_["results"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "HF020"
    assert result["level"] == "error"
    location = result["locations"][0]
    assert location["physicalLocation"]["region"] == {"startLine": 15, "startColumn": 5}
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "spec.egressDeny[0].toFQDNs"


def test_text_has_no_colour_codes_when_not_a_tty():
    stream = io.StringIO()
    write_text(lint_paths([EXAMPLE]), stream)
    assert "\x1b[" not in stream.getvalue()


def test_console_script_runs_without_traceback(tmp_path):
    (tmp_path / "x.yaml").write_text("\x00not yaml at all: [")
    proc = subprocess.run(
        [sys.executable, "-m", "hushflow", "lint", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "x.yaml" in proc.stdout


# -- terminal escapes from the files never reach the terminal raw -------------------------------

HOSTILE_POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: "\\e]8;;http://evil\\aclick\\e]8;;\\a", namespace: a}
spec:
  endpointSelector: {}
  egress: [{toEntities: [world]}]
  "\\e[2J\\e[H": 1
  "x\\nfake.yaml:1:1: error[HF000] forged": 2
  "\\u202eevil": 3
"""
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def hostile_report(tmp_path):
    path = tmp_path / "p\x1b[31m.yaml"
    path.write_text(HOSTILE_POLICY)
    return path, lint_paths([str(path)])


def without_sgr(text):
    """Colour output keeps rich's own styling (ESC [ ... m): take it out, the rest must be clean."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("color", [False, True])
def test_escapes_in_keys_values_and_paths_are_shown_escaped(tmp_path, color):
    _, report = hostile_report(tmp_path)
    stream = io.StringIO()
    write_text(report, stream, color=color)
    text = without_sgr(stream.getvalue())
    assert not any(ch in text for ch in RAW), repr(text)
    assert r"p\x1b[31m.yaml:7:3: error[HF010] spec.\x1b[2J\x1b[H:" in text
    assert r"spec.x\nfake.yaml:1:1: error[HF000] forged:" in text
    assert r"spec.\u202eevil:" in text
    # One line per finding and hint: a newline in a key does not make a line of its own.
    assert not any(line.startswith("fake.yaml") for line in text.splitlines())


def test_lint_command_output_is_escaped(tmp_path):
    path, _ = hostile_report(tmp_path)
    result = run("lint", "--color", str(path))
    assert result.exit_code == 1
    assert not any(ch in without_sgr(result.output) for ch in RAW)


@pytest.mark.parametrize("render", [to_json, to_sarif])
def test_json_and_sarif_keep_the_exact_text_in_valid_json(tmp_path, render):
    path, report = hostile_report(tmp_path)
    out = io.StringIO()
    write_json(render(report), out)
    assert not any(ch in out.getvalue() for ch in RAW)  # JSON writes them as \u001b ...
    found = "\n".join(strings(json.loads(out.getvalue())))
    assert "spec.\x1b[2J\x1b[H" in found and str(path) in found and "spec.\u202eevil" in found


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from strings(item)


def test_location_text_is_printable():
    location = Location("a\x1b[2J.yaml", 3, 1, ("spec", "k\x07"))
    assert str(location) == r"a\x1b[2J.yaml:3:1 spec.k\x07"
    assert location.file == "a\x1b[2J.yaml"  # the value itself is exact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é ü 😀 [bold]", "plain é ü 😀 [bold]"),
        ("\x1b]8;;http://evil\x07", r"\x1b]8;;http://evil\x07"),
        ("a\nb\rc\td", r"a\nb\rc\td"),
        ("\x7f\x85\x9b", r"\x7f\x85\x9b"),
        ("\u202e\u2066\u200b\ufeff\u2028", r"\u202e\u2066\u200b\ufeff\u2028"),
        ("\U000e0041", r"\U000e0041"),
    ],
    ids=["printable", "osc-hyperlink", "line-breaks", "del-and-c1", "bidi-and-invisible", "tag-character"],
)
def test_printable(text, shown):
    assert printable(text) == shown
