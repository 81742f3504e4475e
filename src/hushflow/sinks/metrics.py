"""Prometheus metrics of `hushflow run`, built from the contract in `metric_names`.

Label values that come from flows (namespace, workload, tag, destination) are bounded like
Hubble's metric context options: `max_series` distinct value combinations per metric, after
which new combinations are folded into `_other` (and counted), so a noisy cluster cannot blow
up Prometheus. Everything lives in one `CollectorRegistry` passed in — no global registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hushflow import __version__
from hushflow.sinks import metric_names
from hushflow.sinks.records import VerdictRecord

OTHER = "_other"
_EVENT_TYPES = {5: "policy-verdict", 1: "drop", 129: "l7", 4: "trace"}
_FLOWS_TOTAL = metric_names.FLOWS_TOTAL.name


CONTEXT_LABELS = ("namespace", "workload", "destination", "tag")


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    max_series: int = 2000
    # Which flow-derived labels to fill; the others stay "" (like Hubble's metric context options).
    context: frozenset[str] = frozenset(CONTEXT_LABELS)

    @classmethod
    def parse_context(cls, text: str, max_series: int = 2000) -> MetricsOptions:
        """`namespace,workload` -> the labels to fill. Raises ValueError naming a wrong one."""
        wanted = {part.strip() for part in text.split(",") if part.strip()}
        unknown = sorted(wanted - set(CONTEXT_LABELS))
        if unknown:
            raise ValueError(f"unknown metric label {', '.join(unknown)}: choose from {', '.join(CONTEXT_LABELS)}")
        return cls(max_series, frozenset(wanted))


class _Bounded:
    """Caps the distinct label combinations of one metric."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[tuple[str, ...]] = set()
        self.folded = 0

    def __call__(self, values: tuple[str, ...], foldable: tuple[int, ...]) -> tuple[str, ...]:
        if values in self.seen:
            return values
        if len(self.seen) < self.limit:
            self.seen.add(values)
            return values
        self.folded += 1
        folded = tuple(OTHER if index in foldable else value for index, value in enumerate(values))
        self.seen.add(folded)
        return folded


def _build(spec: metric_names.MetricSpec, registry: CollectorRegistry) -> Any:
    if spec.kind == "counter":
        return Counter(spec.client_name, spec.help, spec.labels, registry=registry)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.help, spec.labels, registry=registry)
    return Histogram(spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=registry)


