"""The `hushflow` command: a thin shell over the library.

Subcommands live one per module in this package and are imported only when used, so
`hushflow lint` does not pay for the CEL runtime and `hushflow observe` does not pay for
the schema validator.
"""

from __future__ import annotations

import importlib

import click

from hushflow import __version__

# name -> (module, attribute, one-line help shown by `hushflow --help`)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "lint": ("hushflow.cli.lint", "lint", "Check Cilium policies: schema, traps, what Cilium cannot run."),
    "run": ("hushflow.cli.run", "run", "The main job: follow Hubble, fill FQDN denies, attribute, alert."),
    "summary": ("hushflow.cli.summary", "summary", "Summarise the policies in files or directories."),
    "observe": ("hushflow.cli.observe", "observe", "Read Hubble flows and filter them like `hubble observe`."),
    "compile": ("hushflow.cli.compile", "compile_", "Turn FQDN denies into CIDR-group rules Cilium runs."),
    "explain": ("hushflow.cli.explain", "explain", "Why each policy verdict happened: rule, selector, DNS answer."),
    "suggest": ("hushflow.cli.suggest", "suggest", "The fix for each unexpected drop (allow or block), verified."),
    "report": ("hushflow.cli.report", "report", "Triage: the top unexpected drops by workload, peer, port and rule."),
    "replay": ("hushflow.cli.replay", "replay", "What a policy change would do to recorded flows (CI: --fail-on)."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module_name, attribute, _help = spec
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="hushflow")
def main() -> None:
    """hushflow: deny egress by domain on Cilium, attribute every Hubble verdict to its
    rule, and alert only on the drops nobody planned.

    \b
    Start with:
      hushflow lint policies/                 # what Cilium will do with your YAML
      hushflow observe --input-file flows.json --verdict DROPPED
      hushflow observe --input-file flows.json --enrich policies/ --verdict DROPPED \\
          --not --cel-expression "'app-explicit-traffic-blocked' in _flow.policy_log"
      hushflow explain --policies policies/ --input-file flows.json --verdict DROPPED
    """
