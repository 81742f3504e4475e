"""`hushflow run --export`: the enriched flows in Hubble's exporter format, end to end; its
options refused with one line and exit 2; a failing disk that never stops the run; Hubble asked
for every flow and field when exporting."""

from __future__ import annotations

import errno
import gzip
import os
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.cli.run import run
from hushflow.flow.reader import FlowReader
from hushflow.sinks.exporter import UNWRITTEN_AT_EXIT, backups_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
FLOWS = str(EXAMPLE / "flows.jsonl")
POLICIES = str(EXAMPLE / "policies")
PLANNED = "app-explicit-traffic-blocked"  # the deny rule's log value: Cilium left it off these drops


def hushflow_run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(run, ["--input-file", FLOWS, "--policies", POLICIES, "--no-resolve",
                                      "--clock", "flows", "--out", str(tmp_path / "groups"),
                                      "--metrics-address", "127.0.0.1:0", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def exported(path: Path | str) -> list[dict]:
    return [event.data for event in FlowReader([str(path)])]


def test_the_export_file_holds_every_flow_enriched(tmp_path):
    path = tmp_path / "export" / "flows.log"
    code, stdout, _stderr = hushflow_run(tmp_path, "--export", str(path))
    assert code == 0
    events = exported(path)
    assert len(events) == 25 == len(list(FlowReader([FLOWS])))
    drops = [event["flow"] for event in events if event["flow"]["verdict"] == "DROPPED"]
    # What Cilium wrote: no tag on any of these drops; what the file says after enrichment.
    assert not any("policy_log" in event.data["flow"] for event in FlowReader([FLOWS])
                   if event.data["flow"]["verdict"] == "DROPPED")
    assert Counter(tuple(flow.get("policy_log", ())) for flow in drops) == {(PLANNED,): 9, (): 3}
    assert all(flow["egress_denied_by"] for flow in drops if flow.get("policy_log") == [PLANNED])
    assert "25 flows" in stdout  # the summary stays on stdout when the export is a file


def test_export_to_stdout_leaves_stdout_to_the_lines(tmp_path):
    code, stdout, stderr = hushflow_run(tmp_path, "--export", "-")
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 25 and all(next(iter(orjson.loads(line))) == "flow" for line in lines)
    assert "25 flows" in stderr


def test_a_cel_allowlist_on_the_enriched_policy_log(tmp_path):
    path = tmp_path / "drops.log"
    cel = orjson.dumps({"experimental": {"cel_expression": [f'"{PLANNED}" in _flow.policy_log']}}).decode()
    code, _stdout, _stderr = hushflow_run(tmp_path, "--export", str(path), "--export-allowlist", cel,
                                          "--export-field-mask", "time,verdict,policy_log,egress_denied_by")
    assert code == 0
    events = exported(path)
    assert len(events) == 9
    for event in events:
        assert list(event) == ["flow", "time"]  # the mask has no node_name: neither has the line
        assert list(event["flow"]) == ["time", "verdict", "egress_denied_by", "policy_log"]


def test_a_denylist_and_rotation_with_compression(tmp_path):
    path = tmp_path / "flows.log"
    code, _stdout, _stderr = hushflow_run(
        tmp_path, "--export", str(path), "--export-denylist", '{"verdict":["DROPPED"]}',
        "--export-max-size-mb", "0.005", "--export-max-backups", "2", "--export-compress")
    assert code == 0
    backups = backups_of(str(path))
    assert len(backups) == 2 and all(name.endswith(".log.gz") for name in backups)
    assert all(os.path.getsize(name) <= 0.005 * 1024 * 1024 for name in [str(path)])
    for name in backups:
        gzip.decompress(Path(name).read_bytes())  # whole gzip files
    kept = [event for name in [*backups, str(path)] for event in exported(name)]
    assert kept and all(event["flow"]["verdict"] != "DROPPED" for event in kept)


@pytest.mark.parametrize(("args", "message"), [
    (["--export", "{tmp}"], "is a directory"),
    (["--export", "/dev/null"], "not a regular file"),
    (["--export", "{tmp}/a-file/x.log"], "cannot write"),
    (["--export", "x.log", "--export-max-size-mb", "0"], "--export-max-size-mb"),
    (["--export", "x.log", "--export-max-size-mb", "inf"], "--export-max-size-mb"),
    (["--export", "x.log", "--export-max-backups", "-1"], "--export-max-backups"),
    (["--export", "x.log", "--export-allowlist", '{"verdict":'], "--export-allowlist"),
    (["--export", "x.log", "--export-denylist", '{"no_such_field":1}'], "--export-denylist"),
    (["--export", "x.log", "--export-allowlist", '{"experimental":{"cel_expression":["_flow.("]}}'],
     "--export-allowlist"),
    (["--export", "x.log", "--export-field-mask", "source.nope"], "flow.Endpoint has no field 'nope'"),
    (["--export-field-mask", "verdict"], "--export-field-mask needs --export FILE"),
    (["--export", "-", "--events", "stdout"], "would both write to stdout"),
])
def test_a_bad_export_option_exits_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x\n")
    code, _stdout, stderr = hushflow_run(tmp_path, *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr and not (tmp_path / "x.log").exists()


class FullDisk:
    """An export target whose every write fails with ENOSPC."""

    def __init__(self) -> None:
        self.attempts = 0
        self.mill_errors: list[str] = []

    def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
        self.attempts += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        pass


def test_a_failing_export_is_counted_and_the_run_goes_on(tmp_path):
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(FLOWS,), out_dir=str(tmp_path / "groups"),
                               resolve=False, clock="flows", export=str(tmp_path / "flows.log"),
                               drain_timeout=0.2))
    assert daemon.exporter is not None
    disk = FullDisk()
    daemon.exporter.target = disk  # type: ignore[assignment]
    assert daemon.run() == 2  # a finite run that lost export lines says so
    assert daemon.summary.flows == 25 and daemon.summary.verdicts == 17  # everything else was done
    assert disk.attempts >= 1

    def sample(name: str, **labels: str) -> float:
        return daemon.registry.get_sample_value(name, labels) or 0.0

    assert sample("hushflow_write_failures_total", target="export", reason="disk") == disk.attempts
    assert sample("hushflow_export_errors_total", reason=UNWRITTEN_AT_EXIT) == 25
    assert sample("hushflow_exported_flows_total") == 0


def test_the_export_metrics_count_what_was_written(tmp_path):
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(FLOWS,), resolve=False, clock="flows",
                               out_dir=str(tmp_path / "groups"), export=str(tmp_path / "flows.log"),
                               export_allowlist=({"verdict": ["DROPPED"]},)))
    assert daemon.run() == 0
    assert daemon.registry.get_sample_value("hushflow_exported_flows_total", {}) == 12
    assert len(exported(tmp_path / "flows.log")) == 12