class HushflowMetrics:
    def __init__(self, registry: CollectorRegistry, options: MetricsOptions | None = None) -> None:
        self.registry = registry
        self.options = options or MetricsOptions()
        self.c = {spec.name: _build(spec, registry) for spec in metric_names.ALL_METRICS}
        self.c[metric_names.BUILD_INFO.name].labels(version=__version__).set(1)
        self._verdicts = _Bounded(self.options.max_series)
        self._unexpected = _Bounded(self.options.max_series)
        self._staged = _Bounded(self.options.max_series)
        self._unexplained = _Bounded(self.options.max_series)
        # prometheus_client's labels() costs microseconds: keep the children per label values.
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        # Per-flow counts wait here until flush() (prometheus_client's inc() takes a lock and
        # costs ~1.5 µs; three per flow were a tenth of the daemon's time).
        self._pending: dict[tuple[str, tuple[str, ...]], int] = {}
        # Cumulative totals kept by other parts (a source's reconnects, a reader's bad lines),
        # as last carried into a counter.
        self._totals: dict[tuple[str, tuple[str, ...]], float] = {}

    def __getitem__(self, spec: metric_names.MetricSpec) -> Any:
        return self.c[spec.name]

    def child(self, spec: metric_names.MetricSpec, *values: str) -> Any:
        """The time series of `spec` with these label values (cached)."""
        key = (spec.name, values)
        found = self._children.get(key)
        if found is None:
            metric = self.c[spec.name]
            found = self._children[key] = metric.labels(*values) if values else metric
        return found

    def add(self, spec: metric_names.MetricSpec, *values: str) -> None:
        """Count one for the series of counter `spec` with these label values, at the next
        :meth:`flush`. Not thread-safe: one thread counts, and flushes or lets flush under its lock."""
        key = (spec.name, values)
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1

    def flush(self) -> None:
        """Move the counts of :meth:`add` into the Prometheus counters."""
        pending, self._pending = self._pending, {}
        children = self._children
        for key, count in pending.items():
            found = children.get(key)
            if found is None:
                metric = self.c[key[0]]
                found = children[key] = metric.labels(*key[1]) if key[1] else metric
            found.inc(count)

    def flow_read(self, flow: Mapping[str, Any]) -> None:
        kind = _EVENT_TYPES.get((flow.get("event_type") or {}).get("type", 0), "other")
        key = (_FLOWS_TOTAL, (kind, flow.get("verdict", "VERDICT_UNKNOWN")))  # add(), inlined: every flow
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1

    def verdict(self, record: VerdictRecord) -> None:
        direction = record.connection.direction
        context = self.options.context
        namespace = record.namespace if "namespace" in context else ""
        workload = record.workload if "workload" in context else ""
        tag = metric_names.TAG_SEPARATOR.join(record.tags) if "tag" in context else ""
        expected = ""
        if record.expected is not None:
            expected = metric_names.EXPECTED_TRUE if record.expected else metric_names.EXPECTED_FALSE
        labels = self._verdicts((direction, namespace, workload, record.verdict, tag, expected), foldable=(1, 2, 4))
        self.add(metric_names.POLICY_VERDICTS_TOTAL, *labels)
        if record.expected is False:
            destination = record.destination if "destination" in context else ""
            reply = metric_names.REPLY_TRUE if record.reply else metric_names.REPLY_FALSE
            labels = self._unexpected((direction, namespace, workload, destination, reply), foldable=(1, 2, 3))
            self.add(metric_names.UNEXPECTED_DROPS_TOTAL, *labels)
        for kind in record.disagreements:
            self.add(metric_names.ATTRIBUTION_DISAGREEMENTS_TOTAL, kind)

    def staged_verdict(self, change: str, namespace: str, workload: str) -> None:
        """Count one flow evaluated against the staged policies (`run --staged`): `change` is how
        the staged verdict differs from the enforced one; namespace and workload are bounded like
        the verdicts' (--metric-labels, --max-series)."""
        context = self.options.context
        labels = self._staged((change, namespace if "namespace" in context else "",
                               workload if "workload" in context else ""), foldable=(1, 2))
        self.add(metric_names.STAGED_VERDICTS_TOTAL, *labels)

    def unexplained_destination(self, namespace: str, workload: str) -> None:
        """Count one connection no DNS answer explains (engine.blindness), for the endpoint that
        opened it; namespace and workload are bounded like the verdicts' (--metric-labels, --max-series)."""
        context = self.options.context
        labels = self._unexplained((namespace if "namespace" in context else "",
                                    workload if "workload" in context else ""), foldable=(0, 1))
        self.add(metric_names.UNEXPLAINED_DESTINATIONS_TOTAL, *labels)

    def follow_total(self, spec: metric_names.MetricSpec, total: float, *values: str) -> None:
        """Bring counter `spec` (with these label values) up to `total`, a cumulative count kept
        elsewhere (a source's reconnects, a reader's bad lines): only the increase is added."""
        key = (spec.name, values)
        increase = total - self._totals.get(key, 0.0)
        if increase > 0:
            self.child(spec, *values).inc(increase)
            self._totals[key] = total

    def source_health(self, source: str, *, connected: bool, lag: float | None, reconnects: int,
                      node_status: Mapping[str, int], bad_lines: int) -> None:
        """A flow source's state: connected, how far behind (None: no flow yet), and its counters."""
        self.child(metric_names.SOURCE_CONNECTED, source).set(1 if connected else 0)
        # At 0 before the first reconnect: the alerts' restart window is increase() > 0, and a
        # counter that first appears at 1 shows no increase.
        self.child(metric_names.SOURCE_RECONNECTS_TOTAL, source)
        if lag is not None:
            self.child(metric_names.SOURCE_LAG_SECONDS, source).set(lag)
        self.follow_total(metric_names.SOURCE_RECONNECTS_TOTAL, reconnects, source)
        for state, count in node_status.items():
            self.follow_total(metric_names.NODE_STATUS_CHANGES_TOTAL, count, state)
        self.follow_total(metric_names.MALFORMED_INPUT_TOTAL, bad_lines, source, metric_names.MALFORMED_LINE)

    def cidr_groups(self, sizes: Iterable[tuple[str, str, int]], capacity: int,
                    shared_by_policy: Iterable[tuple[str, int]]) -> None:
        """Each CIDR group's size (group, policy, IPs) and capacity, and the IPs each policy's
        denies keep out because an allowed name shares them."""
        ips = self[metric_names.CIDR_GROUP_IPS]
        capacities = self[metric_names.CIDR_GROUP_CAPACITY]
        for name, policy, count in sizes:
            ips.labels(group=name, policy=policy).set(count)
            capacities.labels(group=name).set(capacity)
        shared = self[metric_names.SHARED_IPS_SKIPPED]
        for policy, count in shared_by_policy:
            shared.labels(policy=policy).set(count)

    def deny_completeness(self, incomplete: Iterable[tuple[str, str, int]], held: int, limit: int) -> None:
        """Per deny (policy, deny id, IPs not denied for the global limit: 0 when complete), and
        the IPs all denies hold against that limit."""
        gauge = self[metric_names.DENY_INCOMPLETE_IPS]
        for policy, deny, missing in incomplete:
            gauge.labels(policy=policy, deny=deny).set(missing)
        totals = self[metric_names.DENY_IPS]
        totals.labels(kind="held").set(held)
        totals.labels(kind="limit").set(limit)

    @property
    def folded(self) -> int:
        return self._verdicts.folded + self._unexpected.folded + self._staged.folded + self._unexplained.folded
