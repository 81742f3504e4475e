"""Progress bars: on a terminal only, never with --quiet, and nothing changes in what is iterated."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from rich.console import Console

from hushflow.app.progress import BATCH, NO_PROGRESS, progress_on


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_nothing_is_printed_when_stderr_is_not_a_terminal():
    stderr = io.StringIO()  # a pipe, a file, a CI log
    reporter = progress_on(stderr)
    assert reporter is NO_PROGRESS and not reporter.enabled
    items = list(range(3 * BATCH))
    assert reporter.iterate(items, "reading flows") is items  # untouched: no cost per flow
    with reporter.steps("resolving names", 3) as step:
        for _ in range(3):
            step()
    assert stderr.getvalue() == ""


def test_quiet_silences_even_a_terminal():
    console, out = terminal()
    assert progress_on(FakeTerminal(), quiet=True) is NO_PROGRESS
    assert progress_on(FakeTerminal(), quiet=True, console=console) is NO_PROGRESS
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar():
    assert progress_on(FakeTerminal()).enabled


def test_a_terminal_shows_the_count_of_what_was_read():
    console, out = terminal()
    reporter = progress_on(io.StringIO(), console=console)
    items = list(range(2 * BATCH + 5))
    assert list(reporter.iterate(items, "reading flows")) == items
    shown = out.getvalue()
    assert "reading flows" in shown and "2,005" in shown


def test_a_terminal_shows_steps_out_of_their_total():
    console, out = terminal()
    reporter = progress_on(io.StringIO(), console=console)
    with reporter.steps("resolving 3 denied names", 3) as step:
        for _ in range(3):
            step()
    shown = out.getvalue()
    assert "resolving 3 denied names" in shown and "3/3" in shown


def test_a_consumer_that_stops_early_leaves_the_rest_unread():
    console, _out = terminal()
    reporter = progress_on(io.StringIO(), console=console)
    taken = []
    source = iter(range(10))
    for item in reporter.iterate(source, "reading flows"):
        taken.append(item)
        if item == 2:
            break
    assert taken == [0, 1, 2] and next(source) == 3


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"


def test_report_shows_the_flows_it_reads_on_a_terminal_and_prints_the_same_report():
    from hushflow.app.report import ReportOptions, run_report

    options = ReportOptions(policies=(str(EXAMPLE / "policies"),), input_files=(str(EXAMPLE / "flows.jsonl"),),
                            suggestions=False)
    console, shown = terminal()
    quiet_out, shown_out = io.StringIO(), io.StringIO()
    assert run_report(options, quiet_out, io.StringIO()) == 0
    assert run_report(options, shown_out, io.StringIO(), progress=progress_on(io.StringIO(), console=console)) == 0
    assert shown_out.getvalue() == quiet_out.getvalue()
    assert "reading flows" in shown.getvalue()


def test_replay_shows_the_flows_it_replays_on_a_terminal_and_prints_the_same_result():
    from hushflow.app.replay import ReplayOptions, run_replay

    policies = str(EXAMPLE / "policies")
    options = ReplayOptions(current=(policies,), proposed=(policies,), input_files=(str(EXAMPLE / "flows.jsonl"),),
                            output="json")
    console, shown = terminal()
    quiet_out, shown_out = io.StringIO(), io.StringIO()
    assert run_replay(options, stdout=quiet_out, stderr=io.StringIO()) == 0
    assert run_replay(options, stdout=shown_out, stderr=io.StringIO(),
                      progress=progress_on(io.StringIO(), console=console)) == 0
    assert shown_out.getvalue() == quiet_out.getvalue()
    assert "replaying flows 25" in shown.getvalue()  # every event of the file, 17 of them verdicts


def test_suggest_shows_the_flows_it_reads_on_a_terminal_and_suggests_the_same():
    from hushflow.app.suggest import SuggestOptions, render_json, run_suggest

    options = SuggestOptions(policies=(str(EXAMPLE / "policies"),), inputs=(str(EXAMPLE / "flows.jsonl"),),
                             actions=("allow",))
    console, shown = terminal()
    quiet, _ = run_suggest(options)
    with_bar, _ = run_suggest(options, progress=progress_on(io.StringIO(), console=console))
    assert render_json(with_bar, []) == render_json(quiet, [])
    assert "reading flows 25" in shown.getvalue()


def test_every_long_command_has_quiet():
    from click.testing import CliRunner

    from hushflow.cli import main

    for command in ("report", "replay", "suggest", "compile"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert "--quiet" in result.output, command


def test_compile_shows_the_names_it_resolves_on_a_terminal_and_writes_the_same(tmp_path):
    from hushflow.app.compile import CompileJob, run_compile

    asked: list[tuple[str, str]] = []

    def lookup(name: str, rdtype: str) -> tuple[list[str], float]:
        asked.append((name, rdtype))
        return (["192.0.2.7"] if rdtype == "A" else []), 300.0

    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE / "policies", policies)
    deny = policies / "app-external-block-policy.yaml"
    deny.write_text(deny.read_text().replace(
        '    - matchPattern: "*.telemetry.example.com"\n',
        '    - matchPattern: "*.telemetry.example.com"\n    - matchName: a.example.net\n    - matchName: b.example.net\n'))
    console, shown = terminal()
    outputs = []
    for out, bars in (("quiet", NO_PROGRESS), ("shown", progress_on(io.StringIO(), console=console))):
        job = CompileJob([str(policies)], out_dir=str(tmp_path / out))
        run_compile(job, lookup=lookup, now=lambda: 1000.0, bars=bars)
        outputs.append({path.relative_to(tmp_path / out): path.read_bytes()
                        for path in sorted((tmp_path / out).rglob("*")) if path.is_file()})
    assert outputs[0] == outputs[1] and outputs[0]
    names = len({name for name, _ in asked})
    assert names == 2 and asked[: len(asked) // 2] == asked[len(asked) // 2:]  # the same lookups, bar or not
    assert f"resolving {names} denied name(s)" in shown.getvalue() and f"{names}/{names}" in shown.getvalue()


def test_compile_quiet_also_silences_its_step_messages(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli import main

    args = ["compile", str(EXAMPLE / "policies"), "--no-resolve", "--flows", str(EXAMPLE / "flows.jsonl")]
    loud = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    quiet = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--quiet"])
    assert loud.exit_code == quiet.exit_code == 0, (loud.output, quiet.output)
    assert "--quiet" in CliRunner().invoke(main, ["compile", "--help"]).output
    assert "flow lines" in loud.output and "flow lines" not in quiet.output


class FakeTerminalBytes(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_observe_shows_the_flows_it_reads_and_prints_the_same_flows():
    from hushflow.cli.observe import run_observe

    argv = ["--input-file", str(EXAMPLE / "flows.jsonl"), "-o", "jsonpb"]
    quiet_out, shown_out = io.BytesIO(), io.BytesIO()
    assert run_observe(argv, stdout=quiet_out, stderr=io.StringIO()) == 0
    from hushflow.app.observe import observe_flows
    from hushflow.cli.observe_args import parse_observe_args

    console, shown = terminal()
    options = parse_observe_args(argv)
    assert observe_flows(options, stdout=shown_out, stderr=io.StringIO(),
                         progress=progress_on(io.StringIO(), console=console)) == 0
    assert shown_out.getvalue() == quiet_out.getvalue() and quiet_out.getvalue()
    assert "reading flows 25" in shown.getvalue()


def test_observe_stays_quiet_when_asked_or_when_its_output_is_the_terminal():
    from hushflow.cli.observe import run_observe

    for argv, stdout in (
        (["--input-file", str(EXAMPLE / "flows.jsonl"), "--quiet"], io.BytesIO()),
        (["--input-file", str(EXAMPLE / "flows.jsonl")], FakeTerminalBytes()),
    ):
        stderr = FakeTerminal()
        assert run_observe(argv, stdout=stdout, stderr=stderr) == 0
        assert stderr.getvalue() == "" and stdout.getvalue()
    from hushflow.cli.observe_args import observe_help

    assert "--quiet" in observe_help()
