"""`hushflow explain`: for each selected policy verdict, the decision and why, in words.

A thin alias of `hushflow observe --enrich POLICIES -o explain`: every `hubble observe` filter
flag works, and flows are read and attributed exactly as `observe --enrich` does.
"""

from __future__ import annotations

import sys

import click

from hushflow.app.observe import EXIT_USAGE
from hushflow.cli.observe import RawArgumentsCommand, raw_arguments, run_observe_piped

_HELP = """\
Usage: hushflow explain --policies PATH --input-file FILE [hubble observe filter flags]

For each policy verdict and policy drop in the flows, print the decision the policies lead to
and why: which rule (file:line and field path), which selector matched which labels, which
DNS answer (name, time, TTL) tied the IP to a name, whether the drop was planned (its rule's
log.value is expected), or why nothing matched. DNS answers earlier in the input are learned
first, as Cilium's proxy learns them.

  --policies PATH    policies: a file, a directory or - (repeatable)
  --input-file FILE  Hubble flows (jsonpb lines, exporter files, gzip, - for stdin; repeatable)
  --pods FILE        pod specs (kubectl get pods -A -o yaml or -o json): named ports in the
                     policies (port: http-alt) resolve from them; without, such a rule is
                     explained as "unknown", never as allowed

Every `hubble observe` filter flag selects the flows to explain (see `hushflow observe --help`),
and so do --expected-log, --expected-cel and --cilium-version. Examples:

  hushflow explain --policies policies/ --input-file flows.json --verdict DROPPED
  hushflow explain --policies policies/ --input-file flows.json --to-fqdn '*.example.com' --last 5
"""


def explain_argv(argv: list[str]) -> list[str] | None:
    """Translate explain's arguments into observe's; None when --policies is missing."""
    out: list[str] = []
    policies = False
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--policies" and index + 1 < len(argv):
            out += ["--enrich", argv[index + 1]]
            policies = True
            index += 2
            continue
        if arg.startswith("--policies="):
            out.append("--enrich=" + arg.split("=", 1)[1])
            policies = True
        else:
            out.append(arg)
        index += 1
    return [*out, "-o", "explain"] if policies else None


@click.command(
    "explain",
    cls=RawArgumentsCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def explain(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Explain policy verdicts: which rule, which selector, which DNS answer (see --help)."""
    argv = raw_arguments(ctx, args)
    if not argv or "-h" in argv or "--help" in argv:
        sys.stdout.write(_HELP)
        sys.exit(0)
    translated = explain_argv(argv)
    if translated is None:
        sys.stderr.write("hushflow explain needs the policies: --policies PATH\n")
        sys.exit(EXIT_USAGE)
    sys.exit(run_observe_piped(translated))
