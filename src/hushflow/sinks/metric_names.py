"""The metrics contract: every series `hushflow run` exports on :9965/metrics.

The daemon builds its prometheus_client collectors from these specs, and everything under
`deploy/` (alert rules, promtool tests, the Grafana dashboard, docs/operations.md) is checked
against them by `tests/deploy/`, so a renamed metric or label breaks a test instead of a
dashboard in production.

`MetricSpec.name` is the name as scraped. For counters it ends in `_total`, which is what
prometheus_client exposes whether the collector is created with or without the suffix
(`Counter("hushflow_flows", ...)` and `Counter("hushflow_flows_total", ...)` both expose
`hushflow_flows_total`); `MetricSpec.client_name` is the name to give the collector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hushflow.flow.connection import WORLD

MetricKind = Literal["counter", "gauge", "histogram"]

METRICS_PORT = 9965
METRICS_PATH = "/metrics"
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"

DEFAULT_CIDR_GROUP_CAPACITY = 1000

# Label values with a fixed vocabulary.
FLOW_TYPES = ("policy-verdict", "drop", "l7", "trace", "other")
EXPECTED_TRUE = "true"
EXPECTED_FALSE = "false"
# `reply` of UNEXPECTED_DROPS_TOTAL.
REPLY_TRUE = "true"
REPLY_FALSE = "false"
# `expected` is only meaningful for these verdicts; other verdicts carry expected="".
VERDICTS_WITH_EXPECTATION = ("DROPPED", "AUDIT")
TAG_SEPARATOR = ","
# `destination` of an unexpected drop whose peer is neither a known FQDN nor a pod.
DESTINATION_WORLD = WORLD

# DNS answer read -> CIDR group holding its IPs written. 1 s is a bucket boundary on purpose:
# the HushflowLeakWindowSlow alert compares the p99 with 1 s, and histogram_quantile is only
# exact at boundaries.
LEAK_WINDOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def client_name(self) -> str:
        """The name to pass to prometheus_client (it appends `_total` to counters itself)."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    @property
    def series_names(self) -> tuple[str, ...]:
        """Every sample name this metric puts on /metrics; PromQL may select any of them.

        prometheus_client also exposes `<name>_created` for counters and histograms; it is
        listed so a query that uses it is not mistaken for one outside the contract.
        """
        if self.kind == "counter":
            return (self.name, self.client_name + "_created")
        if self.kind == "histogram":
            return tuple(self.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)


