"""`hushflow observe`: a thin shell over `hushflow.app.observe.observe_flows`.

Click only hands over the raw arguments: `hubble observe` flags are order-sensitive (`--not`
negates the next flag only) and are parsed with pflag's rules by `hushflow.cli.observe_args`.
`run_observe(argv, ...)` is the whole command (arguments in, exit code out) so that tests and
other programs can call it directly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, BinaryIO

import click

from hushflow.app.observe import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_USAGE, FollowControl, observe_flows
from hushflow.cli.observe_args import observe_help, parse_observe_args
from hushflow.filter.pflag import FlagError

_RAW_ARGS = "hushflow.cli.observe.argv"


class RawArgumentsCommand(click.Command):
    """Keeps the arguments exactly as typed: click's own parser would swallow a `--`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)


@click.command(
    "observe",
    cls=RawArgumentsCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
    short_help="Read Hubble flows and filter them like `hubble observe`.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def observe(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Read Hubble flows and select them with `hubble observe` flags (see --help)."""
    sys.exit(run_observe_piped(raw_arguments(ctx, args)))


def raw_arguments(ctx: click.Context, args: tuple[str, ...]) -> list[str]:
    """The arguments exactly as typed (kept by `RawArgumentsCommand`)."""
    return list(ctx.meta.get(_RAW_ARGS, list(args)))


def run_observe_piped(argv: list[str]) -> int:
    """`run_observe` on the process's streams; a closed pipe (`| head`) ends it quietly."""
    try:
        return run_observe(argv, stdout=sys.stdout.buffer, stderr=sys.stderr, stdin=sys.stdin.buffer)
    except BrokenPipeError:
        # Keep Python from complaining about the closed stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def run_observe(
    argv: Sequence[str],
    *,
    stdout: BinaryIO | None = None,
    stderr: IO[str] | None = None,
    stdin: BinaryIO | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    follow_control: FollowControl | None = None,
) -> int:
    """The whole `hushflow observe` command: arguments in, exit code out."""
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr
    try:
        options = parse_observe_args(argv, now_ns=now_ns)
    except FlagError as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    if options.help:
        out.write(observe_help().encode())
        return EXIT_OK
    return observe_flows(options, stdout=out, stderr=err, stdin=stdin, follow_control=follow_control)
