"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from hushflow.policy.fqdn import parse_cilium_version
from hushflow.policy.model import DEFAULT_CLUSTER_NAME, cluster_name_problem

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


def _cluster(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = cluster_name_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


def cluster_name_option(function: F) -> F:
    """`--cluster-name` and `--policy-default-local-cluster/--no-...`: the local cluster as the
    agent sees it (both kwargs: cluster_name, policy_default_local_cluster)."""
    function = click.option(
        "--policy-default-local-cluster/--no-policy-default-local-cluster",
        default=None,
        help="The agent's policy-default-local-cluster, when your cluster sets it (default: off "
             "before Cilium 1.19, on from 1.19): peer selectors that name no cluster select only "
             "the local one.",
    )(function)
    return click.option(
        "--cluster-name",
        default=DEFAULT_CLUSTER_NAME,
        show_default=True,
        callback=_cluster,
        help="Cilium's cluster-name: what the `cluster` entity selects and, from Cilium 1.19 "
             "(policy-default-local-cluster), the cluster every peer selector that names none is limited to.",
    )(function)


def _protected(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    if not value:
        return None  # the defaults
    from hushflow.enforce.protect import parse_networks

    cidrs = tuple(part for item in value for part in item.split(",") if part.strip())
    try:
        parse_networks(cidrs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return cidrs


def protect_cidr_option(function: F) -> F:
    return click.option(
        "--protect-cidr",
        "protect_cidrs",
        multiple=True,
        metavar="CIDR",
        callback=_protected,
        help="Never deny these addresses, whatever a DNS answer says: the cluster's pod and service CIDRs "
             "(repeatable, or comma-separated). Replaces the default 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "
             "100.64.0.0/10, fc00::/7. Loopback, link-local (the metadata service), multicast, reserved and "
             "the answering DNS server are never denied.",
    )(function)