@pytest.mark.parametrize("export", [None, "flows.log"])
def test_exporting_asks_hubble_for_every_flow_and_field(tmp_path, export):
    """Without --export (or --serve) the daemon pushes its allowlist and field mask upstream; the
    export file must hold every flow, whole."""
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), hubble_server="127.0.0.1:1", resolve=False,
                               out_dir=str(tmp_path / "groups"),
                               export=str(tmp_path / export) if export else None))
    request = daemon._default_source().source.request  # type: ignore[attr-defined]
    if export:
        assert (list(request.whitelist), list(request.field_mask.paths)) == ([], [])
    else:
        assert request.whitelist and request.field_mask.paths


def test_every_export_option_is_documented():
    text = (ROOT / "docs" / "export.md").read_text()
    options = [opt for param in run.params for opt in param.opts if opt.startswith("--export")]
    assert len(options) == 7 and all(f"`{option}" in text for option in options)


def test_a_finite_run_that_could_not_export_every_event_exits_2(tmp_path):
    # Lines longer than the file may grow (100 bytes) are refused, as lumberjack refuses them.
    code, _stdout, stderr = hushflow_run(tmp_path, "--export", str(tmp_path / "flows.log"),
                                         "--export-max-size-mb", "0.0001")
    assert code == 2
    assert stderr.count("longer than the export file may grow") == 1  # reported once, counted always
