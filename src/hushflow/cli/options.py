"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from hushflow.policy.fqdn import parse_cilium_version

F = TypeVar("F", bound=Callable[..., Any])


def _version(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_cilium_version(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def cilium_version_option(function: F) -> F:
    return click.option(
        "--cilium-version",
        default="1.18",
        show_default=True,
        callback=_version,
        help="Cilium version the policies run on (FQDN `**.` patterns changed in 1.19).",
    )(function)
