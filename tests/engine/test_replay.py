"""`hushflow replay`'s engine: each recorded flow decided by the current and the proposed set.

The table decides one flow, per policy kind hushflow models, against two real YAML sets built
as every job builds them (BuildOptions.for_cluster), and checks the change kind and both
verdicts (outcome and deciding policy).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from hushflow.engine.replay import Change, FlowReplay, Replayer, Verdict, change_of, summarize
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, PolicySet
from tests.engine.conftest import WORLD, dns_answer, flow, pod

WEB = pod("shop", "web", 1001)
DB = pod("shop", "db", 1002)
OUT = "198.51.100.7"


def cnp(name: str, body: str, *, kind: str = "CiliumNetworkPolicy", namespace: str | None = "shop",
        selector: str = "{matchLabels: {app: web}}") -> str:
    meta = f"{{name: {name}, namespace: {namespace}}}" if namespace else f"{{name: {name}}}"
    return (f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata: {meta}\nspec:\n"
            f"  endpointSelector: {selector}\n" + textwrap.indent(textwrap.dedent(body), "  "))


PORT_443 = 'toPorts: [{ports: [{port: "443", protocol: TCP}]}]'
ALLOW_443 = cnp("web-out", f"egress:\n- toCIDR: [198.51.100.0/24]\n  {PORT_443}\n")
ALLOW_80 = cnp("web-out", 'egress:\n- toCIDR: [198.51.100.0/24]\n  toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n')
DENY_443 = cnp("web-no-out", f"egressDeny:\n- toCIDR: [198.51.100.0/24]\n  {PORT_443}\n")
DENY_443_TAGGED = DENY_443 + "  log: {value: blocked-out}\n"
DENY_443_RETAGGED = DENY_443 + "  log: {value: blocked-other}\n"
CCNP_DENY = cnp("no-out", f"egressDeny:\n- toCIDR: [198.51.100.0/24]\n  {PORT_443}\nlog: {{value: cluster-block}}\n",
                kind="CiliumClusterwideNetworkPolicy", namespace=None)
CCNP_DENY_UNTAGGED = cnp("no-out", f"egressDeny:\n- toCIDR: [198.51.100.0/24]\n  {PORT_443}\n",
                         kind="CiliumClusterwideNetworkPolicy", namespace=None)
WORLD_443 = cnp("web-world", f"egress:\n- toEntities: [world]\n  {PORT_443}\n")
FQDN_DENY = cnp("web-no-telemetry", "egressDeny:\n- toFQDNs: [{matchName: t.example.com}]\n  "
                f"{PORT_443}\nlog: {{value: telemetry}}\n")


def network_policy(name: str, egress: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {{name: {name}, namespace: shop}}
        spec:
          podSelector: {{matchLabels: {{app: web}}}}
          policyTypes: [Egress]
        """) + egress


NP_ALLOW = network_policy("web-np", "  egress:\n  - to: [{ipBlock: {cidr: 198.51.100.0/24}}]\n"
                                    "    ports: [{protocol: TCP, port: 443}]\n")
NP_NOTHING = network_policy("web-np", "  egress: []\n")


