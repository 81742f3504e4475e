"""`hushflow report`: the triage report of recorded flows (a thin shell over hushflow.app.report)."""

from __future__ import annotations

import sys
from typing import Any

import click

from hushflow.cli.options import cilium_version_option, cluster_name_option


@click.command("report", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--input-file", "input_files", multiple=True, metavar="FILE",
              help="Hubble flows (jsonpb lines, exporter files, gzip; - is stdin); repeatable, read in order.")
@click.option("--policies", multiple=True, metavar="PATH",
              help="The policies that decided the flows (files, directories, -); repeatable.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="Groups of unexpected drops shown.")
@click.option("--expected-log", "expected_logs", multiple=True, metavar="TAG",
              help="A log.value that marks drops as planned (default: the log values of deny rules), as `run`.")
@click.option("--expected-cel", multiple=True, metavar="EXPR", help="A CEL expression marking drops as planned.")
@click.option("--suggest/--no-suggest", "suggestions", default=True, show_default=True,
              help="Add each group's fix from `hushflow suggest` (an allow and a block, each verified by a "
                   "replay of the flows; the diff is `hushflow suggest`'s). Not for flows read from stdin.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar on stderr (there is none when stderr is not a terminal).")
@cilium_version_option
@cluster_name_option
def report(**kwargs: Any) -> None:
    """Top unexpected drops of recorded flows, by workload, peer (its DNS name when known), port
    and rule, with counts and first/last seen; planned drops are counted apart, by tag. A drop
    is unexpected exactly when `hushflow run` would count it and send an event for it.

    \b
    Exit status: 0 done; 2 the policies have errors, an input cannot be read, or some lines
    or flows were skipped (each named by file:line on stderr).

    \b
    Examples:
      hushflow report --policies policies/ --input-file hubble-export.json
      hushflow report --policies policies/ --input-file flows.jsonl -o markdown --top 5
    """
    from hushflow.app.progress import progress_on
    from hushflow.app.report import ReportOptions, run_report

    options = ReportOptions(
        policies=tuple(kwargs["policies"]), input_files=tuple(kwargs["input_files"]), output=kwargs["output"],
        top=kwargs["top"], expected_logs=tuple(kwargs["expected_logs"]) or None,
        expected_cel=tuple(kwargs["expected_cel"]), cilium_version=kwargs["cilium_version"],
        cluster_name=kwargs["cluster_name"], default_local_cluster=kwargs["policy_default_local_cluster"],
        suggestions=kwargs["suggestions"],
    )
    sys.exit(run_report(options, sys.stdout, sys.stderr, stdin=sys.stdin.buffer,
                        progress=progress_on(sys.stderr, quiet=kwargs["quiet"])))
