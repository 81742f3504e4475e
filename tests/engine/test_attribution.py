"""Attribution: what is filled, what is never overwritten, expected vs unexpected."""

from __future__ import annotations

import pytest

from hushflow.engine.attribution import Attributor
from tests.engine.conftest import WORLD, flow, pod
from tests.engine.test_decision import CLUSTERWIDE_DENY, DB_ALLOW, FQDN_ALLOW, FQDN_DENY, WEB, cnp

APP = pod("shop", "web", 1001)
DB = pod("shop", "db", 1002)
TELEMETRY = {"dst_ip": "198.51.100.1", "names": ["a.telemetry.example.com"]}
SECOND_DENY = cnp("block-2", WEB + '  egressDeny:\n  - toEntities: [world]\n    toPorts: [{ports: [{port: "443"}]}]\n'
                  "  log: {value: another-tag}\n")


def test_policy_verdict_drop_gets_denied_by_and_policy_log(policies):
    attributor = Attributor(policies(FQDN_DENY, FQDN_ALLOW))
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    attribution = attributor.observe(event)
    f = event["flow"]
    assert f["policy_log"] == ["blocked"]
    (policy,) = f["egress_denied_by"]
    assert list(policy) == ["name", "namespace", "labels", "kind"]  # proto field order
    assert policy["name"] == "block" and policy["namespace"] == "shop" and policy["kind"] == "CiliumNetworkPolicy"
    assert "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy" in policy["labels"]
    assert attribution.filled == ("egress_denied_by", "policy_log")
    assert attribution.expected is True


def test_drop_notifications_are_attributed_too(policies):
    attributor = Attributor(policies(FQDN_DENY))
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", event_type=1, **TELEMETRY)
    assert attributor.observe(event).expected is True
    assert event["flow"]["policy_log"] == ["blocked"]


def test_policy_log_is_sorted_and_deduplicated(policies):
    attributor = Attributor(policies(FQDN_DENY, SECOND_DENY, SECOND_DENY.replace("block-2", "block-3")))
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    attributor.observe(event)
    assert event["flow"]["policy_log"] == ["another-tag", "blocked"]
    assert [p["name"] for p in event["flow"]["egress_denied_by"]] == ["block", "block-2", "block-3"]


def test_cilium_fields_are_never_overwritten_and_disagreement_is_counted(policies):
    attributor = Attributor(policies(FQDN_DENY))
    cilium = [{"name": "something-else", "namespace": "shop", "kind": "CiliumNetworkPolicy"}]
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", egress_denied_by=cilium,
                 policy_log=["cilium-tag"], **TELEMETRY)
    attribution = attributor.observe(event)
    assert event["flow"]["egress_denied_by"] == cilium
    assert event["flow"]["policy_log"] == ["cilium-tag"]
    assert attribution.filled == ()
    assert "names other policies" in attribution.note
    assert attributor.stats.disagreements["egress_denied_by differs"] == 1


def test_verdict_disagreement_is_reported(policies):
    attributor = Attributor(policies(DB_ALLOW))
    event = flow(APP, DB, port=5432, verdict="DROPPED", drop="POLICY_DENY")
    attribution = attributor.observe(event)
    assert not attribution.agrees
    assert attribution.note == "Cilium denied, policies say allowed"
    assert "egress_denied_by" not in event["flow"]


def test_default_deny_drop_is_unexpected_and_unfilled_by_default(policies):
    attributor = Attributor(policies(FQDN_DENY, FQDN_ALLOW))
    event = flow(APP, WORLD, dst_ip="203.0.113.5", verdict="DROPPED", drop="POLICY_DENIED")
    attribution = attributor.observe(event)
    assert attribution.decision.outcome == "default-deny" and attribution.agrees
    assert attribution.expected is False
    assert "egress_denied_by" not in event["flow"] and "policy_log" not in event["flow"]


def test_default_deny_attribution_is_opt_in(policies):
    attributor = Attributor(policies(FQDN_DENY, FQDN_ALLOW), attribute_default_deny=True)
    event = flow(APP, WORLD, dst_ip="203.0.113.5", verdict="DROPPED", drop="POLICY_DENIED")
    attributor.observe(event)
    assert [p["name"] for p in event["flow"]["egress_denied_by"]] == ["block", "fqdn-allow"]
    assert "policy_log" not in event["flow"]  # never a tag for a default deny


def test_audit_with_matching_deny(policies):
    attributor = Attributor(policies(CLUSTERWIDE_DENY))
    event = flow(APP, WORLD, dst_ip="8.8.8.8", verdict="AUDIT")
    attribution = attributor.observe(event)
    (policy,) = event["flow"]["egress_denied_by"]
    assert "namespace" not in policy and policy["kind"] == "CiliumClusterwideNetworkPolicy"
    assert attribution.expected is False  # the deny has no log value


def test_allowed_flow_gets_allowed_by(policies):
    attributor = Attributor(policies(DB_ALLOW))
    event = flow(APP, DB, port=5432)
    attributor.observe(event)
    assert event["flow"]["egress_allowed_by"][0]["name"] == "to-db"
    assert attributor.observe(event).expected is None  # only drops are expected or not


@pytest.mark.parametrize(
    ("expected_logs", "predicate", "expected"),
    [
        (None, None, True),  # default: the log values of deny rules
        (["other"], None, False),
        (["other"], lambda f: f["IP"]["destination"] == "198.51.100.1", True),
    ],
)
def test_expected_set(policies, expected_logs, predicate, expected):
    attributor = Attributor(policies(FQDN_DENY), expected_logs=expected_logs, expected_predicate=predicate)
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    assert attributor.observe(event).expected is expected


def test_other_events_pass_untouched(policies):
    attributor = Attributor(policies(FQDN_DENY))
    trace = flow(APP, WORLD, event_type=4, **TELEMETRY)
    other_drop = flow(APP, WORLD, verdict="DROPPED", drop="CT_MAP_INSERTION_FAILED", event_type=1, **TELEMETRY)
    lost = {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "3"}}
    assert attributor.observe(trace) is None
    assert attributor.observe(other_drop) is None
    assert attributor.observe(lost) is None
    assert "policy_log" not in trace["flow"]


def test_unknown_direction_is_counted(policies):
    attributor = Attributor(policies(FQDN_DENY))
    event = flow(APP, WORLD, direction="TRAFFIC_DIRECTION_UNKNOWN", verdict="DROPPED", drop="POLICY_DENY")
    assert attributor.observe(event) is None
    assert attributor.stats.unknown_direction == 1
