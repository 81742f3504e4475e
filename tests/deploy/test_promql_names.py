"""The metric-name extraction the contract checks rely on, pinned on the constructs we use."""

from __future__ import annotations

import pytest

from tests.deploy.promql import metric_names

CASES = [
    ("plain selector", 'hushflow_dns_answers_total', {"hushflow_dns_answers_total"}),
    (
        "label matchers with metric-like values are not names",
        'rate(hushflow_flows_total{type="policy-verdict", verdict=~"up|sum"}[5m])',
        {"hushflow_flows_total"},
    ),
    (
        "grouping labels are not names",
        "sum by (namespace, workload) (rate(hushflow_unexpected_drops_total[$__rate_interval]))",
        {"hushflow_unexpected_drops_total"},
    ),
    (
        "binary operation with on() and group_left()",
        "sum by (group) (hushflow_cidr_group_ips) / on (group) group_left (policy) max by (group) "
        "(hushflow_cidr_group_capacity)",
        {"hushflow_cidr_group_ips", "hushflow_cidr_group_capacity"},
    ),
    (
        "histogram_quantile with le grouping and a number",
        "histogram_quantile(0.99, sum by (le) (rate(hushflow_leak_window_seconds_bucket[5m])))",
        {"hushflow_leak_window_seconds_bucket"},
    ),
    ("topk, offset and bool", "topk(10, up offset 5m) > bool 1e3", {"up"}),
    ("recording rule names with colons", "instance:hushflow_leak_window_seconds:p99_rate5m > 1",
     {"instance:hushflow_leak_window_seconds:p99_rate5m"}),
    ("absent and unless on ()", 'absent(up{job="x"}) unless on () (up == 0)', {"up"}),
]


@pytest.mark.parametrize(("expr", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_metric_names(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected
