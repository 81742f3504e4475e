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


def dropped(direction: str, l4: dict, **fields):
    flow = {"verdict": "DROPPED", "traffic_direction": direction, "source": WEB, "destination": DB,
            "IP": {"source": "10.0.0.1", "destination": "10.0.0.2"}, "l4": l4, **fields}
    conn = connection_of(flow, 1.0)
    assert conn is not None
    return VerdictRecord.of(flow, conn, tags=(), expected=False)


@pytest.mark.parametrize(
    ("direction", "l4", "fields", "reply"),
    [
        # cilium#41045: a database's mid-stream answer dropped at the client's ingress.
        ("INGRESS", {"TCP": {"source_port": 3306, "destination_port": 45678, "flags": {"PSH": True, "ACK": True}}},
         {}, True),
        ("INGRESS", {"TCP": {"source_port": 443, "destination_port": 45678, "flags": {"SYN": True, "ACK": True}}},
         {}, True),
        ("EGRESS", {"TCP": {"source_port": 8080, "destination_port": 51000, "flags": {"FIN": True, "ACK": True}}},
         {}, True),
        ("EGRESS", {"TCP": {"source_port": 8080, "destination_port": 51000, "flags": {"RST": True}}}, {}, True),
        # kube-dns's answer: UDP from port 53 to an ephemeral port.
        ("INGRESS", {"UDP": {"source_port": 53, "destination_port": 40123}}, {}, True),
        # Hubble marked it a reply.
        ("INGRESS", {"TCP": {"source_port": 5432, "destination_port": 40000}}, {"is_reply": True}, True),
        # Connection attempts: a lone SYN, UDP to a server port, no flags known, ICMP.
        ("EGRESS", {"TCP": {"source_port": 50000, "destination_port": 443, "flags": {"SYN": True}}}, {}, False),
        ("EGRESS", {"UDP": {"source_port": 40123, "destination_port": 53}}, {}, False),
        ("EGRESS", {"UDP": {"source_port": 53, "destination_port": 5353}}, {}, False),
        ("EGRESS", {"TCP": {"source_port": 50000, "destination_port": 443}}, {}, False),
        ("EGRESS", {"ICMPv4": {"type": 8}}, {}, False),
        ("EGRESS", {"TCP": {"source_port": 50000, "destination_port": 443, "flags": "ACK"}}, {}, False),
    ],
)
def test_a_drop_that_continues_a_connection_is_a_reply(direction, l4, fields, reply):
    assert dropped(direction, l4, **fields).reply is reply


def test_reply_drops_are_counted_apart_from_connection_attempts():
    from prometheus_client import CollectorRegistry

    from hushflow.sinks.metrics import HushflowMetrics

    registry = CollectorRegistry()
    metrics = HushflowMetrics(registry)
    metrics.verdict(dropped("INGRESS", {"UDP": {"source_port": 53, "destination_port": 40123}}))
    metrics.verdict(dropped("EGRESS", {"TCP": {"source_port": 50000, "destination_port": 5432,
                                               "flags": {"SYN": True}}}))
    metrics.flush()
    assert registry.get_sample_value("hushflow_unexpected_drops_total", {
        "namespace": "shop", "workload": "web", "direction": "egress", "destination": "data/db-7f9c",
        "reply": "false"}) == 1
    assert registry.get_sample_value("hushflow_unexpected_drops_total", {
        "namespace": "data", "workload": "db-7f9c", "direction": "ingress", "destination": "shop/web",
        "reply": "true"}) == 1
