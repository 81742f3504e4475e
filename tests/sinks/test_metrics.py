"""Counters that follow totals kept elsewhere (a source's reconnects, a reader's bad lines)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hushflow.sinks import metric_names
from hushflow.sinks.metrics import HushflowMetrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_followed_total_adds_only_its_increase_and_never_goes_back():
    registry = CollectorRegistry()
    metrics = HushflowMetrics(registry)
    for total in (2, 2, 5, 3):  # 3: a restarted source's count; a counter never decreases
        metrics.follow_total(metric_names.SOURCE_RECONNECTS_TOTAL, total, "relay")
    assert value(registry, "hushflow_source_reconnects_total", source="relay") == 5
    metrics.follow_total(metric_names.PIPELINE_BUSY_SECONDS_TOTAL, 1.5)  # a counter without labels
    assert value(registry, "hushflow_pipeline_busy_seconds_total") == 1.5


def test_source_health_sets_the_gauges_and_follows_the_counters():
    registry = CollectorRegistry()
    metrics = HushflowMetrics(registry)
    metrics.source_health("relay", connected=False, lag=None, reconnects=1, node_status={"NODE_GONE": 2},
                          bad_lines=4)
    assert value(registry, "hushflow_source_connected", source="relay") == 0
    assert value(registry, "hushflow_source_lag_seconds", source="relay") is None  # no flow yet
    assert value(registry, "hushflow_node_status_changes_total", state="NODE_GONE") == 2
    assert value(registry, "hushflow_malformed_input_total", source="relay", reason="unreadable-line") == 4
    metrics.source_health("relay", connected=True, lag=0.25, reconnects=1, node_status={}, bad_lines=4)
    assert value(registry, "hushflow_source_connected", source="relay") == 1
    assert value(registry, "hushflow_source_lag_seconds", source="relay") == 0.25
    assert value(registry, "hushflow_malformed_input_total", source="relay", reason="unreadable-line") == 4


def test_the_reconnects_counter_exists_at_zero_before_the_first_reconnect():
    # The restart window of the alert rules is increase(hushflow_source_reconnects_total[10m]) > 0:
    # a counter that first appeared at 1 would hide the first reconnect from increase().
    registry = CollectorRegistry()
    metrics = HushflowMetrics(registry)
    metrics.source_health("unix:///var/run/cilium/hubble.sock", connected=True, lag=None, reconnects=0,
                          node_status={}, bad_lines=0)
    assert value(registry, "hushflow_source_reconnects_total", source="unix:///var/run/cilium/hubble.sock") == 0
