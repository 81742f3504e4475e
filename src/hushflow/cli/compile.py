"""`hushflow compile POLICIES --out DIR`: FQDN denies Cilium can run, and DNS-level blocks."""

from __future__ import annotations

import sys

import click

from hushflow.cli.options import cilium_version_option, cluster_name_option, protect_cidr_option
from hushflow.enforce.writer import UnsafePathError
from hushflow.policy.source import printable


def _say(text: str) -> None:
    """A line for stderr: policy names, file names and messages come from files anyone may have
    written, so no control character of theirs reaches the terminal raw (line breaks stay)."""
    click.echo("\n".join(printable(line) for line in str(text).split("\n")), err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("policies", nargs=-1, required=True, metavar="POLICIES...")
@click.option("--out", "out_dir", metavar="DIR", help="Write one file per object here (for Argo CD / Flux).")
@click.option("--state", "state_path", metavar="FILE",
              help="Learned IPs survive here (default DIR/.hushflow-state.json).")
@click.option("--flows", multiple=True, metavar="FILE", help="Learn IPs from DNS answers in these Hubble flow files.")
@click.option("--resolve/--no-resolve", default=True, show_default=True, help="Resolve every denied matchName now.")
@click.option("--nameserver", "nameservers", multiple=True, metavar="IP", help="Resolver to use (default: system).")
@click.option("--shared-ip", type=click.Choice(["skip", "deny"]), default="skip", show_default=True,
              help="An IP that also serves an allowed name: keep it out of the deny (skip) or deny it anyway.")
@click.option("--group-cap", type=click.IntRange(1, 16384), default=1000, show_default=True,
              help="Most IPs per CiliumCIDRGroup; more are sharded over several groups.")
@click.option("--max-total", type=click.IntRange(1, 16384), default=10000, show_default=True,
              help="Most denied IPs in all; far below Cilium's 16,384-entry policy map.")
@click.option("--max-ips-per-name", type=click.IntRange(1), default=1000, show_default=True,
              help="Most IPs one name keeps in a deny (like Cilium's --tofqdns-endpoint-max-ip-per-hostname).")
@click.option("--min-ttl", type=click.FloatRange(0), default=3600, show_default=True,
              help="Seconds an IP stays denied at least after its name was last seen.")
@click.option("--grace", type=click.FloatRange(0), default=0, show_default=True, help="Extra seconds after the TTL.")
@protect_cidr_option
@click.option("--allow-unobserved", is_flag=True,
              help="Compile FQDN denies for endpoints no DNS proxy rule covers (IPs only from --resolve).")
@click.option("--dns-answer", type=click.Choice(["nxdomain", "refused", "nodata", "null-ip"]), default="nxdomain",
              show_default=True, help="What the CoreDNS/RPZ/Blocky block answers for denied names.")
@click.option("--clock", type=click.Choice(["wall", "flows"]), default="wall", show_default=True,
              help="Expire IPs against the wall clock, or the time of the last flow read (for replays).")
@click.option("--apply", "apply_", is_flag=True, help="Server-side apply the objects (field manager hushflow).")
@click.option("--dry-run", is_flag=True, help="With --apply: print the diff, change nothing.")
@click.option("--kubeconfig", metavar="FILE", help="Kubeconfig for --apply (default: ~/.kube/config or in-cluster).")
@click.option("--context", "kube_context", metavar="NAME", help="Kubeconfig context for --apply.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress on stderr: no bar (none when stderr is not a terminal), no step messages.")
@cilium_version_option
@cluster_name_option
def compile_(policies: tuple[str, ...], out_dir: str | None, state_path: str | None, flows: tuple[str, ...],
             resolve: bool, nameservers: tuple[str, ...], shared_ip: str, group_cap: int, max_total: int,
             max_ips_per_name: int,
             min_ttl: float, grace: float, protect_cidrs: tuple[str, ...] | None, allow_unobserved: bool,
             dns_answer: str, clock: str, apply_: bool,
             dry_run: bool, kubeconfig: str | None, kube_context: str | None, quiet: bool,
             cilium_version: tuple[int, int], cluster_name: str, policy_default_local_cluster: bool | None) -> None:
    """Turn `egressDeny` + `toFQDNs` (which Cilium cannot run) into `toCIDRSet` rules selecting
    CiliumCIDRGroups that hushflow keeps filled with the IPs behind the denied names, plus a
    CoreDNS snippet, an RPZ zone and a Blocky config that block the names at DNS level (the first
    line of defence).

    IPs come from resolving every matchName now (--resolve), from DNS answers in recorded Hubble
    flows (--flows), and from the state of earlier runs. Output is deterministic; a second run
    with the same input changes nothing.

    \b
    Examples:
      hushflow compile policies/ --out deploy/cilium/
      hushflow compile policies/ --out out/ --flows hubble-export.json --no-resolve
      hushflow compile policies/ --out out/ --apply --dry-run
    """
    from hushflow.app.cluster import Cluster, ClusterError
    from hushflow.app.compile import CompileError, CompileJob, run_compile
    from hushflow.app.progress import progress_on
    from hushflow.enforce.state import StateError

    if not out_dir and not apply_:
        raise click.UsageError("say where the result goes: --out DIR and/or --apply")
    if dry_run and not apply_:
        raise click.UsageError("--dry-run goes with --apply")
    job = CompileJob(
        policies=policies, out_dir=out_dir, state_path=state_path, flows=flows, resolve=resolve,
        nameservers=nameservers, shared_ip=shared_ip,  # type: ignore[arg-type]
        group_cap=group_cap, max_total=max_total, max_per_name=max_ips_per_name, min_ttl=min_ttl, grace=grace,
        allow_unobserved=allow_unobserved,
        protect_cidrs=protect_cidrs,
        dns_answer=dns_answer,  # type: ignore[arg-type]
        cilium_version=cilium_version, cluster_name=cluster_name, clock=clock,  # type: ignore[arg-type]
        default_local_cluster=policy_default_local_cluster,
    )
    lookup = None
    if nameservers:
        from hushflow.enforce.resolver import dnspython_lookup

        lookup = dnspython_lookup(nameservers)
    try:
        cluster = Cluster.connect(kubeconfig, kube_context) if apply_ else None
        report = run_compile(job, lookup=lookup, progress=None if quiet else _say, cluster=cluster,
                             dry_run=dry_run, bars=progress_on(sys.stderr, quiet=quiet))
    except ClusterError as exc:
        _say(f"error: {exc}")
        sys.exit(2)
    except (CompileError, StateError) as exc:
        _say(f"error: {exc}")
        sys.exit(1)
    except OSError as exc:
        _say(f"error: cannot write {exc.filename or out_dir}: {exc.strerror or exc}")
        sys.exit(2)
    except UnsafePathError as exc:
        _say(f"error: --out: {exc}")
        sys.exit(2)
    for line in report.lines():
        _say(line)
    if report.written is not None:
        _say(f"{out_dir}: {report.written.summary()}")
    result = report.applied
    if result is not None:
        if dry_run:
            click.echo(result.diff, nl=False)
        _say(result.summary())
        for problem in result.problems():
            _say(f"error: {problem}")
        if not result.ok:
            sys.exit(1)
    if report.flow_lines_skipped:
        sys.exit(2)  # written from what could be read; as observe, say that input was skipped
