"""`hushflow lint PATH...`: check Cilium policies before they reach a cluster."""

from __future__ import annotations

import sys

import click

from hushflow.cli.options import cilium_version_option, cluster_name_option
from hushflow.policy.lint import lint_paths
from hushflow.policy.lint_output import to_json, to_sarif, write_json, write_text
from hushflow.policy.model import BuildOptions


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts, sarif for code scanning in CI.",
)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@cilium_version_option
@cluster_name_option
@click.option("--color/--no-color", default=None, help="Colour the text output (default: when on a terminal).")
def lint(
    paths: tuple[str, ...], output_format: str, strict: bool, cilium_version: tuple[int, int], cluster_name: str,
    policy_default_local_cluster: bool | None, color: bool | None,
) -> None:
    """Check CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and CiliumCIDRGroup YAML.

    PATH is a file, a directory (searched recursively for *.yaml and *.yml) or - for stdin.
    Every object is validated against the CRD schemas of --cilium-version (1.18, 1.19 and 1.20 are
    bundled) and the agent's own checks, then checked for what
    Cilium would reject, silently change, or never enforce: toFQDNs in egressDeny, L7 in deny
    rules, deny rules that shadow allows, empty rules that switch on default-deny, FQDN rules
    no DNS proxy covers, and more. Every finding has a stable code (HF001...), the file, line
    and field path, and a hint.

    \b
    Exit status: 0 clean, 1 an error (or a warning with --strict), 2 unreadable input.

    \b
    Examples:
      hushflow lint policies/
      kubectl get cnp -A -o yaml | hushflow lint -
      hushflow lint --format sarif policies/ > lint.sarif
    """
    report = lint_paths(
        paths, BuildOptions.for_cluster(cilium_version, cluster_name, policy_default_local_cluster), stdin=sys.stdin
    )
    if output_format == "json":
        write_json(to_json(report), sys.stdout)
    elif output_format == "sarif":
        write_json(to_sarif(report), sys.stdout)
    else:
        write_text(report, sys.stdout, color)
    sys.exit(report.exit_code(strict))
