"""hushflow suggest: the fix for each unexpected drop, narrow, patched in place, verified by replay.

Base scenario: examples/telemetry-block (9 planned drops to *.telemetry.example.com, 3 unplanned
ones to 203.0.113.50:443 that no DNS answer names). The other scenarios add flows made from the
example's own lines (a DNS answer, a drop), so they stay what Hubble records.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hushflow.app import suggest as suggest_module
from hushflow.app.suggest import (
    DEFAULT_BLOCK_TAG,
    Edit,
    SuggestOptions,
    apply_edit,
    read_recorded_flows,
    render_text,
    run_suggest,
    stable_labels,
    suggest,
    write_suggestions,
)
from hushflow.engine.replay import Change, Replayer
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"
LINES = [json.loads(line) for line in (EXAMPLE / "flows.jsonl").read_text().splitlines()]
DNS_ANSWER = LINES[1]  # kube-dns answers my-app for api.stripe.com
UNPLANNED_DROP = LINES[20]  # my-app -> 203.0.113.50:443, POLICY_DENIED (type 5)


def _at(event: dict[str, Any], stamp: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["time"] = event["flow"]["time"] = stamp
    return event


def dns_answer(name: str, ips: list[str], stamp: str) -> dict[str, Any]:
    event = _at(DNS_ANSWER, stamp)
    dns = event["flow"]["l7"]["dns"]
    dns["query"], dns["ips"] = name + ".", ips
    event["flow"]["Summary"] = f"DNS Answer {ips} (Proxy {name}. A)"
    return event


def drop(stamp: str, *, ip: str = "203.0.113.50", port: int = 443, peer: dict[str, Any] | None = None,
         local: dict[str, Any] | None = None) -> dict[str, Any]:
    event = _at(UNPLANNED_DROP, stamp)
    flow = event["flow"]
    flow["IP"]["destination"] = ip
    flow["l4"]["TCP"]["destination_port"] = port
    if peer is not None:
        flow["destination"] = peer
    if local is not None:
        flow["source"] = local
    return event


def pod(namespace: str, app: str, workload: str, *extra: str) -> dict[str, Any]:
    labels = sorted([f"k8s:app.kubernetes.io/name={app}", f"k8s:io.kubernetes.pod.namespace={namespace}",
                     "k8s:io.cilium.k8s.policy.cluster=demo", f"k8s:io.cilium.k8s.policy.serviceaccount={app}",
                     f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={namespace}", *extra])
    return {"ID": 1300, "identity": 32000, "cluster_name": "demo", "namespace": namespace, "labels": labels,
            "pod_name": f"{workload}-0", "workloads": [{"name": workload, "kind": "Deployment"}]}


def scenario(tmp_path: Path, extra: list[dict[str, Any]] = (), *, keep_example_flows: bool = True,
             drop_docs: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A copy of the example's policies (without the documents named in `drop_docs`) and its
    flows followed by `extra`."""
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE / "policies", policies)
    for name in drop_docs:
        path = policies / "my-namespace-egress.yaml"
        documents = path.read_text().split("\n---\n")
        path.write_text("\n---\n".join(d for d in documents if f"name: {name}\n" not in d))
    lines = [json.dumps(event) for event in (LINES if keep_example_flows else [])] + [json.dumps(e) for e in extra]
    flows = tmp_path / "flows.jsonl"
    flows.write_text("\n".join(lines) + "\n")
    return policies, flows


def run(policies: Path, flows: Path, actions: tuple[str, ...] = ("allow", "block"), **kwargs: Any):
    return suggest(SuggestOptions(policies=(str(policies),), inputs=(str(flows),), actions=actions, **kwargs))


def replay_changes(before: Path, after: Path, flows: Path) -> dict[int, Change]:
    """Every flow that changes between the policies in `before` and in `after` (their positions)."""
    options = BuildOptions()
    replayer = Replayer(load_policies([str(before)], options).policy_set,
                        load_policies([str(after)], options).policy_set)
    changed = {}
    for index, event in enumerate(read_recorded_flows([str(flows)]).events):
        replay = replayer.replay(event)
        if replay is not None and replay.change is not Change.UNCHANGED:
            changed[index] = replay.change
    return changed


# -- stable labels --------------------------------------------------------------------------------

@pytest.mark.parametrize(("labels", "expected"), [
    pytest.param(["k8s:app=web", "k8s:pod-template-hash=5d8f7c9b4"], {"app": "web"}, id="deployment-hash"),
    pytest.param(["k8s:app=db", "k8s:controller-revision-hash=db-7c9", "k8s:statefulset.kubernetes.io/pod-name=db-0",
                  "k8s:apps.kubernetes.io/pod-index=0"], {"app": "db"}, id="statefulset-pod"),
    pytest.param(["k8s:app=agent", "k8s:pod-template-generation=3", "k8s:controller-revision-hash=6f"],
                 {"app": "agent"}, id="daemonset"),
    pytest.param(["k8s:app=report", "k8s:job-name=report-28911", "k8s:batch.kubernetes.io/job-name=report-28911",
                  "k8s:controller-uid=4d2", "k8s:batch.kubernetes.io/controller-uid=4d2",
                  "k8s:batch.kubernetes.io/job-completion-index=1"], {"app": "report"}, id="cronjob-run"),
    pytest.param(["k8s:app.kubernetes.io/name=api", "k8s:app.kubernetes.io/version=1.4.2", "k8s:helm.sh/chart=api-1.4.2"],
                 {"app.kubernetes.io/name": "api"}, id="release-labels"),
    pytest.param(["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop", "k8s:io.cilium.k8s.policy.cluster=demo",
                  "k8s:io.cilium.k8s.namespace.labels.team=a", "k8s:io.cilium.k8s.policy.serviceaccount=web"],
                 {"app": "web"}, id="cilium-derived-and-namespace"),
    pytest.param(["k8s:io.kubernetes.pod.namespace=shop", "k8s:io.cilium.k8s.policy.serviceaccount=web",
                  "k8s:pod-template-hash=1"], {"io.cilium.k8s.policy.serviceaccount": "web"},
                 id="service-account-when-nothing-else"),
    pytest.param(["reserved:world", "cidr:203.0.113.0/24", "fqdn:api.example.com"], {}, id="not-pod-labels"),
    pytest.param(["k8s:tier=backend", "k8s:app=web"], {"app": "web", "tier": "backend"}, id="sorted-kept"),
])
def test_stable_labels(labels: list[str], expected: dict[str, str]) -> None:
    assert stable_labels(labels) == expected


# -- the base scenario ----------------------------------------------------------------------------

