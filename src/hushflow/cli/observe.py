"""`hushflow observe`: a thin shell over `hushflow.observe.run_observe`.

Click only hands over the raw arguments: `hubble observe` flags are order-sensitive (`--not`
negates the next flag only) and are parsed with pflag's rules by `hushflow.filter.flags`.
"""

from __future__ import annotations

import os
import sys

import click

from hushflow.observe import EXIT_BROKEN_PIPE, run_observe


@click.command(
    "observe",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
    short_help="Read Hubble flows and filter them like `hubble observe`.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def observe(args: tuple[str, ...]) -> None:
    """Read Hubble flows and select them with `hubble observe` flags (see --help)."""
    try:
        code = run_observe(list(args), stdout=sys.stdout.buffer, stderr=sys.stderr, stdin=sys.stdin.buffer)
    except BrokenPipeError:
        # `hushflow observe ... | head`: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
