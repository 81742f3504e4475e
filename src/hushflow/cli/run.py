"""`hushflow run`: follow Hubble, keep FQDN denies filled, attribute verdicts, alert on surprises."""

from __future__ import annotations

import sys
from functools import partial
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hushflow.cli.options import cilium_version_option, cluster_name_option, protect_cidr_option
from hushflow.sinks.metric_names import STAGED_CHANGES

if TYPE_CHECKING:
    from hushflow.app.daemon import RunSummary
    from hushflow.app.serve_tls import ServeTLSOptions


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--policies", multiple=True, metavar="PATH", help="Policies (files, directories, -); repeatable.")
@click.option("--staged", multiple=True, metavar="PATH",
              help="Staged policies (files, directories; repeatable): decided beside --policies on every policy "
                   "verdict and counted in hushflow_staged_verdicts_total{change} (newly-dropped, newly-allowed, "
                   "tag-lost, ...), never enforced. A staged file with an error exits 2 at start.")
@click.option("--hubble-server", metavar="ADDRESS",
              help="Hubble Relay (host:port, e.g. localhost:4245) or a node socket (unix:///var/run/cilium/hubble.sock).")
@click.option("--tls", is_flag=True, help="Use TLS to the Hubble server.")
@click.option("--tls-ca-cert-files", multiple=True, metavar="FILE", help="CA certificates for --tls.")
@click.option("--tls-client-cert-file", metavar="FILE", help="Client certificate for mutual TLS.")
@click.option("--tls-client-key-file", metavar="FILE", help="Client key for mutual TLS.")
@click.option("--tls-server-name", metavar="NAME", help="Server name to verify (default: the host).")
@click.option("--input-file", "input_files", multiple=True, metavar="FILE",
              help="Read flows from files instead (replays, demos); - is stdin.")
@click.option("--follow", is_flag=True, help="Keep reading the last --input-file as it grows (exporter files).")
@click.option("--out", "out_dir", metavar="DIR", help="Write the CiliumCIDRGroups here (directory mode).")
@click.option("--apply", "apply_", is_flag=True, help="Server-side apply the CiliumCIDRGroups to the cluster.")
@click.option("--kubeconfig", metavar="FILE", help="For --apply and --watch-pods (default: in-cluster).")
@click.option("--watch-pods", is_flag=True,
              help="List and watch the cluster's pods so that named ports (`port: http-alt`) resolve; "
                   "without it a rule on a named port is explained as unknown (RBAC: list, watch pods).")
@click.option("--dnstap", multiple=True, metavar="ADDRESS", callback=lambda _ctx, _param, value: _dnstap(value),
              help="Listen here for DNS servers' dnstap (CoreDNS/NodeLocal DNSCache `dnstap` plugin, Unbound, "
                   "BIND), unix:///PATH or tcp://HOST:PORT, and learn their answers as Hubble's DNS flows "
                   "(when Hubble does not see DNS: docs/dnstap.md). Repeatable.")
@click.option("--instance", default="", envvar="HUSHFLOW_INSTANCE", metavar="NAME",
              help="Per-node mode: this instance's name (e.g. the node), so that each instance writes and "
                   "prunes only its own CIDR groups; the policies select all of them. Env: HUSHFLOW_INSTANCE.")
@click.option("--state", "state_path", metavar="FILE", help="Learned IPs persist here (snapshot + journal).")
@click.option("--metrics-address", default="[::]:9965", show_default=True, metavar="HOST:PORT",
              callback=lambda _ctx, _param, value: _metrics_address(value),
              help="Serve /metrics, /healthz and /readyz here. [::]:PORT (or :PORT) listens on every IPv6 and "
                   "IPv4 address (dual-stack; IPv4 only on a host without IPv6), 0.0.0.0:PORT on IPv4 only, "
                   "[IPV6]:PORT, IPV4:PORT or NAME:PORT on one address.")
@click.option("--serve", metavar="ADDRESS", callback=lambda _ctx, _param, value: _serve_address(value),
              help="Serve Hubble's Observer API (GetFlows, ServerStatus, health, reflection) here, host:port "
                   "or unix:///PATH, from a ring of the last --serve-buffer-capacity enriched flows: point "
                   "`hubble observe --server` at it.")
@click.option("--serve-buffer-capacity", type=click.IntRange(1, 1 << 20), default=4095, show_default=True,
              help="Flows the --serve ring keeps (like Hubble's --hubble-event-buffer-capacity).")