def kcnp(name: str, tier: str, action: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {{name: {name}}}
        spec:
          tier: {tier}
          priority: 10
          subject: {{namespaces: {{}}}}
          egress:
          - {{action: {action}, to: [{{networks: [198.51.100.0/24]}}],
             protocols: [{{tcp: {{destinationPort: {{number: 443}}}}}}]}}
        """)


def policy_set(tmp_path, name: str, docs: list[str], version: tuple[int, int]) -> PolicySet:
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    loaded = load_policies([str(path)], BuildOptions.for_cluster(version, "c1"))
    errors = [d for d in loaded.diagnostics if d.level.value == "error" and d.code != "HF020"]
    assert not errors, errors
    return loaded.policy_set


def out_flow(src: dict[str, Any] = WEB, **kw: Any) -> dict[str, Any]:
    return flow(src, WORLD, dst_ip=OUT, port=443, **kw)


CNP_WEB_OUT = "CiliumNetworkPolicy/shop/web-out"
CNP_NO_OUT = "CiliumNetworkPolicy/shop/web-no-out"

# (id, current, proposed, source, version, change, current (outcome, rules), proposed (outcome, rules))
ROWS = [
    ("cnp-deny-added", [ALLOW_443], [ALLOW_443, DENY_443], WEB, (1, 18), Change.NEWLY_DROPPED,
     ("allowed", (CNP_WEB_OUT,)), ("denied", (CNP_NO_OUT,))),
    ("cnp-deny-removed", [ALLOW_443, DENY_443], [ALLOW_443], WEB, (1, 18), Change.NEWLY_ALLOWED,
     ("denied", (CNP_NO_OUT,)), ("allowed", (CNP_WEB_OUT,))),
    ("cnp-allow-added", [ALLOW_80], [ALLOW_443], WEB, (1, 18), Change.NEWLY_ALLOWED,
     ("denied", ()), ("allowed", (CNP_WEB_OUT,))),
    ("cnp-allow-removed-default-deny", [ALLOW_443], [ALLOW_80], WEB, (1, 18), Change.NEWLY_DROPPED,
     ("allowed", (CNP_WEB_OUT,)), ("denied", ())),
    ("first-policy-selects-the-endpoint", [], [ALLOW_80], WEB, (1, 18), Change.NEWLY_DROPPED,
     ("none", ()), ("denied", ())),
    ("cnp-deny-loses-its-tag", [ALLOW_443, DENY_443_TAGGED], [ALLOW_443, DENY_443], WEB, (1, 18), Change.TAG_LOST,
     ("denied", (CNP_NO_OUT,)), ("denied", (CNP_NO_OUT,))),
    ("tagged-deny-removed-under-default-deny", [ALLOW_80, DENY_443_TAGGED], [ALLOW_80], WEB, (1, 18),
     Change.TAG_LOST, ("denied", (CNP_NO_OUT,)), ("denied", ())),
    ("cnp-deny-retagged", [DENY_443_TAGGED], [DENY_443_RETAGGED], WEB, (1, 18), Change.TAG_CHANGED,
     ("denied", (CNP_NO_OUT,)), ("denied", (CNP_NO_OUT,))),
    ("deny-added-under-default-deny", [ALLOW_80], [ALLOW_80, DENY_443], WEB, (1, 18), Change.TAG_CHANGED,
     ("denied", ()), ("denied", (CNP_NO_OUT,))),
    ("other-allow-rule", [ALLOW_443], [WORLD_443], WEB, (1, 18), Change.UNCHANGED,
     ("allowed", (CNP_WEB_OUT,)), ("allowed", ("CiliumNetworkPolicy/shop/web-world",))),
    ("same-policies", [ALLOW_443, DENY_443_TAGGED], [ALLOW_443, DENY_443_TAGGED], WEB, (1, 18), Change.UNCHANGED,
     ("denied", (CNP_NO_OUT,)), ("denied", (CNP_NO_OUT,))),
    ("ccnp-deny-added", [ALLOW_443], [ALLOW_443, CCNP_DENY], WEB, (1, 18), Change.NEWLY_DROPPED,
     ("allowed", (CNP_WEB_OUT,)), ("denied", ("CiliumClusterwideNetworkPolicy/no-out",))),
    ("ccnp-deny-loses-its-tag", [CCNP_DENY], [CCNP_DENY_UNTAGGED], WEB, (1, 18), Change.TAG_LOST,
     ("denied", ("CiliumClusterwideNetworkPolicy/no-out",)), ("denied", ("CiliumClusterwideNetworkPolicy/no-out",))),
    ("ccnp-deny-removed", [ALLOW_443, CCNP_DENY], [ALLOW_443], WEB, (1, 18), Change.NEWLY_ALLOWED,
     ("denied", ("CiliumClusterwideNetworkPolicy/no-out",)), ("allowed", (CNP_WEB_OUT,))),
    ("networkpolicy-egress-emptied", [NP_ALLOW], [NP_NOTHING], WEB, (1, 18), Change.NEWLY_DROPPED,
     ("allowed", ("NetworkPolicy/shop/web-np",)), ("denied", ())),
    ("networkpolicy-egress-opened", [NP_NOTHING], [NP_ALLOW], WEB, (1, 18), Change.NEWLY_ALLOWED,
     ("denied", ()), ("allowed", ("NetworkPolicy/shop/web-np",))),
    ("admin-deny-added-1.20", [ALLOW_443], [ALLOW_443, kcnp("no-out", "Admin", "Deny")], WEB, (1, 20),
     Change.NEWLY_DROPPED, ("allowed", (CNP_WEB_OUT,)), ("denied", ("ClusterNetworkPolicy/no-out",))),
    ("admin-accept-beats-a-cnp-deny-1.20", [DENY_443_TAGGED], [DENY_443_TAGGED, kcnp("let-out", "Admin", "Accept")],
     WEB, (1, 20), Change.NEWLY_ALLOWED, ("denied", (CNP_NO_OUT,)), ("allowed", ("ClusterNetworkPolicy/let-out",))),
    ("baseline-deny-where-no-cnp-selects-1.20", [ALLOW_443], [ALLOW_443, kcnp("base", "Baseline", "Deny")], DB,
     (1, 20), Change.NEWLY_DROPPED, ("none", ()), ("denied", ("ClusterNetworkPolicy/base",))),
    ("baseline-deny-ignored-where-a-cnp-selects-1.20", [ALLOW_443], [ALLOW_443, kcnp("base", "Baseline", "Deny")],
     WEB, (1, 20), Change.UNCHANGED, ("allowed", (CNP_WEB_OUT,)), ("allowed", (CNP_WEB_OUT,))),
    ("admin-deny-not-enforced-before-1.20", [ALLOW_443], [ALLOW_443, kcnp("no-out", "Admin", "Deny")], WEB, (1, 19),
     Change.UNCHANGED, ("allowed", (CNP_WEB_OUT,)), ("allowed", (CNP_WEB_OUT,))),
]


@pytest.mark.parametrize(("current", "proposed", "src", "version", "change", "now", "then"),
                         [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_replay_table(tmp_path, current, proposed, src, version, change, now, then):
    replayer = Replayer(policy_set(tmp_path, "current", current, version),
                        policy_set(tmp_path, "proposed", proposed, version), cilium_version=version)
    replay = replayer.replay(out_flow(src))
    assert replay is not None
    assert replay.change is change
    assert (replay.current.outcome, replay.current.rules) == now
    assert (replay.proposed.outcome, replay.proposed.rules) == then
    assert (replay.workload, replay.peer, replay.port, replay.direction) == (
        f"shop/{src['pod_name']}", OUT, "443/TCP", "EGRESS")


def test_an_fqdn_deny_decides_by_the_dns_answers_learned_from_the_flows(tmp_path):
    replayer = Replayer(policy_set(tmp_path, "current", [WORLD_443], (1, 18)),
                        policy_set(tmp_path, "proposed", [WORLD_443, FQDN_DENY], (1, 18)))
    before = replayer.replay(out_flow(time="2026-01-01T00:00:01Z"))  # no answer seen yet: not the name
    assert replayer.replay(dns_answer(WEB, "t.example.com", [OUT], ttl=60, time="2026-01-01T00:00:02Z")) is None
    after = replayer.replay(out_flow(time="2026-01-01T00:00:10Z"))
    expired = replayer.replay(out_flow(time="2026-01-01T00:05:00Z"))  # past the TTL
    assert before is not None and after is not None and expired is not None
    assert (before.change, before.peer) == (Change.UNCHANGED, OUT)
    assert (after.change, after.peer) == (Change.NEWLY_DROPPED, "t.example.com")
    assert after.proposed == Verdict("denied", ("CiliumNetworkPolicy/shop/web-no-telemetry",), ("telemetry",),
                                     "denied", "NetworkPolicy")
    assert expired.change is Change.UNCHANGED
    assert replayer.dns_answers == 1


def test_events_that_are_no_policy_outcome_are_not_replayed(tmp_path):
    same = policy_set(tmp_path, "p", [ALLOW_443], (1, 18))
    replayer = Replayer(same, same)
    trace = out_flow(event_type=4)  # a trace event, no policy verdict
    no_direction = out_flow()
    del no_direction["flow"]["traffic_direction"]
    assert replayer.replay(trace) is None
    assert replayer.replay({"lost_events": {"num_events_lost": 3}}) is None
    assert replayer.replay(no_direction) is None
    assert replayer.unknown_direction == 1
    drop = out_flow(verdict="DROPPED", drop="POLICY_DENIED", event_type=1)
    assert replayer.replay(drop) is not None


def _v(outcome: str, rules: tuple[str, ...] = (), tags: tuple[str, ...] = (), decision: str = "") -> Verdict:
    return Verdict(outcome, rules, tags, decision or outcome)


@pytest.mark.parametrize(("now", "then", "change"), [
    (_v("allowed"), _v("unknown"), Change.NEWLY_DROPPED),
    (_v("none"), _v("unknown"), Change.NEWLY_DROPPED),
    (_v("denied"), _v("unknown"), Change.NEWLY_ALLOWED),
    (_v("unknown"), _v("denied"), Change.NEWLY_DROPPED),
    (_v("unknown"), _v("none"), Change.NEWLY_ALLOWED),
    (_v("unknown"), _v("unknown"), Change.UNCHANGED),
    (_v("none"), _v("allowed", ("X",)), Change.UNCHANGED),
    (_v("denied", ("A",), ("t",)), _v("denied", ("B",), ("t",)), Change.TAG_CHANGED),
    (_v("denied", ("A",), ("t",)), _v("denied", ("A",), ("t", "u")), Change.TAG_CHANGED),
    (_v("denied", ("A",), ("t",)), _v("denied", (), (), "default-deny"), Change.TAG_LOST),
    (_v("denied", (), (), "default-deny"), _v("denied", (), (), "default-deny"), Change.UNCHANGED),
])
def test_change_of(now, then, change):
    assert change_of(now, then) is change


def test_the_summary_groups_flows_and_orders_the_most_severe_first():
    allowed = _v("allowed", ("CiliumNetworkPolicy/shop/a",))
    denied = _v("denied", ("CiliumNetworkPolicy/shop/d",), ("t",))

    def replay(change: Change, now: Verdict, then: Verdict, peer: str, time: float) -> FlowReplay:
        return FlowReplay(change, now, then, "shop/web", peer, "443/TCP", "EGRESS", time)

    summary = summarize([
        replay(Change.UNCHANGED, allowed, allowed, "a.example", 1.0),
        None,
        replay(Change.NEWLY_ALLOWED, denied, allowed, "b.example", 5.0),
        replay(Change.NEWLY_ALLOWED, denied, allowed, "b.example", 2.0),
        replay(Change.NEWLY_DROPPED, allowed, denied, "c.example", 3.0),
    ])
    assert summary.flows == 4 and summary.changed == 3
    assert summary.counts == {Change.UNCHANGED: 1, Change.NEWLY_ALLOWED: 2, Change.NEWLY_DROPPED: 1}
    groups = summary.sorted_groups()
    assert [(g.change, g.peer, g.flows, g.first, g.last) for g in groups] == [
        (Change.NEWLY_DROPPED, "c.example", 1, 3.0, 3.0),
        (Change.NEWLY_ALLOWED, "b.example", 2, 2.0, 5.0),
        (Change.UNCHANGED, "a.example", 1, 1.0, 1.0),
    ]
    assert [g.change for g in summary.sorted_groups(include_unchanged=False)] == [
        Change.NEWLY_DROPPED, Change.NEWLY_ALLOWED]


def test_ingress_names_the_destination_as_workload_and_the_source_pod_as_peer(tmp_path):
    ingress_allow = cnp("db-in", 'ingress:\n- fromEndpoints: [{matchLabels: {app: web}}]\n'
                        '  toPorts: [{ports: [{port: "5432", protocol: TCP}]}]\n', selector="{matchLabels: {app: db}}")
    web = {**WEB, "workloads": [{"name": "web", "kind": "Deployment"}]}
    replayer = Replayer(policy_set(tmp_path, "current", [ingress_allow], (1, 18)),
                        policy_set(tmp_path, "proposed", [], (1, 18)))
    replay = replayer.replay(flow(web, DB, direction="INGRESS", port=5432, dst_ip="10.0.0.9"))
    assert replay is not None
    assert (replay.workload, replay.peer, replay.port, replay.direction) == ("shop/db-0", "shop/web", "5432/TCP",
                                                                             "INGRESS")
    assert (replay.current.outcome, replay.proposed.outcome, replay.change) == ("allowed", "none", Change.UNCHANGED)
    host = replayer.replay(flow({"identity": 1, "labels": ["reserved:host"]}, DB, direction="INGRESS", port=5432,
                                src_ip="10.0.5.1"))
    assert host is not None and host.peer == "10.0.5.1"