def test_the_examples_unplanned_drop_is_allowed_by_its_address_alone(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path)
    result = run(policies, flows, ("allow",))
    assert (result.scan.unexpected, result.scan.planned, len(result.scan.groups)) == (3, 9, 1)
    group = result.scan.groups[0]
    assert (group.key, group.direction, group.peer.kind, group.peer.value, group.port_text) == (
        "my-namespace/my-app", "egress", "cidr", "203.0.113.50/32", "443/TCP")
    [allow] = result.suggestions
    assert allow.verified, allow.reason
    assert allow.edit is not None
    # No DNS answer names 203.0.113.50: the address alone, never toEntities: world or a wider CIDR.
    assert [dict(e) for e in allow.edit.entries] == [
        {"toCIDR": ["203.0.113.50/32"], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]
    # In the untagged policy that already selects my-app (the SaaS one's tag would label these flows).
    assert allow.edit.policy == ("CiliumNetworkPolicy", "my-namespace", "my-app-in-cluster")
    assert allow.edit.file == str(policies / "my-namespace-egress.yaml")
    assert allow.summary is not None
    assert dict(allow.summary.counts) == {Change.NEWLY_ALLOWED: 3, Change.UNCHANGED: 14}
    assert allow.answered == 3


def test_the_allow_admits_the_drops_and_nothing_else_in_the_recorded_flows(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path)
    before = tmp_path / "before"
    shutil.copytree(policies, before)
    result = run(policies, flows, ("allow",))
    assert write_suggestions(result.suggestions) == [str(policies / "my-namespace-egress.yaml")]
    # Replayed independently of suggest: exactly the group's three flows change, to newly-allowed.
    assert replay_changes(before, policies, flows) == dict.fromkeys(result.scan.groups[0].indices,
                                                                    Change.NEWLY_ALLOWED)
    # The recorded drops are still drops, but these policies now allow them: nothing more to suggest.
    [again] = run(policies, flows, ("allow",)).suggestions
    assert (again.edit, again.verified) == (None, False)
    assert "these policies already allow the flows Cilium dropped" in again.reason


def test_write_applies_every_verified_suggestion_checked_together(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path, NEW_VENDOR)
    before = tmp_path / "before"
    shutil.copytree(policies, before)
    result, written = run_suggest(SuggestOptions(policies=(str(policies),), inputs=(str(flows),), actions=("allow",)),
                                  write=True)
    assert [s.verified for s in result.suggestions] == [True, True]
    assert written == [str(policies / "my-namespace-egress.yaml")]
    assert result.write_refused == ""
    answered = {i for group in result.scan.groups for i in group.indices}
    assert replay_changes(before, policies, flows) == dict.fromkeys(answered, Change.NEWLY_ALLOWED)


def test_write_writes_nothing_when_the_suggestions_together_fail_the_replay(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    policies, flows = scenario(tmp_path, NEW_VENDOR)
    before = {p.name: p.read_text() for p in policies.iterdir()}
    # Each allow answers its own group (3 flows, 1 flow); the check of both together is made to
    # expect one flow fewer, so the two together "change a flow beyond the drops they answer".
    real = suggest_module.verify_changes

    def one_flow_fewer_together(expected, *args, **kwargs):  # type: ignore[no-untyped-def]
        if len(expected) == 4:
            expected = dict(sorted(expected.items())[:-1])
        return real(expected, *args, **kwargs)

    monkeypatch.setattr(suggest_module, "verify_changes", one_flow_fewer_together)
    result, written = run_suggest(SuggestOptions(policies=(str(policies),), inputs=(str(flows),), actions=("allow",)),
                                  write=True)
    assert written == []
    assert result.write_refused.startswith("the verified suggestions together are not a fix, nothing written: "
                                           "it would also change")
    assert not result.every_group_fixed
    assert "nothing written" in render_text(result)
    assert {p.name: p.read_text() for p in policies.iterdir()} == before


GOLDEN_PATCHED_TAIL = """\
  egress:
  - toEndpoints:
    - matchLabels:
        app.kubernetes.io/name: postgres
    toPorts:
    - ports:
      - port: "5432"
        protocol: TCP
  - toCIDR:
    - 203.0.113.50/32
    toPorts:
    - ports:
      - port: "443"
        protocol: TCP
  ingress:
  - fromEndpoints:
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: ingress-nginx
        app.kubernetes.io/name: ingress-nginx
    toPorts:
    - ports:
      - port: "8080"
        protocol: TCP
"""


def test_the_patch_keeps_every_other_byte_of_the_file(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path)
    path = policies / "my-namespace-egress.yaml"
    original = path.read_text()
    [allow] = run(policies, flows, ("allow",)).suggestions
    patched = allow.patched[str(path)]
    assert patched.endswith(GOLDEN_PATCHED_TAIL)
    # Only lines added: the comments, the other documents, quotes and key order are untouched.
    added = [line[1:] for line in allow.diff.splitlines()[2:] if line.startswith("+")]
    removed = [line for line in allow.diff.splitlines()[2:] if line.startswith("-")]
    assert removed == [] and len(added) == 6
    assert patched.replace("".join(a + "\n" for a in added), "", 1) == original
    assert "# What such a namespace already has" in patched


COMMENTED = """\
# Team-owned: ask #net before changing.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: my-app-out   # the name Argo CD tracks
  namespace: my-namespace
spec:
  endpointSelector:
    matchLabels: {app.kubernetes.io/name: my-app}
  # Egress first, then ingress.
  egress:
    - toEndpoints:   # indented sequences, as some teams write them
        - matchLabels:
            app.kubernetes.io/name: postgres
      toPorts:
        - ports:
            - port: '5432'
              protocol: TCP
  ingress: []
---
# A second document that must not move a byte.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other, namespace: my-namespace}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress: [{toEntities: [kube-apiserver]}]
"""


def test_comments_flow_style_and_indentation_survive_a_patch() -> None:
    edit = Edit("p.yaml", ("CiliumNetworkPolicy", "my-namespace", "my-app-out"), "egress",
                ({"toFQDNs": [{"matchName": "api.example.com"}],
                  "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]},))
    patched = apply_edit(COMMENTED, edit)
    assert patched == COMMENTED.replace("""\
              protocol: TCP
  ingress: []
""", """\
              protocol: TCP
    - toFQDNs:
        - matchName: api.example.com
      toPorts:
        - ports:
            - port: "443"
              protocol: TCP
  ingress: []
""")


HEAD = "kind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  egress:\n"
ADDED = "  - toCIDR:\n    - 192.0.2.1/32\n"


@pytest.mark.parametrize(("last_entry", "after"), [
    pytest.param("  - toEndpoints:\n    - matchLabels:\n        app: db   # the database\n",
                 "  # the tag for planned drops\n  log: 1\n", id="after-an-end-of-line-comment"),
    pytest.param("  - toCIDR:\n    - 1.2.3.4/32\n", "\n  # the tag\n  log: 1\n", id="after-a-blank-line"),
    pytest.param("  - toCIDR: [1.2.3.4/32]  # eol\n", "  # the tag\n  log: 1\n", id="after-a-flow-sequence"),
    pytest.param('  - toPorts:\n    - ports: [{port: "443", protocol: TCP}]\n', "  # the tag\n  # two lines\n  log: 1\n",
                 id="after-a-nested-block"),
    pytest.param("  - toCIDR:\n    - 1.2.3.4/32\n", "#\n# next section ----\n---\nkind: Other\n",
                 id="a-header-before-the-next-document"),
])
def test_a_comment_that_introduces_the_next_key_stays_before_it(last_entry: str, after: str) -> None:
    edit = Edit("p.yaml", ("CiliumNetworkPolicy", "n", "a"), "egress", ({"toCIDR": ["192.0.2.1/32"]},))
    assert apply_edit(HEAD + last_entry + after, edit) == HEAD + last_entry + ADDED + after


def test_an_entry_already_there_is_not_added_twice() -> None:
    text = HEAD + ADDED + "  log: 1\n"
    edit = Edit("p.yaml", ("CiliumNetworkPolicy", "n", "a"), "egress", ({"toCIDR": ["192.0.2.1/32"]},))
    assert apply_edit(text, edit) == text


def test_a_new_section_goes_after_the_rule_sections_before_log() -> None:
    text = (EXAMPLE / "policies" / "app-external-block-policy.yaml").read_text()
    edit = Edit("p.yaml", ("CiliumNetworkPolicy", "my-namespace", "app-external-block-policy"), "egress",
                ({"toCIDR": ["192.0.2.1/32"]},))
    patched = apply_edit(text, edit)
    assert patched == text.replace("  log:\n", "  egress:\n  - toCIDR:\n    - 192.0.2.1/32\n  log:\n")


# -- FQDN, DNS, labels ----------------------------------------------------------------------------

NEW_VENDOR = [dns_answer("api.newvendor.example", ["192.0.2.80"], "2026-11-27T09:00:13.000Z"),
              drop("2026-11-27T09:00:13.100Z", ip="192.0.2.80")]


def test_a_name_a_dns_answer_gives_the_peer_is_allowed_by_matchname(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path, NEW_VENDOR)
    result = run(policies, flows, ("allow",))
    allow = next(s for s in result.suggestions if s.group.peer.kind == "fqdn")
    assert allow.group.peer.value == "api.newvendor.example"
    assert allow.verified, allow.reason
    assert allow.edit is not None
    # my-namespace-dns already lets every name through the DNS proxy: no DNS rule is added.
    assert [dict(e) for e in allow.edit.entries] == [
        {"toFQDNs": [{"matchName": "api.newvendor.example"}],
         "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]


def test_an_fqdn_allow_brings_the_dns_proxy_rule_it_needs_when_none_grants_it(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path, NEW_VENDOR, drop_docs=("my-namespace-dns",))
    result = run(policies, flows, ("allow",))
    allow = next(s for s in result.suggestions if s.group.peer.kind == "fqdn")
    assert allow.edit is not None
    assert [dict(e) for e in allow.edit.entries][1] == {
        # The DNS server the workload's DNS flows went to (kube-dns here), narrowed to the name.
        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                     "rules": {"dns": [{"matchName": "api.newvendor.example"}]}}],
    }
    assert allow.verified, allow.reason


def test_a_pod_peer_is_selected_by_its_stable_labels(tmp_path: Path) -> None:
    redis = pod("cache", "redis", "redis", "k8s:pod-template-hash=7f9d", "k8s:tier=cache")
    policies, flows = scenario(tmp_path, [drop("2026-11-27T09:00:13.000Z", ip="10.0.3.7", port=6379, peer=redis)])
    result = run(policies, flows, ("allow",))
    allow = next(s for s in result.suggestions if s.group.peer.kind == "endpoints")
    assert allow.verified, allow.reason
    assert allow.edit is not None
    assert [dict(e) for e in allow.edit.entries] == [{
        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "cache",
                                         "app.kubernetes.io/name": "redis", "tier": "cache"}}],
        "toPorts": [{"ports": [{"port": "6379", "protocol": "TCP"}]}],
    }]


# -- block ----------------------------------------------------------------------------------------

def test_block_adds_the_name_to_the_workloads_tagged_fqdn_deny(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path, NEW_VENDOR)
    result = run(policies, flows, ("block",))
    block = next(s for s in result.suggestions if s.group.peer.kind == "fqdn")
    assert block.verified, block.reason
    assert block.edit is not None
    assert (block.edit.policy[2], block.edit.section, block.edit.into) == ("app-external-block-policy", "egressDeny", 0)
    assert '+    - matchName: api.newvendor.example\n' in block.diff
    assert block.summary is not None
    assert block.summary.counts[Change.TAG_CHANGED] == 1
    [group] = [g for g in block.summary.sorted_groups(include_unchanged=False)]
    assert group.proposed.tags == ("app-explicit-traffic-blocked",)


def test_block_of_an_address_is_a_new_entry_in_the_tagged_deny(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path)
    [block] = run(policies, flows, ("block",)).suggestions
    assert block.verified, block.reason
    assert block.edit is not None
    assert block.edit.policy[2] == "app-external-block-policy"
    assert [dict(e) for e in block.edit.entries] == [
        {"toCIDR": ["203.0.113.50/32"], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]
    assert block.summary is not None
    assert dict(block.summary.counts) == {Change.TAG_CHANGED: 3, Change.UNCHANGED: 14}


def test_a_block_whose_tag_is_not_expected_is_not_a_fix(tmp_path: Path) -> None:
    policies, flows = scenario(tmp_path)
    # The planned drops are those tagged `other-tag` here: a deny tagged app-explicit-traffic-blocked
    # would leave the next drop unexpected.
    result = run(policies, flows, ("block",), expected_logs=("other-tag",))
    [block] = [s for s in result.suggestions if s.group.peer.value == "203.0.113.50/32"]
    assert not block.verified
    assert "app-explicit-traffic-blocked is not one of --expected-log (other-tag)" in block.reason


def test_a_workload_without_a_policy_of_its_own_gets_a_new_file(tmp_path: Path) -> None:
    worker = pod("my-namespace", "worker", "worker")
    policies, flows = scenario(tmp_path, [drop("2026-11-27T09:00:13.000Z", local=worker)])
    result = run(policies, flows)
    suggestions = [s for s in result.suggestions if s.group.workload == "worker"]
    assert [s.action for s in suggestions] == ["allow", "block"]
    for suggestion in suggestions:
        assert suggestion.verified, suggestion.reason
        assert suggestion.edit is not None and suggestion.edit.new_policy is not None
        assert suggestion.edit.file == str(policies / "suggested-worker.yaml")
        assert suggestion.diff.startswith("--- /dev/null\n")
    allow, block = suggestions
    assert "+  endpointSelector:\n+    matchLabels:\n+      app.kubernetes.io/name: worker\n" in allow.diff
    assert f"+  log:\n+    value: {DEFAULT_BLOCK_TAG}\n" in block.diff


# -- verification ---------------------------------------------------------------------------------

def forwarded(event: dict[str, Any]) -> dict[str, Any]:
    """`event` as Cilium let it through (recorded while the cluster ran other policies)."""
    event = copy.deepcopy(event)
    event["flow"]["verdict"] = "FORWARDED"
    del event["flow"]["drop_reason_desc"]
    return event


def test_an_allow_that_would_admit_other_recorded_flows_is_not_a_fix(tmp_path: Path) -> None:
    # my-app-canary carries my-app's app label, and its call to 203.0.113.50:443 went through
    # (these policies deny it): the rule added for my-app's drops would newly allow it too.
    canary = pod("my-namespace", "my-app", "my-app-canary")
    policies, flows = scenario(tmp_path, [forwarded(drop("2026-11-27T09:00:13.000Z", local=canary))])
    result = run(policies, flows, ("allow",))
    [allow] = result.suggestions
    assert not allow.verified
    assert allow.reason.startswith("it would also change 1 newly-allowed flow(s) beyond the drops it answers (first: "
                                   f"{flows}:26: my-namespace/my-app-canary egress 203.0.113.50 443/TCP denied "
                                   "(default-deny) -> allowed by CiliumNetworkPolicy/my-namespace/my-app-in-cluster)")
    text = render_text(result)
    assert "allow: not a fix: it would also change" in text and "+++" not in text
    assert "replay: 4 newly-allowed, 14 unchanged" in text
    assert not result.every_group_fixed
    assert write_suggestions(result.suggestions) == []


def test_workloads_one_policy_selects_together_share_one_fix(tmp_path: Path) -> None:
    # The canary's call is dropped too: alone, each group's rule also answers the other's drop;
    # replayed together, the one rule answers both groups and changes nothing else.
    canary = pod("my-namespace", "my-app", "my-app-canary")
    policies, flows = scenario(tmp_path, [drop("2026-11-27T09:00:13.000Z", local=canary)])
    result = run(policies, flows, ("allow", "block"))
    assert [len(g.indices) for g in result.scan.groups] == [3, 1]
    mine, canary_group = result.scan.groups
    for suggestion in result.suggestions:
        assert suggestion.verified, suggestion.reason
        assert suggestion.shared_with == [canary_group if suggestion.group is mine else mine]
        assert suggestion.answered == 4
    text = render_text(result)
    assert text.count("the same change answers [2] too: the policy selects those workloads together") == 2
    assert text.count("the same change answers [1] too") == 2
    assert result.every_group_fixed


def test_a_drop_the_policies_already_allow_gets_no_fix(tmp_path: Path) -> None:
    # Cilium dropped a flow to postgres:5432, which my-app-in-cluster allows: no change to the
    # policies can answer it, and suggest says so instead of printing a rule that does nothing.
    postgres = pod("my-namespace", "postgres", "postgres")
    policies, flows = scenario(tmp_path, [drop("2026-11-27T09:00:13.000Z", ip="10.0.1.20", port=5432, peer=postgres)])
    result = run(policies, flows, ("allow",))
    allow = next(s for s in result.suggestions if s.group.peer.kind == "endpoints")
    assert (allow.edit, allow.verified) == (None, False)
    assert "these policies already allow the flows Cilium dropped" in allow.reason


def test_icmp_drops_are_allowed_by_their_type(tmp_path: Path) -> None:
    echo = drop("2026-11-27T09:00:13.000Z", ip="192.0.2.10")
    echo["flow"]["l4"] = {"ICMPv4": {"type": 8}}
    policies, flows = scenario(tmp_path, [echo])
    allow = next(s for s in run(policies, flows, ("allow",)).suggestions if s.group.protocol == "ICMPv4")
    assert allow.verified, allow.reason
    assert allow.edit is not None
    assert [dict(e) for e in allow.edit.entries] == [
        {"toCIDR": ["192.0.2.10/32"], "icmps": [{"fields": [{"family": "IPv4", "type": 8}]}]}]


def test_hostile_names_reach_the_text_escaped_and_never_a_policy(tmp_path: Path) -> None:
    named = drop("2026-11-27T09:00:13.000Z", ip="192.0.2.9")
    named["flow"]["destination_names"] = ["evil.example.\n---\nkind: x"]
    odd = drop("2026-11-27T09:00:13.100Z", ip="192.0.2.12")
    odd["flow"]["source"] = pod("my-namespace", "\x1b[31mred", "\x1b[31mred")
    policies, flows = scenario(tmp_path, [named, odd])
    result = run(policies, flows)
    text = render_text(result)
    assert not [c for c in text if ord(c) < 32 and c != "\n"]
    assert "evil.example.\\n---\\nkind: x" in text and "\\x1b[31mred" in text
    hostile = [s for s in result.suggestions if s.group.peer.value.startswith("evil")]
    assert hostile and all(not s.verified and "the patched policy does not load" in s.reason for s in hostile)