@click.option("--serve-peers-selector", metavar="SELECTOR",
              help="Also serve Hubble's Peer service on --serve, listing the hushflow pods this label selector "
                   "picks (key=value,...; e.g. app.kubernetes.io/name=hushflow) in --serve-peers-namespace, so "
                   "that Cilium's Hubble Relay aggregates the per-node instances (RBAC: list, watch pods).")
@click.option("--serve-peers-namespace", default="hushflow", show_default=True, envvar="HUSHFLOW_NAMESPACE",
              metavar="NAMESPACE", help="The namespace of those pods. Env: HUSHFLOW_NAMESPACE.")
@click.option("--serve-peer", "serve_peers", multiple=True, metavar="NAME=ADDRESS",
              help="Serve the Peer service with this fixed peer instead (tests, development); repeatable.")
@click.option("--serve-tls-cert-file", metavar="FILE",
              help="Serve --serve HOST:PORT with TLS: the server's PEM certificate, with --serve-tls-key-file "
                   "(Cilium: --hubble-tls-cert-file). Both are read again when they change (rotation).")
@click.option("--serve-tls-key-file", metavar="FILE",
              help="The PEM private key of --serve-tls-cert-file (Cilium: --hubble-tls-key-file).")
@click.option("--serve-tls-client-ca-files", multiple=True, metavar="FILE",
              help="Mutual TLS: every --serve client must present a certificate one of these PEM CAs signed "
                   "(Cilium: --hubble-tls-client-ca-files); repeatable or comma-separated.")
@click.option("--export", metavar="FILE", callback=lambda _ctx, _param, value: _export_path(value),
              help="Write every processed (enriched) flow here as Hubble's flow exporter does: one "
                   "GetFlowsResponse JSON object per line, rotated by size; - is stdout (the summary then "
                   "goes to stderr). What Fluent Bit, Vector or Promtail tail: see docs/export.md.")
@click.option("--export-max-size-mb", type=float, default=10, show_default=True, metavar="MB",
              callback=lambda _ctx, _param, value: _export_size(value),
              help="Rotate the --export file before it grows past this size (hubble-export-file-max-size-mb).")
@click.option("--export-max-backups", type=click.IntRange(0, 100_000), default=5, show_default=True,
              help="Rotated --export files kept, the oldest deleted; 0 keeps all (hubble-export-file-max-backups).")
@click.option("--export-compress", is_flag=True, help="Gzip the rotated --export files (hubble-export-file-compress).")
@click.option("--export-allowlist", multiple=True, metavar="JSON",
              callback=lambda _ctx, _param, value: _export_filters(value, "export-allowlist"),
              help="Export only the flows one of these FlowFilters matches (JSON, as `hubble observe "
                   "--print-raw-filters` prints; CEL included), judged on the enriched flow; repeatable.")
@click.option("--export-denylist", multiple=True, metavar="JSON",
              callback=lambda _ctx, _param, value: _export_filters(value, "export-denylist"),
              help="Do not export the flows one of these FlowFilters matches; repeatable.")
@click.option("--export-field-mask", metavar="PATHS", callback=lambda _ctx, _param, value: _export_field_mask(value),
              help="Write only these flow fields, comma-separated (time,verdict,source.namespace,...), like "
                   "hubble-export-fieldmask.")
@click.option("--events", multiple=True, metavar="SINK",
              help="Unexpected drops as JSON events: stdout, file:PATH or an http(s):// webhook; repeatable. "
                   "Webhooks follow no redirects: a 3xx answer is a failed delivery, reported once with where "
                   "it pointed (give the final URL).")
@click.option("--event-window", type=float, default=300, show_default=True,
              help="Seconds during which repeats of the same drop are counted, not sent again.")
@click.option("--expected-log", "expected_logs", multiple=True, metavar="TAG",
              help="A log.value that marks drops as planned (default: the log values of deny rules).")
@click.option("--expected-cel", multiple=True, metavar="EXPR", help="A CEL expression marking drops as planned.")
@click.option("--attribute-default-deny", is_flag=True, help="Fill *_denied_by on default-deny drops too.")
@click.option("--resolve/--no-resolve", default=True, show_default=True,
              help="Resolve every denied matchName (and again before its TTL runs out).")
