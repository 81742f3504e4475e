"""The metrics contract in hushflow.sinks.metric_names is what prometheus_client really exposes,
and docs/operations.md documents every metric of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hushflow.sinks.metric_names import ALL_METRICS, LEAK_WINDOW_BUCKETS, MetricSpec, contract_series_names

OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _exposed_sample_names(spec: MetricSpec) -> set[str]:
    registry = CollectorRegistry()
    kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
    kwargs = {"buckets": spec.buckets} if spec.buckets else {}
    metric = kinds[spec.kind](spec.client_name, spec.help, spec.labels, registry=registry, **kwargs)
    child = metric.labels(*("x" for _ in spec.labels)) if spec.labels else metric
    if spec.kind == "counter":
        child.inc()
    elif spec.kind == "gauge":
        child.set(1)
    else:
        child.observe(0.2)
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda spec: spec.name)
def test_prometheus_client_exposes_exactly_the_contract_names(spec: MetricSpec) -> None:
    assert _exposed_sample_names(spec) == set(spec.series_names)


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda spec: spec.name)
def test_names_and_labels_are_valid(spec: MetricSpec) -> None:
    assert spec.name.startswith("hushflow_") and _NAME.match(spec.name)
    assert spec.help.strip()
    assert len(set(spec.labels)) == len(spec.labels)
    assert all(_NAME.match(label) and not label.startswith("__") for label in spec.labels)
    assert (spec.kind == "counter") == spec.name.endswith("_total")


def test_names_are_unique() -> None:
    names = [spec.name for spec in ALL_METRICS]
    assert len(names) == len(set(names))
    assert len(contract_series_names()) == sum(len(spec.series_names) for spec in ALL_METRICS)


def test_leak_window_has_a_bucket_at_the_alert_threshold() -> None:
    # HushflowLeakWindowSlow compares the p99 with 1s; histogram_quantile is exact only at boundaries.
    assert 1.0 in LEAK_WINDOW_BUCKETS and list(LEAK_WINDOW_BUCKETS) == sorted(LEAK_WINDOW_BUCKETS)


def test_every_metric_is_documented() -> None:
    text = OPERATIONS_DOC.read_text()
    missing = [spec.name for spec in ALL_METRICS if f"`{spec.name}" not in text]
    assert not missing, f"docs/operations.md does not document {missing}"
