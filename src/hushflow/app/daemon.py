"""`hushflow run`: the long-running process SREs deploy next to Cilium.

One direction of data, processed in the thread that reads it:

    pipeline thread: Hubble (gRPC) or files --> deny learner --> CIDR groups (journal first,
                     then publish) --> attribution --> metrics, unexpected-drop events
    main thread:     every 0.5 s: gauges, expiry, state snapshots, the source's counters
    resolver thread: (optional) resolves the denied matchNames, feeds the learner

Why no queue between reading and processing: both are Python code under one GIL, and handing
every flow from one thread to the other cost as much CPU again as processing it (measured with
benchmarks/bench_run.py: 73 us against 42 us a flow). The bounded buffers in front of the
pipeline are the transport's: the HTTP/2 flow-control window of the gRPC stream and, behind
it, Hubble's own ring buffer; when hushflow falls behind, Hubble reports lost events, which
are counted. How close the pipeline is to that point is measured: the share of time it is busy
(``hushflow_pipeline_busy_seconds_total``) and the lag behind the source.

The threads share the state through one lock, taken per flow by the pipeline (uncontended
almost always). Metrics, /healthz and /readyz are served on one HTTP port (9965 by default).
SIGTERM (or `stop`) stops reading, finishes the flow in hand, saves the state and ends with
exit status 0.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from hushflow.app.enrich import make_attributor
from hushflow.enforce.compile import DEFAULT_RUN_INSTANCE
from hushflow.enforce.protect import ProtectedAddresses
from hushflow.enforce.publish import policy_label
from hushflow.engine.attribution import Attribution
from hushflow.engine.blindness import UnexplainedDestinations
from hushflow.engine.explain import render
from hushflow.flow.connection import Connection, endpoint_labels
from hushflow.flow.dns import DnsAnswer, dns_answer_of, endpoint_key
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS, unprocessable_reason
from hushflow.flow.reader import FlowEvent
from hushflow.flow.sources import FileSource, FlowSource
from hushflow.flow.times import FlowTimes
from hushflow.sinks import metric_names
from hushflow.sinks.events import UnexpectedDropEvents, make_sink
from hushflow.sinks.metrics import CONTEXT_LABELS, HushflowMetrics, MetricsOptions
from hushflow.sinks.records import VerdictRecord

if TYPE_CHECKING:  # types only: the resolver (dnspython) and the cluster client load when used
    from hushflow.app.cluster import Cluster
    from hushflow.app.dnstap_server import DnstapServer
    from hushflow.app.pod_watch import PodWatch
    from hushflow.app.serve import EventRing
    from hushflow.enforce.group_writes import GroupWrites
    from hushflow.enforce.learner import Change
    from hushflow.enforce.resolver import LookupFn, ResolveResult
    from hushflow.engine.replay import Replayer
    from hushflow.flow.dnstap import DnstapMessage
    from hushflow.flow.grpc_target import TLSOptions
    from hushflow.policy.model import PolicySet
    from hushflow.sinks.exporter import FlowExporter


class RunError(Exception):
    """A reason the daemon cannot start, worded for the user."""


class StagedPolicyError(RunError):
    """The --staged policies cannot be used (refused like --policies): the command line's mistake."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    policies: tuple[str, ...] = ()
    staged: tuple[str, ...] = ()  # a proposed set decided beside the enforced one, never enforced (--staged)
    input_files: tuple[str, ...] = ()
    follow: bool = False
    hubble_server: str | None = None
    tls: TLSOptions | Mapping[str, Any] | None = None  # when reading from Hubble (CLI options map too)
    out_dir: str | None = None
    apply: bool = False
    kubeconfig: str | None = None
    state_path: str | None = None
    metrics_address: str = f"[::]:{metric_names.METRICS_PORT}"
    events: tuple[str, ...] = ()
    event_window: float = 300.0
    expected_logs: tuple[str, ...] | None = None
    expected_cel: tuple[str, ...] = ()
    attribute_default_deny: bool = False
    resolve: bool = True
    nameservers: tuple[str, ...] = ()
    min_ttl: float = 3600.0
    grace: float = 0.0
    shared_ip: str = "skip"
    group_cap: int = 1000
    max_total: int = 10_000
    max_per_name: int = 1000  # IPs per deny and name (Cilium's --tofqdns-endpoint-max-ip-per-hostname)
    protect_cidrs: tuple[str, ...] | None = None  # never denied from DNS; None: the private and shared ranges
    instance: str = ""  # per-node mode: this instance's name, so each writes only its own CIDR groups
    snapshot_interval: float = 60.0
    expire_interval: float = 30.0
    linger: float = 0.0
    drain_timeout: float = 10.0  # at the end: seconds to keep retrying group writes that did not land
    max_series: int = 2000
    metric_context: frozenset[str] = frozenset(CONTEXT_LABELS)
    cilium_version: tuple[int, int] = (1, 18)
    cluster_name: str = "default"  # the local cluster (policy-default-local-cluster, from 1.19)
    default_local_cluster: bool | None = None  # the agent's policy-default-local-cluster; None: the default
    clock: str = "wall"  # or "flows": expire against flow time (replays)
    watch_pods: bool = False  # list/watch the cluster's pods: named ports resolve (app.pod_watch)
    pod_sync_timeout: float = 30.0  # seconds to wait for the first pod list before reading flows
    serve: str | None = None  # serve the Observer API here from a ring of the processed events (app.serve)
    serve_capacity: int = 4095  # that ring's size (Hubble's --hubble-event-buffer-capacity)
    # --serve also serves Hubble's Peer service (app.peer), so Cilium's Relay aggregates the
    # per-node instances: these NAME=ADDRESS peers, or the pods the selector picks in the namespace.
    serve_peers: tuple[str, ...] = ()
    serve_peers_selector: str | None = None
    serve_peers_namespace: str = "hushflow"
    export: str | None = None  # write the processed events here as Hubble's exporter does ("-": stdout)
    export_max_size_mb: float = 10.0  # rotate past this size (hubble-export-file-max-size-mb)
    export_max_backups: int = 5  # rotated files kept (hubble-export-file-max-backups; 0: all)
    export_compress: bool = False  # gzip the rotated files (hubble-export-file-compress)
    export_allowlist: tuple[dict[str, Any], ...] = ()  # FlowFilters on the enriched events (hubble-export-allowlist)
    export_denylist: tuple[dict[str, Any], ...] = ()  # (hubble-export-denylist)
    export_field_mask: tuple[str, ...] = ()  # the flow fields written (hubble-export-fieldmask)
    dnstap: tuple[str, ...] = ()  # listen for DNS servers' dnstap here (unix:///PATH, tcp://HOST:PORT)


