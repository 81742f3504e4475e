"""A VerdictRecord is the verdict as every sink sees it: the enforcing side and the peer, named once."""

from __future__ import annotations

import pytest

from hushflow.flow.connection import connection_of
from hushflow.sinks.records import VerdictRecord

WEB = {"namespace": "shop", "pod_name": "web-0", "workloads": [{"name": "web", "kind": "Deployment"}]}
DB = {"namespace": "data", "pod_name": "db-7f9c"}


def verdict(direction: str, **fields):
    flow = {
        "verdict": "DROPPED", "traffic_direction": direction, "IP": {"source": "10.0.0.1", "destination": "10.0.0.2"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": 5432}}, **fields,
    }
    conn = connection_of(flow, 12.5)
    assert conn is not None
    return VerdictRecord.of(flow, conn, tags=("tag",), expected=False)


@pytest.mark.parametrize(
    ("direction", "fields", "namespace", "workload", "destination"),
    [
        ("EGRESS", {"source": WEB, "destination": DB}, "shop", "web", "data/db-7f9c"),
        ("INGRESS", {"source": WEB, "destination": DB}, "data", "db-7f9c", "shop/web"),
        ("EGRESS", {"source": WEB, "destination": {"identity": 2}, "destination_names": ["api.example.com"]},
         "shop", "web", "api.example.com"),
        ("EGRESS", {"source": WEB, "destination": {"identity": 2}}, "shop", "web", "world"),
    ],
)
def test_the_enforcing_side_and_the_peer(direction, fields, namespace, workload, destination):
    record = verdict(direction, **fields)
    assert (record.namespace, record.workload, record.destination) == (namespace, workload, destination)
    assert record.time == 12.5 and record.verdict == "DROPPED" and record.tags == ("tag",)
    assert record.connection.port == 5432 and record.disagreements == ()


def test_every_kind_of_disagreement_a_record_carries_is_counted():
    from prometheus_client import CollectorRegistry

    from hushflow.sinks.metrics import HushflowMetrics

    flow = {"verdict": "DROPPED", "traffic_direction": "EGRESS", "source": WEB, "destination": DB,
            "IP": {"source": "10.0.0.1", "destination": "10.0.0.2"}, "l4": {"TCP": {"destination_port": 5432}}}
    conn = connection_of(flow, 1.0)
    assert conn is not None
    record = VerdictRecord.of(flow, conn, tags=(), expected=False,
                              disagreements=("dropped/allowed", "policy_log completed"))
    registry = CollectorRegistry()
    metrics = HushflowMetrics(registry)
    metrics.verdict(record)
    metrics.flush()
    for kind in ("dropped/allowed", "policy_log completed"):
        assert registry.get_sample_value("hushflow_attribution_disagreements_total", {"kind": kind}) == 1