@click.option("--nameserver", "nameservers", multiple=True, metavar="IP")
@click.option("--min-ttl", type=float, default=3600, show_default=True)
@click.option("--shared-ip", type=click.Choice(["skip", "deny"]), default="skip", show_default=True)
@click.option("--group-cap", type=click.IntRange(1, 16384), default=1000, show_default=True)
@click.option("--max-total", type=click.IntRange(1, 16384), default=10000, show_default=True,
              help="Most denied IPs of all denies together. Past it new IPs are NOT denied: the deny is reported "
                   "incomplete (log, hushflow_deny_incomplete_ips, alert HushflowDenyIncomplete).")
@click.option("--max-ips-per-name", type=click.IntRange(1), default=1000, show_default=True,
              help="Most IPs one name keeps in a deny (like Cilium's --tofqdns-endpoint-max-ip-per-hostname); "
                   "a newer IP evicts the least recently seen, so one name cannot fill --max-total.")
@protect_cidr_option
@click.option("--max-series", type=click.IntRange(1), default=2000, show_default=True,
              help="Distinct label combinations per metric before new ones fold into _other.")
@click.option("--metric-labels", default="namespace,workload,destination,tag", show_default=True,
              metavar="LIST", help="Flow-derived metric labels to fill (the others stay empty): fewer labels, "
                                   "fewer series.")
@click.option("--linger", type=float, default=0, show_default=True,
              help="After a finite input ends, keep serving metrics this many seconds.")
@click.option("--clock", type=click.Choice(["wall", "flows"]), default="wall", show_default=True,
              help="Expire learned IPs against the wall clock or the flows' own time (replays).")