@dataclass(slots=True)
class RunSummary:
    flows: int = 0
    verdicts: int = 0
    drops_by_tag: Counter[tuple[str, bool]] = field(default_factory=Counter)
    drops_by_workload: Counter[tuple[str, bool]] = field(default_factory=Counter)
    learned_ips: int = 0
    groups_written: int = 0
    events_sent: int = 0
    bad_lines: int = 0
    flows_skipped: int = 0  # read, but of a shape the pipeline could not process
    dns_values_rejected: int = 0  # values of DNS answers left out (no valid IP, a bad TTL)
    ips_refused: int = 0  # addresses never denied from DNS (loopback, link-local, protected, ...)
    lost_events: int = 0
    bad_events: int = 0  # messages of a live source that could not be converted (reported)
    leak_p50: float | None = None
    leak_p99: float | None = None
    staged: Counter[str] = field(default_factory=Counter)  # --staged: verdicts by change (engine.replay.Change)
    dnstap: Counter[str] = field(default_factory=Counter)  # --dnstap: messages by kind (app.dnstap_server)
    unexplained: Counter[str] = field(default_factory=Counter)  # unexplained destinations by ns/workload


#: Pods remembered by address for --dnstap (a node's pods, and the peers its flows name).
_MAX_CLIENTS = 65_536
#: Flows that fail processing are reported on stderr up to this many times, then only counted.
_SKIPS_REPORTED = 10


