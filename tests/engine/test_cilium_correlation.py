"""When Cilium's own policy fields stand and when hushflow completes them (issue 12).

Cilium facts behind the rows:
- cilium/cilium pkg/policy/correlation/correlation.go: correlation runs on policy-verdict events
  (type 5) only; up to 1.19 it names rules for FORWARDED/REDIRECTED and for DROPPED with
  POLICY_DENY, never for AUDIT or POLICY_DENIED; 1.20 (cilium#45373) adds AUDIT (and 133).
- cilium/cilium pkg/policy/types/correlation.go: `Log` holds the rules' log values; a rule
  without one contributes nothing there in newer releases, while 1.18 verdicts carry
  `policy_log: [""]` for it (the real 1.18.3 flow in /work/shared/data/real-hubble-flows,
  line 8, reproduced in CILIUM_1_18_3_DROP below).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from tests.engine.conftest import WORLD, flow, pod
from tests.engine.test_decision import FQDN_DENY, WEB, WORLD_DENY_443, cnp

APP = pod("shop", "web", 1001)
TELEMETRY = {"dst_ip": "198.51.100.1", "names": ["a.telemetry.example.com"]}
BLOCK_ENTRY = {"name": "block", "namespace": "shop", "labels": ["k8s:io.cilium.k8s.policy.name=block"],
               "revision": "6", "kind": "CiliumNetworkPolicy"}
SECOND_TAG = cnp("block-2", WEB + '  egressDeny:\n  - toEntities: [world]\n    toPorts: [{ports: [{port: "443"}]}]\n'
                 "  log: {value: another-tag}\n")


def _drop(event_type: int = 5, verdict: str = "DROPPED", **cilium: Any) -> dict[str, Any]:
    drop = "POLICY_DENY" if verdict == "DROPPED" else None
    return flow(APP, WORLD, verdict=verdict, drop=drop, event_type=event_type, **TELEMETRY, **cilium)


# Up to 1.19 (pkg/policy/correlation/correlation.go fills *_denied_by for DROPPED+POLICY_DENY
# verdicts; pkg/policy/types/correlation.go / the 1.18.3 flow: a rule without log gives "").
# (id, Cilium's fields on the drop, policy_log after, filled, disagreements, expected)
FILL_ROWS = [
    ("nothing from Cilium", {}, ["blocked"], ("egress_denied_by", "policy_log"), {}, True),
    ("empty list is absent", {"policy_log": []}, ["blocked"], ("egress_denied_by", "policy_log"), {}, True),
    ("[''] with Cilium's deny entry", {"policy_log": [""], "egress_denied_by": [BLOCK_ENTRY]},
     ["", "blocked"], ("policy_log",), {"policy_log completed": 1}, True),
    ("[''] alone", {"policy_log": [""]}, ["", "blocked"], ("egress_denied_by", "policy_log"),
     {"policy_log completed": 1}, True),
    ("several empty strings", {"policy_log": ["", ""]}, ["", "", "blocked"], ("egress_denied_by", "policy_log"),
     {"policy_log completed": 1}, True),
    ("Cilium's tag agrees", {"policy_log": ["blocked"], "egress_denied_by": [BLOCK_ENTRY]}, ["blocked"], (), {}, True),
    ("Cilium's tag and an empty one", {"policy_log": ["", "blocked"]}, ["", "blocked"], ("egress_denied_by",), {},
     True),
    ("Cilium's tag unknown to the policies", {"policy_log": ["other"]}, ["other"], ("egress_denied_by",),
     {"policy_log missing": 1, "policy_log unknown": 1}, False),
    ("nameless Cilium entry is completed", {"egress_denied_by": [{"labels": [], "revision": "3"}]},
     ["blocked"], ("egress_denied_by", "policy_log"), {"egress_denied_by completed": 1}, True),
    ("allow-side field on a drop stays, unused",
     {"egress_allowed_by": [{"name": "fqdn-allow", "namespace": "shop", "kind": "CiliumNetworkPolicy"}]},
     ["blocked"], ("egress_denied_by", "policy_log"), {"egress_allowed_by on a drop": 1}, True),
]


@pytest.mark.parametrize(("cilium", "after", "filled", "disagreements", "expected"),
                         [row[1:] for row in FILL_ROWS], ids=[row[0] for row in FILL_ROWS])
def test_up_to_1_19_hushflow_completes_what_cilium_left_empty(policies, cilium, after, filled, disagreements,
                                                              expected):
    attributor = Attributor(policies(FQDN_DENY), cilium_version=(1, 19))
    event = _drop(**copy.deepcopy(cilium))
    attribution = attributor.observe(event)
    f = event["flow"]
    assert f["policy_log"] == after
    assert attribution.filled == filled
    assert dict(attributor.stats.disagreements) == disagreements
    assert attribution.expected is expected
    for name, value in cilium.items():  # never drop Cilium's information
        if isinstance(value, list) and value:
            assert f[name][: len(value)] == value


def test_partial_cilium_tags_stand_and_the_missing_one_is_counted(policies):
    # Two deny rules with tags; Cilium names one: its value stands, the gap is counted.
    attributor = Attributor(policies(FQDN_DENY, SECOND_TAG), cilium_version=(1, 19))
    event = _drop(policy_log=["blocked"])
    attribution = attributor.observe(event)
    assert event["flow"]["policy_log"] == ["blocked"]
    assert "policy_log" not in attribution.filled
    assert attributor.stats.disagreements == {"policy_log missing": 1}
    assert attribution.expected is True


def test_deny_rule_without_log_agrees_with_cilium_empty_string(policies):
    # pkg/policy/types/correlation.go: a rule without log has no tag; Cilium 1.18 writes "".
    attributor = Attributor(policies(WORLD_DENY_443), cilium_version=(1, 18))
    event = flow(APP, WORLD, dst_ip="198.51.100.1", verdict="DROPPED", drop="POLICY_DENY", policy_log=[""])
    attribution = attributor.observe(event)
    assert event["flow"]["policy_log"] == [""]
    assert attributor.stats.disagreements == {}
    assert attribution.expected is False


def test_deny_side_field_on_an_allowed_verdict_is_counted(policies):
    attributor = Attributor(policies(FQDN_DENY), cilium_version=(1, 19))
    event = flow(APP, WORLD, dst_ip="203.0.113.9", verdict="FORWARDED", egress_denied_by=[BLOCK_ENTRY])
    attributor.observe(event)
    assert event["flow"]["egress_denied_by"] == [BLOCK_ENTRY]
    assert attributor.stats.disagreements["egress_denied_by on an allowed verdict"] == 1


# Cilium 1.20 (cilium#45373, pkg/policy/correlation/correlation.go): policy verdicts for drops
# and audits carry Cilium's own *_denied_by and policy_log, so hushflow checks instead of filling.
# Drop notifications (type 1) are never correlated by Cilium and are still filled.
# (id, event, policy_log after (None: absent), filled, disagreements)
CHECK_ROWS = [
    ("Cilium filled both, agreeing", _drop(policy_log=["blocked"], egress_denied_by=[BLOCK_ENTRY]),
     ["blocked"], (), {}),
    ("Cilium left both empty", _drop(), None, (), {"policy_log missing": 1, "egress_denied_by missing": 1}),
    ("Cilium wrote only ['']", _drop(policy_log=[""], egress_denied_by=[BLOCK_ENTRY]), [""], (),
     {"policy_log missing": 1}),
    ("Cilium names an unknown tag", _drop(policy_log=["other"], egress_denied_by=[BLOCK_ENTRY]), ["other"], (),
     {"policy_log missing": 1, "policy_log unknown": 1}),
    ("audit checked too", _drop(verdict="AUDIT", policy_log=["blocked"], egress_denied_by=[BLOCK_ENTRY]),
     ["blocked"], (), {}),
    ("drop notification still filled", _drop(event_type=1), ["blocked"], ("egress_denied_by", "policy_log"), {}),
]


@pytest.mark.parametrize(("event", "after", "filled", "disagreements"),
                         [row[1:] for row in CHECK_ROWS], ids=[row[0] for row in CHECK_ROWS])
def test_1_20_checks_rather_than_fills(policies, event, after, filled, disagreements):
    attributor = Attributor(policies(FQDN_DENY), cilium_version=(1, 20))
    event = copy.deepcopy(event)
    attribution = attributor.observe(event)
    assert event["flow"].get("policy_log") == after
    assert attribution.filled == filled
    assert dict(attributor.stats.disagreements) == disagreements


def test_real_1_18_3_drop_with_empty_policy_log_is_planned(policies):
    """The real 1.18.3 verdict (real-flows.jsonl line 8): Cilium names the deny, `policy_log: [""]`.

    The quoted sample's labels were trimmed; the namespace label Hubble carries is put back here
    (flows without it are another part of issue 12)."""
    ns_label = "k8s:io.kubernetes.pod.namespace=net-lab"
    deny = cnp("deny-tg-to-echo", "  endpointSelector: {matchLabels: {app: traffic-generator}}\n"
               "  egressDeny:\n  - toEndpoints: [{matchLabels: {app: echo-server}}]\n"
               "  log: {value: tg-blocked}\n", ns="net-lab")
    attributor = Attributor(policies(deny), cilium_version=(1, 18))
    event = {"flow": {
        "time": "2026-07-31T10:41:02.202450754Z", "verdict": "DROPPED", "drop_reason": 181,
        "IP": {"source": "10.0.1.235", "destination": "10.0.0.21", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 60524, "destination_port": 80, "flags": {"SYN": True}}},
        "source": {"ID": 423, "identity": 24753, "cluster_name": "topgun", "namespace": "net-lab",
                   "labels": ["k8s:app=traffic-generator", ns_label], "pod_name": "traffic-generator-9b649846d-bxqfc"},
        "destination": {"identity": 24075, "cluster_name": "topgun", "namespace": "net-lab",
                        "labels": ["k8s:app=echo-server", ns_label], "pod_name": "echo-server-65887564dc-jjw7k"},
        "event_type": {"type": 5}, "traffic_direction": "EGRESS", "policy_match_type": 1,
        "drop_reason_desc": "POLICY_DENY",
        "egress_denied_by": [{"name": "deny-tg-to-echo", "namespace": "net-lab",
                              "labels": ["k8s:io.cilium.k8s.policy.name=deny-tg-to-echo"], "revision": "6",
                              "kind": "CiliumNetworkPolicy"}],
        "policy_log": [""]}}
    attribution = attributor.observe(event)
    assert attribution.agrees
    assert event["flow"]["policy_log"] == ["", "tg-blocked"]
    assert event["flow"]["egress_denied_by"][0]["revision"] == "6"  # Cilium's entry, untouched
    assert attribution.expected is True
    assert attributor.stats.disagreements == {"policy_log completed": 1}


def test_each_attribution_carries_its_own_kinds_of_disagreement(policies):
    # What the daemon needs to label hushflow_attribution_disagreements_total{kind} per flow.
    attributor = Attributor(policies(FQDN_DENY), cilium_version=(1, 20))
    first = attributor.observe(_drop())
    second = attributor.observe(_drop(policy_log=["blocked"], egress_denied_by=[BLOCK_ENTRY]))
    assert first.disagreements == ("egress_denied_by missing", "policy_log missing")
    assert second.disagreements == ()
    assert attributor.stats.disagreements == {"egress_denied_by missing": 1, "policy_log missing": 1}


ICMP_REPLY_DENY = cnp("block", WEB + "  egressDeny:\n  - toEntities: [world]\n    icmps: [{fields: [{type: 0}]}]\n"
                      "  log: {value: blocked}\n")


# pkg/policy/correlation/correlation.go (the ir.Flow version, after cilium#45373): extractFlowKey
# gives port 0 for an ICMP echo reply (its type), VRRP and IGMP, and CorrelatePolicy returns at
# `dport == 0 || proto == 0` before naming any rule: even 1.20 leaves those verdicts empty, so
# hushflow fills them rather than reporting Cilium's fields "missing".
@pytest.mark.parametrize("version", [(1, 19), (1, 20)])
def test_a_verdict_cilium_cannot_look_up_is_filled_on_every_version(policies, version):
    attributor = Attributor(policies(ICMP_REPLY_DENY), cilium_version=version)
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", proto="ICMPv4", port=0, dst_ip="198.51.100.1")
    attribution = attributor.observe(event)
    assert attribution.filled == ("egress_denied_by", "policy_log")
    assert event["flow"]["policy_log"] == ["blocked"]
    assert not attributor.stats.disagreements


def test_1_20_checks_an_icmp_verdict_it_can_look_up(policies):
    """ICMP echo request (type 8) has a flow key: 1.20 correlates it, hushflow checks."""
    deny = cnp("block", WEB + "  egressDeny:\n  - toEntities: [world]\n    icmps: [{fields: [{type: 8}]}]\n"
                      "  log: {value: blocked}\n")
    attributor = Attributor(policies(deny), cilium_version=(1, 20))
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", proto="ICMPv4", port=8, dst_ip="198.51.100.1")
    attribution = attributor.observe(event)
    assert attribution.filled == ()
    assert dict(attributor.stats.disagreements) == {"policy_log missing": 1, "egress_denied_by missing": 1}


@pytest.mark.parametrize(("version", "filled"), [((1, 19), ("egress_denied_by", "policy_log")), ((1, 20), ())])
def test_make_attributor_follows_cilium_version(policies, version, filled):
    from hushflow.app.enrich import make_attributor

    attributor = make_attributor(policies(FQDN_DENY), cilium_version=version)
    assert attributor.observe(_drop()).filled == filled