@cilium_version_option
@cluster_name_option
def run(**kwargs: Any) -> None:
    """The main job. Follows Hubble live (or files), keeps the CIDR groups of FQDN denies
    filled, attributes every policy verdict to its rule (filling policy_log on drops), exports
    Prometheus metrics and sends an event for every drop nobody planned.

    With no --hubble-server and no --input-file it replays the bundled telemetry-block example
    (what `make demo` shows): CIDR groups written to ./hushflow-demo/, metrics served, and a
    closing summary of expected vs unexpected drops.

    \b
    Examples:
      hushflow run --policies /policies --hubble-server hubble-relay.kube-system.svc:80 --apply
      hushflow run --policies policies/ --input-file hubble-export.json --follow --out groups/
    """
    from hushflow.app.daemon import Daemon, RunError, RunOptions, StagedPolicyError, run_daemon
    from hushflow.app.example import example_dir
    from hushflow.app.run_checks import RunOptionError, check_run_options

    policies = kwargs["policies"]
    input_files = kwargs["input_files"]
    out_dir, clock, resolve = kwargs["out_dir"], kwargs["clock"], kwargs["resolve"]
    if not kwargs["hubble_server"] and not input_files:
        example = example_dir()
        if example is None:
            raise click.UsageError("no flow source: pass --hubble-server ADDRESS or --input-file FILE")
        click.echo(f"no source given: replaying the bundled example {example}", err=True)
        policies = policies or (str(example / "policies"),)
        input_files = (str(example / "flows.jsonl"),)
        out_dir = out_dir or "hushflow-demo"
        clock, resolve = "flows", False
    if not policies:
        raise click.UsageError("say which policies to enforce and attribute: --policies PATH")
    tls = None
    if kwargs["hubble_server"]:
        tls = {key: kwargs[key] for key in ("tls", "tls_ca_cert_files", "tls_client_cert_file",
                                             "tls_client_key_file", "tls_server_name")}
    options = RunOptions(
        policies=tuple(policies), staged=tuple(kwargs["staged"]), input_files=tuple(input_files),
        follow=kwargs["follow"],
        hubble_server=kwargs["hubble_server"], tls=tls, out_dir=out_dir, apply=kwargs["apply_"],
        kubeconfig=kwargs["kubeconfig"], state_path=kwargs["state_path"], metrics_address=kwargs["metrics_address"],
        events=tuple(kwargs["events"]), event_window=kwargs["event_window"],
        expected_logs=tuple(kwargs["expected_logs"]) or None, expected_cel=tuple(kwargs["expected_cel"]),
        attribute_default_deny=kwargs["attribute_default_deny"], resolve=resolve,
        nameservers=tuple(kwargs["nameservers"]), min_ttl=kwargs["min_ttl"], shared_ip=kwargs["shared_ip"],
        group_cap=kwargs["group_cap"], max_total=kwargs["max_total"],
        max_per_name=kwargs["max_ips_per_name"], max_series=kwargs["max_series"],
        protect_cidrs=kwargs["protect_cidrs"],
        instance=kwargs["instance"],
        linger=kwargs["linger"], cilium_version=kwargs["cilium_version"],
        cluster_name=kwargs["cluster_name"], default_local_cluster=kwargs["policy_default_local_cluster"],
        clock=clock, watch_pods=kwargs["watch_pods"], dnstap=kwargs["dnstap"],
        metric_context=_metric_context(kwargs["metric_labels"]),
        serve=kwargs["serve"], serve_capacity=kwargs["serve_buffer_capacity"],
        serve_peers=tuple(kwargs["serve_peers"]), serve_peers_selector=kwargs["serve_peers_selector"],
        serve_peers_namespace=kwargs["serve_peers_namespace"],
        **_export_options(kwargs),
    )
    try:
        # Mistakes the run can see alone come first, before any policy is read or server dialled.
        warnings = check_run_options(options)
    except RunOptionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    from hushflow.app.observer_api import ObserverApiError, prepare_peers, start_observer_api

    serve_tls = _serve_tls_options(kwargs, options.serve)
    say = partial(click.echo, err=True)
    try:
        peers = prepare_peers(options, serve_tls, report=say)
    except ObserverApiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    try:
        daemon = Daemon(options)
    except StagedPolicyError as exc:  # a mistake of the command line's staged files, before any work
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except RunError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # the disk changed since the checks (a directory removed, a mount gone)
        click.echo(f"error: cannot start: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    try:
        served = start_observer_api(daemon, options, serve_tls, peers, say=say)
    except ObserverApiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        code = run_daemon(daemon, options.metrics_address, linger=options.linger,
                          say=lambda message: click.echo(message, err=True))
    except OSError as exc:
        click.echo(f"error: cannot serve metrics on {options.metrics_address}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    finally:
        if served is not None:
            served.stop()
    # `--export -` owns stdout: every line there is an export line, the summary goes to stderr.
    print_summary(daemon.summary, Console(file=sys.stderr if options.export == "-" else sys.stdout))
    sys.exit(code)


def _metrics_address(text: str) -> str:
    from hushflow.app.http import parse_listen_address

    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics-address") from None
    return text


def _serve_address(text: str | None) -> str | None:
    from hushflow.app.serve import ServeError, parse_serve_address

    if text is None:
        return None
    try:
        parse_serve_address(text)
    except ServeError as exc:
        raise click.BadParameter(str(exc), param_hint="--serve") from None
    return text


def _dnstap(values: tuple[str, ...]) -> tuple[str, ...]:
    from hushflow.app.dnstap_server import parse_dnstap_address

    for text in values:
        try:
            parse_dnstap_address(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dnstap") from None
    return tuple(values)


def _serve_tls_options(kwargs: dict[str, Any], serve: str | None) -> ServeTLSOptions:
    """The --serve-tls-* options; exit 2 when they cannot be used (one without the other, no
    --serve, a unix socket, a file that does not load)."""
    from hushflow.app.serve_tls import ServeTLSError, ServeTLSOptions, check_serve_tls

    try:
        tls = ServeTLSOptions.from_cli(kwargs["serve_tls_cert_file"], kwargs["serve_tls_key_file"],
                                       kwargs["serve_tls_client_ca_files"])
        check_serve_tls(tls, serve)
    except ServeTLSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    return tls


def _export_path(path: str | None) -> str | None:
    from hushflow.sinks.exporter import check_export_path

    if path is None:
        return None
    try:
        check_export_path(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--export") from None
    return path


def _export_size(megabytes: float) -> float:
    import math

    if not math.isfinite(megabytes) or megabytes <= 0 or megabytes > 1 << 20:
        raise click.BadParameter(f"{megabytes}: give a size in MB above 0 (e.g. 10, or 0.5)",
                                 param_hint="--export-max-size-mb")
    return megabytes


def _export_filters(values: tuple[str, ...], flag: str) -> tuple[dict[str, Any], ...]:
    """--export-allowlist/--export-denylist: the FlowFilters `observe --allowlist` takes, compiled
    once here so a wrong one (a CEL expression that does not compile) exits 2 before the run."""
    from hushflow.filter import FilterError, compile_filters
    from hushflow.filter.pflag import FlagError
    from hushflow.filter.rawfilters import parse_raw_filters

    try:
        filters = parse_raw_filters(values, flag)
        compile_filters(filters, [])
    except (FlagError, FilterError) as exc:
        raise click.BadParameter(str(exc).replace("\n", " "), param_hint=f"--{flag}") from None
    return tuple(filters)


def _export_field_mask(text: str | None) -> tuple[str, ...]:
    from hushflow.sinks.exporter import compile_field_mask, parse_field_mask

    paths = parse_field_mask(text or "")
    try:
        compile_field_mask(paths)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--export-field-mask") from None
    return paths


def _export_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The RunOptions of --export*; a usage error for --export-* without --export, or two writers of stdout."""
    export = kwargs["export"]
    if export is None:
        given = [name for name in ("export_allowlist", "export_denylist", "export_field_mask", "export_compress")
                 if kwargs[name]]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --export FILE")
    elif export == "-" and "stdout" in kwargs["events"]:
        raise click.UsageError("--export - and --events stdout would both write to stdout: send the events "
                               "elsewhere (file:PATH)")
    return {"export": export, "export_max_size_mb": kwargs["export_max_size_mb"],
            "export_max_backups": kwargs["export_max_backups"], "export_compress": kwargs["export_compress"],
            "export_allowlist": kwargs["export_allowlist"], "export_denylist": kwargs["export_denylist"],
            "export_field_mask": kwargs["export_field_mask"]}


def _metric_context(text: str) -> frozenset[str]:
    from hushflow.sinks.metrics import MetricsOptions

    try:
        return MetricsOptions.parse_context(text).context
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metric-labels") from None


def print_summary(summary: RunSummary, console: Console) -> None:
    console.print(
        f"{summary.flows} flows, {summary.verdicts} policy verdicts/drops attributed, "
        f"{summary.learned_ips} IPs learned for FQDN denies, {summary.groups_written} CIDR group writes, "
        f"{summary.events_sent} unexpected-drop events",
        soft_wrap=True,
    )
    for title, counts in (("drops by tag", summary.drops_by_tag), ("drops by workload", summary.drops_by_workload)):
        keys = sorted({key for key, _ in counts})
        table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
        table.add_column(title.split(" by ")[1].upper())
        table.add_column("EXPECTED", justify="right")
        table.add_column("UNEXPECTED", justify="right")
        for key in keys:
            table.add_row(key, str(counts[(key, True)]), str(counts[(key, False)]))
        console.print(table)
    if summary.staged:
        changes = ", ".join(f"{summary.staged[change]} {change}" for change in STAGED_CHANGES if summary.staged[change])
        console.print(f"staged policies: {changes}", soft_wrap=True)
    if summary.unexplained:  # the blindness alarm (engine.blindness): names from the flows, printed as text
        shown = sorted(summary.unexplained.items(), key=lambda item: (-item[1], item[0]))
        workloads = ", ".join(f"{name} {count}" for name, count in shown[:10])
        more = f" and {len(shown) - 10} more workloads" if len(shown) > 10 else ""
        console.print(f"[yellow]unexplained destinations[/] (connections an FQDN deny cannot know the name of: "
                      f"NodeLocal DNS, DoH or hard-coded IPs?): {escape(workloads)}{more}", soft_wrap=True)
    if summary.dnstap:
        from hushflow.app.dnstap_server import MESSAGE_KINDS

        console.print("dnstap messages: " + ", ".join(f"{summary.dnstap[kind]} {kind}" for kind in MESSAGE_KINDS))
    if summary.leak_p50 is not None and summary.leak_p99 is not None:
        console.print(f"leak window: p50 {summary.leak_p50 * 1000:.1f} ms, p99 {summary.leak_p99 * 1000:.1f} ms")
    if summary.bad_lines or summary.flows_skipped or summary.lost_events or summary.dns_values_rejected:
        console.print(
            f"[yellow]{summary.bad_lines} malformed lines skipped, {summary.flows_skipped} flows that could not be "
            f"processed skipped, {summary.dns_values_rejected} malformed DNS answer values left out, "
            f"{summary.lost_events} Hubble events lost[/]"
        )
    if summary.ips_refused:
        console.print(f"[yellow]{summary.ips_refused} addresses from DNS answers refused for the denies "
                      "(loopback, link-local, the DNS server, protected ranges: see --protect-cidr)[/]")