class Daemon:
    def __init__(
        self,
        options: RunOptions,
        *,
        source: FlowSource | None = None,
        lookup: LookupFn | None = None,
        registry: CollectorRegistry | None = None,
        stderr: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import sys

        self.options = options
        self.stderr = stderr or sys.stderr
        self.clock = clock
        self.monotonic = monotonic
        self.registry = registry or CollectorRegistry()
        self.metrics = HushflowMetrics(self.registry, MetricsOptions(options.max_series, options.metric_context))
        self.summary = RunSummary()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.heartbeat = monotonic()  # the main thread's last periodic round
        self._busy_since: float | None = None  # the pipeline's current flow, since when
        self._busy_seconds = 0.0  # the pipeline's time spent processing (not waiting on the source)
        self._lock = threading.Lock()  # the learner, state, publisher, attributor and summary
        self._finished = threading.Event()
        self._times = FlowTimes()
        self._lookup = lookup
        self._last_flow_time = 0.0
        self.source_error: str | None = None
        self._notes_reported = 0
        self._disk_reported: dict[str, float] = {}
        self._applied_names: set[str] = set()
        self._bad_events_reported = -1e18  # this instance's groups found in the cluster at start
        self._unsaved = False  # a snapshot failed: the journal is kept until one lands
        self._clients: dict[str, Mapping[str, Any]] | None = None  # --dnstap: pod IP -> its Hubble endpoint
        self.ring: EventRing | None = None  # --serve: the processed (enriched) events, for app.serve
        if options.serve:
            from hushflow.app.serve import EventRing

            self.ring = EventRing(options.serve_capacity)
        self.exporter: FlowExporter | None = self._exporter() if options.export else None  # --export
        self._setup(source)

    # -- set-up --------------------------------------------------------------------------------

    def _setup(self, source: FlowSource | None) -> None:
        from hushflow.app.policies import PolicyError, load_job_policies
        from hushflow.enforce.denies import fqdn_denies
        from hushflow.enforce.learner import DenyLearner
        from hushflow.enforce.publish import GroupPublisher
        from hushflow.enforce.state import DenyState, Journal, StateError
        from hushflow.policy.model import BuildOptions

        options = self.options
        try:
            loaded = load_job_policies(options.policies, BuildOptions.for_cluster(
                options.cilium_version, options.cluster_name, options.default_local_cluster))
        except PolicyError as exc:
            raise RunError(str(exc)) from None
        self.policy_set = loaded.policy_set
        self.denies = fqdn_denies(loaded.policy_set)
        try:
            self.state = (
                DenyState.load(options.state_path, options.min_ttl, options.grace)
                if options.state_path
                else DenyState(options.min_ttl, options.grace)
            )
        except StateError as exc:
            raise RunError(str(exc)) from None
        self.state.keep_only(deny.id for deny in self.denies)
        self.journal = Journal(options.state_path) if options.state_path else None
        self.pod_watch = self._pod_watch() if options.watch_pods else None
        try:
            self.attributor = make_attributor(
                loaded.policy_set, expected_logs=options.expected_logs, expected_cel=options.expected_cel,
                attribute_default_deny=options.attribute_default_deny, cilium_version=options.cilium_version,
                pods=self.pod_watch.index if self.pod_watch is not None else None,
            )
        except ValueError as exc:
            raise RunError(str(exc)) from None
        self.staged = self._staged(loaded.policy_set) if options.staged else None
        # The blindness alarm (engine.blindness): connections of endpoints an FQDN deny selects, on
        # its ports, to IPs no DNS answer explains, for as long as the deny keeps an answer's IPs.
        blindness = UnexplainedDestinations(loaded.policy_set, self.attributor.dns, min_ttl=options.min_ttl,
                                            grace=options.grace)
        self.blindness = blindness if blindness else None
        try:
            protected = ProtectedAddresses.from_cidrs(options.protect_cidrs)
        except ValueError as exc:
            raise RunError(f"--protect-cidr: {exc}") from None
        self.learner = DenyLearner(
            loaded.policy_set, self.denies, self.state, shared_ip=options.shared_ip,  # type: ignore[arg-type]
            max_total=options.max_total, max_per_name=options.max_per_name, protected=protected,
        )
        self.instance = options.instance or DEFAULT_RUN_INSTANCE
        self.writes = self._group_writes()
        # What an older version (or a hostile answer before this one) left in the state goes now.
        for line in self.learner.repair_state():
            self.stderr.write(f"hushflow: {line}\n")
        self.publisher = GroupPublisher(
            self.denies, self.state, journal=self.journal, group_cap=options.group_cap, instance=self.instance,
            monotonic=self.monotonic, writes=self.writes,
            on_journal_error=lambda exc: self._disk_problem("journal", exc),
        )
        def emitted(sink: str, outcome: str) -> None:
            self.metrics.child(metric_names.EVENTS_EMITTED_TOTAL, sink, outcome).inc()

        try:
            sinks = [make_sink(spec, on_result=emitted, report=self._say) for spec in options.events]
        except (ValueError, OSError) as exc:
            raise RunError(f"--events: {exc}") from None
        self.events = UnexpectedDropEvents(
            sinks,
            window=options.event_window,
            on_emit=lambda sink, ok: emitted(sink, "delivered" if ok else "failed"),
        )
        self.source = source or self._default_source()
        self.dnstap = self._dnstap() if options.dnstap else None

    def _dnstap(self) -> DnstapServer:
        """--dnstap: the listening sockets, bound now so that a bad address stops the start. Who
        asked is known by address: the pods of the flows seen (and of the pod watch)."""
        from hushflow.app.dnstap_server import DnstapServer

        self._clients = {}
        try:
            server = DnstapServer(self.options.dnstap, self._dnstap_answers, report=self._say,
                                  monotonic=self.monotonic)
            server.bind()
        except (ValueError, OSError) as exc:
            raise RunError(f"--dnstap: {exc}" if isinstance(exc, ValueError) else str(exc)) from None
        return server

    def _staged(self, enforced: PolicySet) -> Replayer:
        """--staged: the proposed set, loaded and refused exactly as --policies, decided beside the
        enforced one with the attributor's DNS knowledge and pods. It writes no CIDR group and
        fills no field of the flow: only hushflow_staged_verdicts_total sees it."""
        from hushflow.app.policies import PolicyError, load_job_policies
        from hushflow.engine.replay import Replayer
        from hushflow.policy.model import BuildOptions

        options = self.options
        try:
            staged = load_job_policies(options.staged, BuildOptions.for_cluster(
                options.cilium_version, options.cluster_name, options.default_local_cluster))
        except PolicyError as exc:
            raise StagedPolicyError(f"--staged: {exc}") from None
        return Replayer(enforced, staged.policy_set, cilium_version=options.cilium_version,
                        pods=self.pod_watch.index if self.pod_watch is not None else None, dns=self.attributor.dns)

    def _group_writes(self) -> GroupWrites | None:
        """The queue (and its thread) that writes CIDR groups to --out and/or the cluster, retrying
        each until it lands; None when the run writes nowhere."""
        from hushflow.enforce.group_writes import GroupWrites, WriteOutcome
        from hushflow.enforce.writer import UnsafePathError, object_path, remove_file, write_file_in

        options = self.options
        cluster = self._connect_cluster() if options.apply else None
        if cluster is None and not options.out_dir:
            return None
        out_dir = options.out_dir

        def write(groups: Sequence[tuple[dict[str, Any], str]], deleted: Sequence[str]) -> WriteOutcome:
            outcome = WriteOutcome()
            names = [group["metadata"]["name"] for group, _text in groups] + list(deleted)
            failed: dict[str, tuple[str, str]] = {}
            if out_dir:
                for group, text in groups:
                    try:
                        write_file_in(out_dir, object_path(group), text)
                    except UnsafePathError as exc:
                        failed[group["metadata"]["name"]] = ("unsafe-path", f"{out_dir}: {exc}")
                    except OSError as exc:
                        failed[group["metadata"]["name"]] = ("disk", f"{out_dir}: {exc}")
                for name in deleted:
                    try:
                        remove_file(out_dir, object_path(_group_ref(name)))
                    except UnsafePathError as exc:
                        failed[name] = ("unsafe-path", f"{out_dir}: {exc}")
                    except OSError as exc:
                        failed[name] = ("disk", f"{out_dir}: {exc}")
            if cluster is not None:
                failed.update(_apply_to_cluster(cluster, groups, deleted))
            outcome.failed = failed
            outcome.accepted = {name for name in names if name not in failed}
            return outcome

        def landed(read_at: float) -> None:
            window = self.monotonic() - read_at
            self.metrics[metric_names.LEAK_WINDOW_SECONDS].observe(window)
            windows = self.publisher.stats.leak_windows
            windows.append(window)
            if len(windows) > 100_000:
                del windows[:50_000]

        def report(line: str) -> None:
            self.stderr.write(f"hushflow: {line}\n")

        return GroupWrites(write, on_landed=landed, report=report, monotonic=self.monotonic)

    def _pod_watch(self) -> PodWatch:
        """The pod watch (--watch-pods), on the cluster of --kubeconfig or the service account."""
        from hushflow.app.cluster import Cluster, ClusterError
        from hushflow.app.pod_watch import PodWatch
        from hushflow.engine.pods import PodIndex

        try:
            api = Cluster.connect(self.options.kubeconfig).api
        except ClusterError as exc:
            raise RunError(f"--watch-pods: {exc}") from None
        return PodWatch(api, PodIndex(), self._lock, self.stopping, report=self._say)

    def _connect_cluster(self) -> Cluster:
        from hushflow.app.cluster import Cluster, ClusterError

        try:
            cluster = Cluster.connect(self.options.kubeconfig, instance=self.instance)
            # Learned IPs live in the cluster too: a pod that lost its state file takes them back.
            applied = cluster.applied_groups()
            self.state.seed_from_groups(applied, self.clock())
            self._applied_names = {str((group.get("metadata") or {}).get("name", "")) for group in applied} - {""}
        except ClusterError as exc:
            raise RunError(str(exc)) from None
        return cluster

    def _say(self, line: str) -> None:
        self.stderr.write(f"hushflow: {line}\n")

    def _exporter(self) -> FlowExporter:
        """The writer of --export: Hubble's exporter lines of the enriched events, its filters
        compiled once (CEL included, so a filter on policy_log works)."""
        from hushflow.sinks.exporter import open_export

        options = self.options
        keep = None
        if options.export_allowlist or options.export_denylist:
            from hushflow.filter import FilterError, compile_filters

            try:
                keep = compile_filters(list(options.export_allowlist), list(options.export_denylist)).matches
            except FilterError as exc:
                raise RunError(f"--export-allowlist/--export-denylist: {exc}") from None
        try:
            return open_export(
                options.export or "-", max_size_mb=options.export_max_size_mb,
                max_backups=options.export_max_backups, compress=options.export_compress, keep=keep,
                field_mask=options.export_field_mask, node_name=options.instance, report=self._say,
            )
        except ValueError as exc:
            raise RunError(f"--export-field-mask: {exc}") from None

    def _export_metrics(self, exporter: FlowExporter) -> None:
        stats = exporter.stats
        metrics = self.metrics
        metrics.follow_total(metric_names.EXPORTED_FLOWS_TOTAL, stats.flows)
        metrics.follow_total(metric_names.WRITE_FAILURES_TOTAL, stats.write_failures, "export", "disk")
        for reason, count in list(stats.not_exported.items()):
            metrics.follow_total(metric_names.EXPORT_ERRORS_TOTAL, count, reason)

    def _disk_problem(self, what: str, exc: OSError) -> None:
        """A write to the local disk failed (full, read-only): report it (once a minute) and go on;
        what was not written is written again later."""
        self.metrics.child(metric_names.WRITE_FAILURES_TOTAL, what, "disk").inc()
        now = self.monotonic()
        if now - self._disk_reported.get(what, -1e18) >= 60.0:
            self._disk_reported[what] = now
            self.stderr.write(f"hushflow: cannot write the {what} ({exc}); reading goes on, the write is "
                              "retried (free space or fix the directory)\n")

    def _default_source(self) -> FlowSource:
        options = self.options
        if options.hubble_server:
            from hushflow.flow.sources import HubbleSource

            if options.serve or options.export:
                # Served (and exported) flows go to the hubble CLI, Hubble UI, log shippers: ask Hubble for every flow
                # and every field, not only what the pipeline reads (the upstream allowlist and
                # field mask would leave clients ~30 % of the flows, cut down).
                return HubbleSource(options.hubble_server, options.tls, allowlist=(), field_mask=())
            return HubbleSource(options.hubble_server, options.tls)
        if options.input_files:
            missing = [path for path in options.input_files if path != "-" and not Path(path).exists()]
            if missing and not options.follow:
                raise RunError(f"no such input file: {', '.join(missing)}")
            return FileSource(options.input_files, options.follow)
        raise RunError("no flow source: pass --hubble-server ADDRESS or --input-file FILE")

    # -- threads -------------------------------------------------------------------------------

    def _pipeline(self) -> None:
        """The pipeline thread: every event is processed as soon as the source yields it."""
        monotonic = self.monotonic
        lock = self._lock
        process = self._process
        stopping = self.stopping.is_set
        ring = self.ring
        export = self.exporter.offer if self.exporter is not None else None
        try:
            for event in self.source.events():
                read_at = monotonic()
                self._busy_since = read_at
                data = event.data
                with lock:
                    try:
                        process(event, read_at)
                    except FLOW_SHAPE_ERRORS as exc:
                        # a flow of a shape hushflow did not expect: its canonical form, enriched,
                        # is what clients and the export get
                        data = self._again(event, read_at, exc)
                if ring is not None:  # appends and never waits: clients read the ring at their pace
                    ring.append(data, event.wire)
                if export is not None:  # filters, encodes and hands the line to the export's writer thread
                    export(data)
                self._busy_since = None
                self._busy_seconds += monotonic() - read_at
                if stopping():
                    break
        except Exception as exc:  # a failing source (or disk) ends the run; what was read is kept
            self.source_error = str(exc)
            self.stderr.write(f"hushflow: stopped reading flows: {exc}\n")
        finally:
            self._busy_since = None
            self._finished.set()

    def flush_metrics(self) -> None:
        """Bring the metrics up to the last flow processed (done every 0.5 s and on each scrape)."""
        with self._lock:
            self.metrics.flush()

    def _again(self, event: FlowEvent, read_at: float, exc: BaseException) -> dict[str, Any]:
        """A flow the pipeline could not process: when it is valid protojson in another spelling
        (`"TCP": null`, `"identity": null` below the first level, which the reader's fast path
        lets through), process its canonical form (not counted again); else skip it. Returns the
        event to hand on: the canonical one, enriched, or the flow as read (served and exported
        unenriched, not lost)."""
        from hushflow.flow.reader import canonical_form

        canonical = canonical_form(event)
        if canonical is not None:
            try:
                self._process(canonical, read_at, counted=True)
                return canonical.data
            except FLOW_SHAPE_ERRORS as again:
                exc = again
        self._skip(event, exc)
        return event.data

    def _skip(self, event: FlowEvent, exc: BaseException) -> None:
        """Count, report (the first few) and skip a flow the pipeline could not process."""
        self.summary.flows_skipped += 1
        self.metrics.child(metric_names.MALFORMED_INPUT_TOTAL, self.source.name, metric_names.MALFORMED_FLOW).inc()
        if self.summary.flows_skipped <= _SKIPS_REPORTED:
            more = " (further ones are only counted: hushflow_malformed_input_total)" \
                if self.summary.flows_skipped == _SKIPS_REPORTED else ""
            self.stderr.write(f"hushflow: {event.source}:{event.line}: {unprocessable_reason(event.data, exc)}{more}\n")

    def _rejected(self, event: FlowEvent, answer: DnsAnswer) -> None:
        """Count and report (the first few) values of a DNS answer that were left out."""
        for reason, value in answer.rejected:
            self.metrics.add(metric_names.MALFORMED_INPUT_TOTAL, self.source.name, reason)
            self.summary.dns_values_rejected += 1
            if self.summary.dns_values_rejected <= _SKIPS_REPORTED:
                self.stderr.write(f"hushflow: {event.source}:{event.line}: the DNS answer for {answer.name} has a "
                                  f"value hushflow left out ({reason}: {value})\n")

    def stuck_for(self) -> float:
        """Seconds the pipeline has held one flow, or the main thread has not run its periodic
        round (0 when neither is late)."""
        now = self.monotonic()
        busy_since = self._busy_since
        held = now - busy_since if busy_since is not None else 0.0
        return max(held, now - self.heartbeat)

    def _resolve_loop(self) -> None:
        from hushflow.enforce.resolver import PreResolver, dnspython_lookup

        names = sorted({name for deny in self.denies for name in deny.match_names})
        if not names:
            return
        resolver = PreResolver(self._lookup or dnspython_lookup(self.options.nameservers))
        while not self.stopping.is_set():
            now = self.clock()
            result = resolver.resolve(names, now)
            with self._lock:
                self._resolved(result, now, self.monotonic())
            self.stopping.wait(max(1.0, result.next_refresh - now))

    # -- processing ----------------------------------------------------------------------------

    def _resolved(self, result: ResolveResult, now: float, read_at: float) -> None:
        for name, (ips, ttl) in result.answers.items():
            changes = self.learner.learn_resolved(name, ips, ttl, now)
            self._published(changes, read_at)
            if self.blindness is not None:
                self.blindness.learn_resolved(ips, ttl, now)
        for name, error in result.errors.items():
            self.stderr.write(f"hushflow: resolving {name} failed ({error}); nothing removed\n")

    def _process(self, event: FlowEvent, read_at: float, counted: bool = False) -> None:
        data = event.data
        flow = data.get("flow")
        if not isinstance(flow, dict):
            lost = data.get("lost_events")
            if isinstance(lost, dict):
                count = int(lost.get("num_events_lost", 0) or 0)
                self.metrics[metric_names.HUBBLE_LOST_EVENTS_TOTAL].labels(source=self.source.name).inc(count)
                self.summary.lost_events += count
            status = data.get("node_status")
            if isinstance(status, dict):
                state = str(status.get("state_change", "UNKNOWN_NODE_STATE"))
                self.metrics[metric_names.NODE_STATUS_CHANGES_TOTAL].labels(state=state).inc()
            return
        if not counted:  # a retry of a flow already counted
            self.summary.flows += 1
            self.metrics.flow_read(flow)
        now = self._times.time_of(flow, data)
        if self._last_flow_time < now:
            self._last_flow_time = now
        if self._clients is not None:
            self._note_clients(flow)
        attributor = self.attributor
        l7 = flow.get("l7")
        if l7 is not None and "dns" in l7:
            answer = dns_answer_of(flow)  # parsed once, for the deny learner and the attribution
            if answer is not None:
                if answer.rejected:
                    self._rejected(event, answer)
                changes = self.learner.learn_answer(answer, now)
                if changes:
                    self._published(changes, read_at)
                if answer.ips:  # an answer whose every value was rejected teaches nothing
                    attributor.learn_answer(answer, now)
                    self.metrics.add(metric_names.DNS_ANSWERS_TOTAL)
            return  # DNS flows are no policy outcome
        attribution = attributor.observe(data, now=now)
        if attribution is not None:
            self._count(flow, attribution)

    def _note_clients(self, flow: Mapping[str, Any]) -> None:
        """Remember the pods of a flow by address (--dnstap answers are keyed by the address that
        asked); bounded, the oldest address goes first."""
        addresses = flow.get("IP")
        if not isinstance(addresses, dict):
            return
        clients = self._clients
        assert clients is not None
        for side in ("source", "destination"):
            endpoint = flow.get(side)
            ip = addresses.get(side)
            if (isinstance(endpoint, dict) and endpoint.get("pod_name") and isinstance(ip, str) and ip
                    and clients.get(ip) is not endpoint):
                if ip not in clients and len(clients) >= _MAX_CLIENTS:
                    del clients[next(iter(clients))]
                clients[ip] = endpoint

    def _dnstap_client(self, ip: str) -> Mapping[str, Any] | None:
        """The Hubble endpoint (or pod of the pod watch) at `ip`, or None."""
        assert self._clients is not None
        endpoint = self._clients.get(ip)
        if endpoint is None and ip and self.pod_watch is not None:
            pod, _why = self.pod_watch.index.find({}, ip)
            if pod is not None:
                endpoint = {"namespace": pod.namespace, "pod_name": pod.name,
                            "labels": [f"k8s:{key}={value}" for key, value in pod.labels]}
        return endpoint

    def _dnstap_answers(self, messages: Sequence[DnstapMessage], read_at: float) -> int:
        """Learn the answers of one read of a dnstap connection (its thread; under the lock, as
        the learner is the pipeline's): for the pod that asked when its address is known, else
        for every deny selecting the name. Returns how many were attributed to a pod."""
        attributed = 0
        with self._lock:
            now = self._last_flow_time if self.options.clock == "flows" and self._last_flow_time else self.clock()
            learned: list[Change] = []
            for message in messages:
                # Only a client response's query_address is the pod; a resolver's is the server itself.
                client = self._dnstap_client(message.client_ip) if message.kind == "client-response" else None
                answer = message.dns_answer(client or {}, endpoint_key(client, message.client_ip, ""))
                learned.extend(self.learner.learn_answer(answer, now, any_client=client is None))
                self.attributor.learn_answer(answer, now)
                attributed += client is not None
            # One publish for the whole read: a group is rendered (and written) once however many
            # of the read's answers changed it, not once per answer.
            self._published(learned, read_at)
        return attributed

    def _published(self, changes: Sequence[Change], read_at: float) -> None:
        if not changes:
            return
        window = self.publisher.publish_changes(changes, read_at)
        if window is not None:
            self.metrics[metric_names.LEAK_WINDOW_SECONDS].observe(window)
        self.summary.learned_ips += sum(1 for change in changes if change.added)
        self._update_group_gauges()

    def _count(self, flow: dict[str, Any], attribution: Attribution) -> None:
        conn = attribution.connection
        if conn is None:
            return
        self.summary.verdicts += 1
        record = VerdictRecord.of(
            flow, conn, tags=attribution.policy_log, expected=attribution.expected,
            disagreements=attribution.disagreements,
        )
        self.metrics.verdict(record)
        if self.blindness is not None and self.blindness.observe(conn, flow) is not None:
            self.metrics.unexplained_destination(record.namespace, record.workload)
            self.summary.unexplained[f"{record.namespace}/{record.workload}"] += 1
        if self.staged is not None:  # decided with the staged set too; the flow is left as it is
            change = self.staged.change_given(conn, attribution.decision).value
            self.metrics.staged_verdict(change, record.namespace, record.workload)
            self.summary.staged[change] += 1
        if record.expected is None:
            return
        tag = ",".join(record.tags) or "(none)"
        self.summary.drops_by_tag[(tag, record.expected)] += 1
        self.summary.drops_by_workload[(f"{record.namespace}/{record.workload}", record.expected)] += 1
        if not record.expected and self.events.sinks:
            self.events.offer(record, self._explain(flow, attribution, conn))

    def _explain(self, flow: dict[str, Any], attribution: Attribution, conn: Connection) -> str:
        decision = self.attributor.engine.decide(conn, endpoint_labels(conn.local), explain=True)
        return render(self.attributor, flow, conn, dataclasses.replace(attribution, decision=decision), "",
                      self.blindness)

    def _update_group_gauges(self) -> None:
        self.metrics.cidr_groups(
            self.publisher.group_sizes(), self.options.group_cap,
            ((deny.rule.policy.name, len(self.state.shared.get(deny.id, {}))) for deny in self.denies),
        )

    def _periodic(self, last: dict[str, float]) -> None:
        now_mono = self.monotonic()
        self.heartbeat = now_mono
        metrics = self.metrics
        metrics.flush()
        metrics.follow_total(metric_names.PIPELINE_BUSY_SECONDS_TOTAL, self._busy_seconds)
        waiting = sum(int(getattr(sink, "waiting", 0)) for sink in self.events.sinks)
        metrics.child(metric_names.QUEUE_DEPTH, "events").set(waiting)
        if self.writes is not None:
            metrics.child(metric_names.QUEUE_DEPTH, "group-writes").set(self.writes.depth())
            metrics.child(metric_names.QUEUE_OLDEST_SECONDS, "group-writes").set(self.writes.oldest_age())
            for reason, count in self.writes.stats.failures.items():
                metrics.follow_total(metric_names.WRITE_FAILURES_TOTAL, count, "cidr-group", reason)
        source = self.source
        stats = getattr(source, "stats", None)  # a live source's own counters
        read_stats = getattr(source, "read_stats", None)  # a file source's reader
        metrics.source_health(
            source.name,
            connected=source.connected(),
            lag=max(0.0, self.clock() - self._last_flow_time) if self._last_flow_time else None,
            reconnects=int(getattr(stats, "reconnects", 0)),
            node_status=dict(getattr(stats, "node_status", {})),
            bad_lines=read_stats.bad_lines if read_stats is not None else 0,
        )
        bad_events = int(getattr(stats, "bad_events", 0))  # gRPC messages that could not be converted
        if bad_events > self.summary.bad_events:
            metrics.follow_total(metric_names.MALFORMED_INPUT_TOTAL, bad_events, source.name,
                                 metric_names.MALFORMED_EVENT)
            if now_mono - self._bad_events_reported >= 60.0:  # the first at once, then once a minute
                self._bad_events_reported = now_mono
                self.stderr.write(f"hushflow: {source.name}: {bad_events} message(s) skipped so far, they could not "
                                  f"be converted (last: {getattr(stats, 'last_bad_event', None)})\n")
            self.summary.bad_events = bad_events
        if self.ring is not None:
            served = self.ring.stats
            metrics.child(metric_names.SERVE_CLIENTS).set(served.clients)
            metrics.follow_total(metric_names.SERVE_RESPONSES_SENT_TOTAL, served.responses_sent)
            metrics.follow_total(metric_names.SERVE_LOST_EVENTS_TOTAL, served.lost_to_clients)
        if self.exporter is not None:
            self._export_metrics(self.exporter)
        if self.dnstap is not None:
            dnstap = self.dnstap.snapshot()
            metrics.child(metric_names.DNSTAP_CONNECTIONS).set(dnstap.connections)
            for kind, count in list(dnstap.messages.items()):
                metrics.follow_total(metric_names.DNSTAP_MESSAGES_TOTAL, count, kind)
            for reason, count in list(dnstap.malformed.items()):
                metrics.follow_total(metric_names.MALFORMED_INPUT_TOTAL, count, "dnstap", reason)
        watch = self.pod_watch
        if watch is not None:
            metrics.child(metric_names.POD_WATCH_UP).set(1 if watch.up else 0)
            metrics.child(metric_names.PODS_INDEXED).set(len(watch.index))
            metrics.follow_total(metric_names.MALFORMED_INPUT_TOTAL, watch.stats.bad_objects, "pod-watch",
                                 metric_names.MALFORMED_POD)
        learned = self.learner.stats
        for reason, count in learned.refused.items():
            metrics.follow_total(metric_names.DENY_IPS_REFUSED_TOTAL, count, reason)
        metrics.follow_total(metric_names.DENY_IPS_EVICTED_TOTAL, learned.evicted)
        metrics.deny_completeness(
            ((policy_label(deny), deny.id, len(learned.incomplete.get(deny.id, ()))) for deny in self.denies),
            self.state.total(), self.options.max_total,
        )
        self._journal_allowed()
        notes = self.learner.stats.notes
        for note in notes[self._notes_reported:]:
            self.stderr.write(f"hushflow: {note}\n")
        self._notes_reported = len(notes)
        if now_mono - last["expire"] >= self.options.expire_interval:
            last["expire"] = now_mono
            self._expire()
        if self.options.state_path and now_mono - last["snapshot"] >= self.options.snapshot_interval:
            last["snapshot"] = now_mono
            self._snapshot()

    def _journal_allowed(self) -> None:
        """Allowed names' IPs learned since the last journal write (not fsync'ed: the next learned
        deny IP or snapshot syncs them; they only keep the shared-IP guard's memory)."""
        if self.journal is None or not self.state.pending_allowed:
            self.state.pending_allowed.clear()
            return
        pending = self.state.take_pending_allowed()
        try:
            self.journal.append(pending, sync=False)
        except OSError as exc:
            self._disk_problem("journal", exc)

    def _expire(self) -> None:
        now = self._last_flow_time if self.options.clock == "flows" and self._last_flow_time else self.clock()
        self.learner.expire_incomplete(now)
        if self.state.expire(now):
            self.publisher.publish_all()
            self._update_group_gauges()

    def _snapshot(self) -> None:
        if not self.options.state_path:
            return
        try:
            self.state.save(self.options.state_path)
        except OSError as exc:
            self._unsaved = True
            self._disk_problem("state snapshot", exc)
            return
        self._unsaved = False
        if self.journal is not None and self.publisher.journal_ok():
            try:
                self.journal.reset()
            except OSError as exc:
                self._disk_problem("journal", exc)

    # -- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; the processing thread drains what was read, saves, and returns."""
        self.stopping.set()
        self.source.stop()

    def run(self) -> int:
        if self.writes is not None:
            self.writes.start()
        self.publisher.publish_all()
        if self.writes is not None and self._applied_names:
            # Groups this instance applied before that the state no longer needs (a deny removed,
            # resharded with another --group-cap) go: the owner label makes them this instance's.
            stale = self._applied_names - {group["metadata"]["name"] for group in self.publisher.groups()}
            if stale:
                self.writes.submit([], sorted(stale))
        self._update_group_gauges()
        # The policies, rule index and caches live as long as the run: out of the collector's
        # sight, they are not traversed again by every full collection (~2 µs a flow measured).
        gc.collect()
        gc.freeze()
        if self.pod_watch is not None:
            threading.Thread(target=self.pod_watch.run, name="hushflow-pod-watch", daemon=True).start()
            if not self.pod_watch.synced.wait(self.options.pod_sync_timeout):
                self._say("no pod list yet: named ports are unknown until it arrives")
        if self.exporter is not None:
            self.exporter.start()
        pipeline = threading.Thread(target=self._pipeline, name="hushflow-pipeline", daemon=True)
        pipeline.start()
        if self.options.resolve and self.denies:
            threading.Thread(target=self._resolve_loop, name="hushflow-resolver", daemon=True).start()
        if self.dnstap is not None:
            self.dnstap.start()
        self.ready.set()
        last = {"expire": self.monotonic(), "snapshot": self.monotonic()}
        while not self._finished.wait(0.5):
            with self._lock:
                self._periodic(last)
        pipeline.join()
        self.stopping.set()
        if self.dnstap is not None:
            self.dnstap.close()
        # The export's last lines are written (retried while the disk fails, for the drain timeout).
        export_lost = 0  # events the export file did not get (unwritten at the end, dropped, too large)
        if self.exporter is not None:
            self.exporter.close(self.options.drain_timeout)
            export_lost = sum(self.exporter.stats.not_exported.values())
        unwritten = self.writes.drain(self.options.drain_timeout) if self.writes is not None else 0
        if unwritten:
            self.stderr.write(f"hushflow: {unwritten} CIDR group write(s) did not land before the end; the state "
                              "keeps their IPs and the next start writes them again\n")
        with self._lock:
            self._periodic(last)
            self._snapshot()
            self.events.close()
            if self.journal is not None:
                self.journal.close()
            self._finish_summary()
        stats = getattr(self.source, "read_stats", None)
        if stats is not None and stats.bad_lines:
            stats.write_report(self.stderr)
        gc.unfreeze()
        # A finite run ends non-zero when input was lost: an unreadable source, skipped lines or
        # flows, values of DNS answers left out, events the --export file did not get.
        summary = self.summary
        lost = summary.bad_lines or summary.flows_skipped or summary.dns_values_rejected
        return 2 if self.source_error or lost or unwritten or self._unsaved or export_lost else 0

    def _finish_summary(self) -> None:
        windows = sorted(self.publisher.stats.leak_windows)
        if windows:
            self.summary.leak_p50 = windows[len(windows) // 2]
            self.summary.leak_p99 = windows[min(len(windows) - 1, int(len(windows) * 0.99))]
        self.summary.groups_written = self.publisher.stats.writes
        self.summary.events_sent = self.events.sent
        self.summary.ips_refused = sum(self.learner.stats.refused.values())
        if self.dnstap is not None:
            self.summary.dnstap = self.dnstap.snapshot().messages
        stats = getattr(self.source, "read_stats", None)
        if stats is not None:
            self.summary.bad_lines = stats.bad_lines


def run_daemon(
    daemon: Daemon,
    metrics_address: str,
    *,
    linger: float = 0.0,
    say: Callable[[str], None] = lambda _message: None,
) -> int:
    """Serve the probes, run `daemon` until its input ends or SIGTERM/SIGINT arrives (it then
    drains and saves), keep serving the final metrics `linger` seconds, and return the exit
    status. Raises OSError when the HTTP port cannot be served."""
    import signal

    from hushflow.app.http import serve_http

    server = serve_http(daemon, metrics_address, say=say)
    say(f"serving {server.url}/metrics, /healthz, /readyz")
    signalled = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        say(f"received {signal.Signals(signum).name}: draining and saving state")
        signalled.set()
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.setdefault("code", daemon.run()), name="hushflow-main")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if linger > 0:
        signalled.wait(linger)  # keep serving the final metrics; a signal ends the wait
    server.shutdown()
    return result.get("code", 1)



def _group_ref(name: str) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": {"name": name}}


def _apply_to_cluster(cluster: Cluster, groups: Sequence[tuple[dict[str, Any], str]],
                      deleted: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Server-side apply `groups` and delete `deleted`: the names that did not land, with a reason."""
    from hushflow.app.cluster import ClusterError

    names = [group["metadata"]["name"] for group, _text in groups] + list(deleted)
    failed: dict[str, tuple[str, str]] = {}
    try:
        results = []
        if groups:
            results.append(cluster.apply([group for group, _text in groups], prune=False))
        if deleted:
            results.append(cluster.delete_groups(deleted))
    except ClusterError as exc:
        return {name: ("api-unreachable", str(exc)) for name in names}
    for result in results:
        for problem in result.refused:
            failed[problem.ref.name] = ("refused", str(problem))
        for problem in result.failed:
            failed[problem.ref.name] = (_api_reason(problem.status), str(problem))
    return failed


def _api_reason(status: int) -> str:
    """A metric label for an API failure: `api-409`, `api-429`, `api-4xx`, `api-5xx` (or `invalid`)."""
    if status in (409, 429):
        return f"api-{status}"
    if 400 <= status < 600:
        return f"api-{status // 100}xx"
    return "invalid"
