"""`hushflow summary PATH...`: what a set of policies does, at a glance."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hushflow.cli.options import cilium_version_option, cluster_name_option
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions
from hushflow.policy.source import printable
from hushflow.policy.summary import summarize


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@cilium_version_option
@cluster_name_option
def summary(paths: tuple[str, ...], cilium_version: tuple[int, int], cluster_name: str,
            policy_default_local_cluster: bool | None) -> None:
    """One line per policy: kind, name, rules per direction, FQDN denies, log tags.

    Policies that fail schema validation are left out; run `hushflow lint` to see why.
    """
    options = BuildOptions.for_cluster(cilium_version, cluster_name, policy_default_local_cluster)
    loaded = load_policies(paths, options, stdin=sys.stdin)
    rows = summarize(loaded.policy_set)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("POLICY", "SELECTS", "ALLOW IN/OUT", "DENY IN/OUT", "DEFAULT-DENY", "FQDN DENIES", "LOG"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # Names, labels and log values come from the files: no control character or rich markup
        # ([link=...], [reverse]) of theirs reaches the terminal.
        cells = (row.policy, row.selects, row.allows, row.denies, row.default_deny, row.fqdn_denies, row.log)
        table.add_row(*(escape(printable(str(cell))) for cell in cells))
    console = Console(file=sys.stdout, width=max(Console().width, 200), highlight=False)
    console.print(table)
    console.print(f"{len(rows)} policies, {len(loaded.policy_set.cidr_groups)} CIDR groups")
    sys.exit(2 if any(d.code == "HF004" for d in loaded.diagnostics) else 0)