FLOWS_TOTAL = MetricSpec(
    "hushflow_flows_total",
    "counter",
    "Hubble flows read, by flow type (policy-verdict, drop, l7, trace, other) and verdict.",
    ("type", "verdict"),
)
POLICY_VERDICTS_TOTAL = MetricSpec(
    "hushflow_policy_verdicts_total",
    "counter",
    "Policy verdicts and drops after attribution. tag: the flow's policy_log joined with ',' "
    "('' when none); expected: 'true'/'false' for DROPPED and AUDIT, '' otherwise; namespace and "
    "workload of the enforcing endpoint.",
    ("direction", "namespace", "workload", "verdict", "tag", "expected"),
)
UNEXPECTED_DROPS_TOTAL = MetricSpec(
    "hushflow_unexpected_drops_total",
    "counter",
    "DROPPED and AUDIT verdicts no policy planned. destination: the peer's FQDN, else the peer's "
    "namespace/workload, else 'world'. reply: 'true' when the dropped packet continues a connection (TCP "
    "ACK/RST/FIN, UDP from a port below 1024 to an ephemeral one; cilium#41045), which the alerts leave out.",
    ("direction", "namespace", "workload", "destination", "reply"),
)
STAGED_VERDICTS_TOTAL = MetricSpec(
    "hushflow_staged_verdicts_total",
    "counter",
    "Policy verdicts evaluated against the staged policies of --staged beside the enforced ones (enforcement "
    "unchanged): change is newly-dropped, newly-allowed, tag-lost, tag-changed or unchanged; namespace and "
    "workload of the endpoint the decision is for.",
    ("change", "namespace", "workload"),
)
UNEXPLAINED_DESTINATIONS_TOTAL = MetricSpec(
    "hushflow_unexplained_destinations_total",
    "counter",
    "Connections an endpoint an FQDN deny selects opened on the denied ports to a world IP no DNS answer "
    "hushflow learned explains (no Hubble DNS, dnstap or pre-resolution; within TTL + grace): the deny cannot "
    "see the name used (NodeLocal DNS, DoH, a hard-coded IP) and may be leaking. namespace and workload of the "
    "endpoint, bounded like the verdicts'.",
    ("namespace", "workload"),
)
#: The `change` values of STAGED_VERDICTS_TOTAL (hushflow.engine.replay.Change), most severe first.
STAGED_CHANGES = ("newly-dropped", "newly-allowed", "tag-lost", "tag-changed", "unchanged")
DNS_ANSWERS_TOTAL = MetricSpec(
    "hushflow_dns_answers_total",
    "counter",
    "DNS answers learned from Hubble flows.",
)
DNSTAP_MESSAGES_TOTAL = MetricSpec(
    "hushflow_dnstap_messages_total",
    "counter",
    "dnstap messages from DNS servers (run --dnstap), by kind: learned (an answer for a pod known by its "
    "address), unattributed (learned for every deny selecting the name: no flow or pod names the address "
    "that asked), ignored (a query, a failure, no address), malformed (no dnstap message: the sender is "
    "disconnected; or an unusable DNS payload: skipped).",
    ("kind",),
)
DNSTAP_CONNECTIONS = MetricSpec(
    "hushflow_dnstap_connections",
    "gauge",
    "DNS servers connected to the --dnstap sockets now (0 while none sends: nothing is learned from dnstap).",
    (),
)
CIDR_GROUP_IPS = MetricSpec(
    "hushflow_cidr_group_ips",
    "gauge",
    "IPs currently written to a CiliumCIDRGroup that backs an FQDN deny.",
    ("group", "policy"),
)
CIDR_GROUP_CAPACITY = MetricSpec(
    "hushflow_cidr_group_capacity",
    "gauge",
    f"Most IPs a CiliumCIDRGroup may hold (default {DEFAULT_CIDR_GROUP_CAPACITY}).",
    ("group",),
)
SHARED_IPS_SKIPPED = MetricSpec(
    "hushflow_shared_ips_skipped",
    "gauge",
    "IPs kept out of a deny because an allowed name resolves to them too (shared CDN IPs).",
    ("policy",),
)
LEAK_WINDOW_SECONDS = MetricSpec(
    "hushflow_leak_window_seconds",
    "histogram",
    "Seconds from reading a DNS answer for a denied name to writing the CIDR group that holds its IPs.",
    buckets=LEAK_WINDOW_BUCKETS,
)
SOURCE_CONNECTED = MetricSpec(
    "hushflow_source_connected",
    "gauge",
    "1 while the flow source (Hubble Relay or the node's Hubble socket) is connected, else 0.",
    ("source",),
)
SOURCE_LAG_SECONDS = MetricSpec(
    "hushflow_source_lag_seconds",
    "gauge",
    "Seconds between the newest flow's timestamp and the time hushflow read it.",
    ("source",),
)
SOURCE_RECONNECTS_TOTAL = MetricSpec(
    "hushflow_source_reconnects_total",
    "counter",
    "Reconnections to the flow source.",
    ("source",),
)
MALFORMED_INPUT_TOTAL = MetricSpec(
    "hushflow_malformed_input_total",
    "counter",
    "Input hushflow left out: lines that could not be parsed, flows it could not process, DNS answer values "
    "that are no valid IP or TTL.",
    ("source", "reason"),
)
#: The `reason` of a malformed line and of a flow the pipeline could not process (DNS answer values
#: have theirs in hushflow.flow.dns).
MALFORMED_LINE = "unreadable-line"
MALFORMED_FLOW = "unprocessable-flow"
MALFORMED_EVENT = "unconvertible-message"  # a gRPC message of the flow stream with no JSON form
MALFORMED_POD = "unreadable-pod"  # a pod object (or watch event) of --watch-pods of the wrong shape
DENY_IPS_REFUSED_TOTAL = MetricSpec(
    "hushflow_deny_ips_refused_total",
    "counter",
    "Addresses a DNS answer gave for a denied name that hushflow refuses to deny (loopback, link-local, the DNS "
    "server, protected ranges: see --protect-cidr).",
    ("reason",),
)
DENY_IPS_EVICTED_TOTAL = MetricSpec(
    "hushflow_deny_ips_evicted_total",
    "counter",
    "IPs taken out of an FQDN deny because their name resolved to more IPs than --max-ips-per-name "
    "(the least recently seen go first).",
    (),
)
DENY_INCOMPLETE_IPS = MetricSpec(
    "hushflow_deny_incomplete_ips",
    "gauge",
    "IPs a denied name resolved to that are NOT denied because the global limit (--max-total) is reached: "
    "above 0, the deny is incomplete.",
    ("policy", "deny"),
)
DENY_IPS = MetricSpec(
    "hushflow_deny_ips",
    "gauge",
    "IPs all FQDN denies hold together, and the global limit (--max-total) they may not pass.",
    ("kind",),
)
HUBBLE_LOST_EVENTS_TOTAL = MetricSpec(
    "hushflow_hubble_lost_events_total",
    "counter",
    "Events Hubble reported lost (ring buffer overrun, relay queue) before hushflow could read them.",
    ("source",),
)
NODE_STATUS_CHANGES_TOTAL = MetricSpec(
    "hushflow_node_status_changes_total",
    "counter",
    "Node status events from Hubble Relay (a node connected, became unavailable, ...), by state.",
    ("state",),
)
QUEUE_DEPTH = MetricSpec(
    "hushflow_queue_depth",
    "gauge",
    "Items waiting in an internal queue (events: unexpected-drop events waiting for a webhook; group-writes: "
    "CIDR groups waiting to be accepted by the API server or written to --out).",
    ("queue",),
)
QUEUE_OLDEST_SECONDS = MetricSpec(
    "hushflow_queue_oldest_seconds",
    "gauge",
    "Seconds the oldest item of an internal queue has waited (group-writes: a CIDR group write not yet "
    "accepted; it grows while the API server or the disk fails).",
    ("queue",),
)
WRITE_FAILURES_TOTAL = MetricSpec(
    "hushflow_write_failures_total",
    "counter",
    "Writes that failed and are retried: CIDR groups (to --out or the API server), the state snapshot, "
    "the journal, the --export file (target export); by reason (disk, api-unreachable, api-429, api-409, "
    "api-5xx, api-4xx, refused).",
    ("target", "reason"),
)
POD_WATCH_UP = MetricSpec(
    "hushflow_pod_watch_up",
    "gauge",
    "1 while the pod watch of --watch-pods is listed and watching; 0 while its requests fail (it retries): "
    "named ports then resolve from the pods known so far, and those it does not know are explained as unknown.",
    (),
)
PODS_INDEXED = MetricSpec(
    "hushflow_pods_indexed",
    "gauge",
    "Pods whose container ports hushflow knows (--watch-pods), for named ports.",
    (),
)
SERVE_CLIENTS = MetricSpec(
    "hushflow_serve_clients",
    "gauge",
    "GetFlows calls open on the Observer API of --serve (hubble observe, Hubble UI, a Relay).",
    (),
)
SERVE_RESPONSES_SENT_TOTAL = MetricSpec(
    "hushflow_serve_responses_sent_total",
    "counter",
    "GetFlowsResponse messages sent by --serve: flows, the node_status each call starts with, lost_events.",
    (),
)
SERVE_LOST_EVENTS_TOTAL = MetricSpec(
    "hushflow_serve_lost_events_total",
    "counter",
    "Flows that following --serve clients fell too far behind the ring to receive (each such client was "
    "sent a lost_events message saying how many, as Hubble does); the pipeline never waits for a client. "
    "Raise --serve-buffer-capacity or find the slow client.",
    (),
)
PIPELINE_BUSY_SECONDS_TOTAL = MetricSpec(
    "hushflow_pipeline_busy_seconds_total",
    "counter",
    "Seconds the pipeline spent processing flows rather than waiting for them: its rate is the "
    "share of one core in use, and near 1 hushflow is falling behind Hubble.",
    (),
)
ATTRIBUTION_DISAGREEMENTS_TOTAL = MetricSpec(
    "hushflow_attribution_disagreements_total",
    "counter",
    "Flows where Cilium's own policy fields disagree with hushflow's attribution (Cilium's win), by kind.",
    ("kind",),
)
EXPORTED_FLOWS_TOTAL = MetricSpec(
    "hushflow_exported_flows_total",
    "counter",
    "Enriched flows written to the --export file (after its allow/deny filters).",
    (),
)
EXPORT_ERRORS_TOTAL = MetricSpec(
    "hushflow_export_errors_total",
    "counter",
    "Events the --export file did not get, by reason: backlog-full (writes failed so long that the lines "
    "waiting filled the backlog), too-large (a line longer than --export-max-size-mb), unencodable (no valid "
    "Hubble event), unwritten-at-exit (writes still failing when the run ended).",
    ("reason",),
)
EVENTS_EMITTED_TOTAL = MetricSpec(
    "hushflow_events_emitted_total",
    "counter",
    "Alert events handed to a sink, by sink and outcome.",
    ("sink", "outcome"),
)
SERVE_TLS_RELOAD_ERRORS_TOTAL = MetricSpec(
    "hushflow_serve_tls_reload_errors_total",
    "counter",
    "Changed --serve-tls-* files that did not load (half written, a key that does not match its certificate, "
    "gone): --serve goes on with the last good certificate, which may expire; fix the files.",
    (),
)
BUILD_INFO = MetricSpec(
    "hushflow_build_info",
    "gauge",
    "Always 1; the version label says which hushflow is running.",
    ("version",),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    FLOWS_TOTAL,
    POLICY_VERDICTS_TOTAL,
    UNEXPECTED_DROPS_TOTAL,
    STAGED_VERDICTS_TOTAL,
    UNEXPLAINED_DESTINATIONS_TOTAL,
    DNS_ANSWERS_TOTAL,
    DNSTAP_MESSAGES_TOTAL,
    DNSTAP_CONNECTIONS,
    CIDR_GROUP_IPS,
    CIDR_GROUP_CAPACITY,
    SHARED_IPS_SKIPPED,
    DENY_IPS_EVICTED_TOTAL,
    DENY_INCOMPLETE_IPS,
    DENY_IPS,
    QUEUE_OLDEST_SECONDS,
    WRITE_FAILURES_TOTAL,
    LEAK_WINDOW_SECONDS,
    SOURCE_CONNECTED,
    SOURCE_LAG_SECONDS,
    SOURCE_RECONNECTS_TOTAL,
    MALFORMED_INPUT_TOTAL,
    DENY_IPS_REFUSED_TOTAL,
    HUBBLE_LOST_EVENTS_TOTAL,
    NODE_STATUS_CHANGES_TOTAL,
    QUEUE_DEPTH,
    PIPELINE_BUSY_SECONDS_TOTAL,
    POD_WATCH_UP,
    PODS_INDEXED,
    SERVE_CLIENTS,
    SERVE_RESPONSES_SENT_TOTAL,
    SERVE_LOST_EVENTS_TOTAL,
    ATTRIBUTION_DISAGREEMENTS_TOTAL,
    EVENTS_EMITTED_TOTAL,
    EXPORTED_FLOWS_TOTAL,
    EXPORT_ERRORS_TOTAL,
    SERVE_TLS_RELOAD_ERRORS_TOTAL,
    BUILD_INFO,
)


def contract_series_names() -> frozenset[str]:
    """Every sample name the daemon exports: what dashboards and rules may select."""
    return frozenset(series for spec in ALL_METRICS for series in spec.series_names)
