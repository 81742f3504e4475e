"""`hushflow replay`: replay recorded flows against the current and a proposed policy set."""

from __future__ import annotations

import sys

import click

from hushflow.app.observe import EXIT_BROKEN_PIPE
from hushflow.app.progress import progress_on
from hushflow.app.replay import FAIL_KINDS, OUTPUTS, ReplayOptions, parse_fail_on, run_replay
from hushflow.cli.options import cilium_version_option, cluster_name_option
from hushflow.engine.replay import Change

_EPILOG = """\b
CURRENT and PROPOSED are policy files or directories (repeatable), or git revisions:
  git:REV:PATH     the tree of PATH at REV (PATH from the repository's top; empty: all)
  git:A..B:PATH    A is the current set and B the proposed one (give it once, to either option)
\b
Changes, most severe first: newly-dropped, newly-allowed, tag-lost (a planned drop loses its
log.value tag), tag-changed (denied both ways by other rules or tags), unchanged.
\b
Exit codes: 0 done; 1 --fail-on: a flow has one of those changes; 2 bad input or usage (policy
errors, a git problem, unreadable flows, bad flow lines skipped: reported with file:line).
\b
  hushflow replay --policies policies/ --proposed new-policies/ --input-file flows.json
  hushflow replay --proposed git:origin/main..HEAD:policies/ --input-file flows.json \\
      -o markdown --fail-on newly-dropped,newly-allowed,tag-lost
"""


def _fail_on(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[Change]:
    if not value:
        return frozenset()
    try:
        return parse_fail_on(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.command("replay", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=_EPILOG)
@click.option("--policies", "current", multiple=True, metavar="CURRENT",
              help="The policies in force: a file, a directory, git:REV:PATH or git:A..B:PATH (repeatable).")
@click.option("--proposed", multiple=True, metavar="PROPOSED",
              help="The proposed policies: a file, a directory, git:REV:PATH or git:A..B:PATH (repeatable).")
@click.option("--input-file", "input_files", multiple=True, metavar="FILE",
              help="Recorded Hubble flows (jsonpb lines, exporter files, gzip, - for stdin; repeatable).")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="text", show_default=True,
              help="text for people, json (stable, sorted keys), markdown for a pull-request comment.")
@click.option("--per-flow", is_flag=True,
              help="Also list every changed flow (time, workload, peer, port, both verdicts).")
@click.option("--fail-on", callback=_fail_on, metavar="KINDS",
              help=f"Exit 1 when a flow has one of these changes (comma-separated: {', '.join(FAIL_KINDS)}).")
@click.option("--max-groups", type=click.IntRange(1), default=20, show_default=True,
              help="Markdown: the number of changed groups shown.")
@click.option("--pods", multiple=True, metavar="FILE",
              help="Pod specs (kubectl get pods -A -o yaml or -o json): named ports in the policies resolve from "
                   "them; without, such a rule makes the verdict unknown (repeatable).")
@click.option("--repo", default=".", show_default=True, metavar="DIR", help="The git repository of git: revisions.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar on stderr (there is none when stderr is not a terminal).")
@cilium_version_option
@cluster_name_option
def replay(current: tuple[str, ...], proposed: tuple[str, ...], input_files: tuple[str, ...], output: str,
           per_flow: bool, fail_on: frozenset[Change], max_groups: int, pods: tuple[str, ...], repo: str,
           quiet: bool, cilium_version: tuple[int, int],
           cluster_name: str, policy_default_local_cluster: bool | None) -> None:
    """What would a policy change do? Decide every recorded flow with the current and the proposed
    policies and report what changes, grouped by workload, peer, port and rule."""
    options = ReplayOptions(
        current=current, proposed=proposed, input_files=input_files, output=output, per_flow=per_flow,
        fail_on=fail_on, cilium_version=cilium_version, cluster_name=cluster_name,
        default_local_cluster=policy_default_local_cluster, max_groups=max_groups, repo=repo, pods=pods,
    )
    try:
        code = run_replay(options, stdout=sys.stdout, stderr=sys.stderr, progress=progress_on(sys.stderr, quiet=quiet))
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE  # as observe: like a process SIGPIPE ended
    sys.exit(code)
