"""`hushflow suggest`: the fix for each unexpected drop, verified by a replay of the flows."""

from __future__ import annotations

import sys

import click

from hushflow.cli.options import cilium_version_option, cluster_name_option
from hushflow.policy.source import printable

EXIT_OK = 0
EXIT_NO_FIX = 1  # a group of drops got no verified suggestion for an action asked for
EXIT_BAD_INPUT = 2  # bad lines in the flows, policies refused, a user mistake


def _say(text: str) -> None:
    """A line for stderr; names in it come from files anyone may have written."""
    click.echo("\n".join(printable(line) for line in str(text).split("\n")), err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--policies", multiple=True, required=True, metavar="PATH",
              help="The policies in force: files or directories (repeatable).")
@click.option("--input-file", "input_files", multiple=True, metavar="FILE",
              help="Recorded Hubble flows (jsonpb lines, exporter files, gzip, - for stdin; repeatable).")
@click.option("--from-events", "from_events", multiple=True, metavar="FILE",
              help="The daemon's unexpected-drop events (run --events file:PATH) instead of flows (repeatable).")
@click.option("--action", type=click.Choice(["allow", "block", "both"]), default="both", show_default=True,
              help="Suggest allowing the drops, blocking them as planned drops, or both.")
@click.option("--write", is_flag=True,
              help="Apply the verified suggestions to the policy files (each file replaced atomically).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--expected-log", "expected_logs", multiple=True, metavar="TAG",
              help="A planned drop's tag (repeatable; default: the log.value of every deny rule).")
@click.option("--block-tag", metavar="TAG",
              help="log.value of a new deny, when the workload has no tagged deny to extend "
                   "(default: suggested-block).")
@click.option("--pods", "pod_files", multiple=True, metavar="FILE",
              help="Pod specs (kubectl get pods -A -o yaml), for named ports in the policies.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar on stderr (there is none when stderr is not a terminal).")
@cilium_version_option
@cluster_name_option
def suggest(policies: tuple[str, ...], input_files: tuple[str, ...], from_events: tuple[str, ...], action: str,
            write: bool, output: str, expected_logs: tuple[str, ...], block_tag: str | None,
            pod_files: tuple[str, ...], quiet: bool, cilium_version: tuple[int, int], cluster_name: str,
            policy_default_local_cluster: bool | None) -> None:
    """For each group of unexpected drops (DROPPED or AUDIT flows no planned deny explains, by
    workload, direction, peer and port), suggest the fix:

    \b
      allow  the narrowest rule admitting exactly those flows: toFQDNs matchName when a DNS
             answer names the peer (plus the DNS proxy rule it needs), toEndpoints with the
             peer's stable labels, the address alone (/32) otherwise; the ports seen
      block  the peer added to a tagged FQDN deny of the workload, or a new tagged deny,
             so the next drop is planned

    Every suggestion is verified before it is printed: the flows are replayed against the
    policies with and without it, and it must change the group's flows as intended and no other
    flow at all. The unified diff and the replay's counts are printed with it; --write applies
    the verified ones (one action: --action allow or --action block).

    \b
    Exit codes: 0 every group got a verified suggestion for each action asked; 1 a group got
    none (the reason is printed); 2 bad input (counted and reported with file:line), policies
    that cannot be used, or a usage mistake.

    \b
      hushflow suggest --policies policies/ --input-file flows.json
      hushflow suggest --policies policies/ --from-events events.jsonl --action allow --write
    """
    from hushflow.app.policies import PolicyError
    from hushflow.app.progress import progress_on
    from hushflow.app.suggest import ACTIONS, SuggestError, SuggestOptions, render_json, render_text, run_suggest

    if bool(input_files) == bool(from_events):
        _say("error: give the drops with --input-file FLOWS or --from-events EVENTS (one of them)")
        sys.exit(EXIT_BAD_INPUT)
    if write and action == "both":
        _say("error: --write applies one fix per drop: choose --action allow or --action block")
        sys.exit(EXIT_BAD_INPUT)
    pods = None
    if pod_files:
        from hushflow.app.enrich import PodSpecsError, load_pod_specs

        try:
            pods, skipped = load_pod_specs(pod_files)
        except PodSpecsError as exc:
            _say(f"error: --pods: {exc}")
            sys.exit(EXIT_BAD_INPUT)
        for problem in skipped:
            _say(f"warning: --pods: {problem}")
    options = SuggestOptions(
        policies=policies, inputs=input_files, from_events=from_events,
        actions=ACTIONS if action == "both" else (action,),
        expected_logs=expected_logs or None, block_tag=block_tag, cilium_version=cilium_version,
        cluster_name=cluster_name, default_local_cluster=policy_default_local_cluster, pods=pods,
    )
    try:
        result, written = run_suggest(options, write=write, progress=progress_on(sys.stderr, quiet=quiet))
    except PolicyError as exc:
        _say(f"error: {exc}")
        sys.exit(EXIT_BAD_INPUT)
    except SuggestError as exc:
        _say(f"error: {exc}")
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        _say(f"error: {exc.filename or ''}: {exc.strerror or exc}")
        sys.exit(EXIT_BAD_INPUT)
    click.echo(render_json(result, written) if output == "json" else render_text(result, written), nl=False)
    for line in result.bad_lines():
        _say(line)
    if result.bad_input:
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(EXIT_OK if result.every_group_fixed else EXIT_NO_FIX)
