"""hushflow compile: rewritten policies, CIDR groups, state, expiry, shared IPs, idempotent output."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from hushflow.app.compile import CompileError, CompileJob, run_compile
from hushflow.enforce.compile import cidr_groups, shard_bits
from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.state import DenyState, StateError
from hushflow.flow.dns import dns_answer_of
from hushflow.policy.lint import lint_paths
from hushflow.policy.loading import load_policies
from hushflow.policy.schema import validate_object

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
GOLDEN = Path(__file__).parent / "golden"

DNS_RULE = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: shop}
spec:
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
  - toFQDNs: [{matchName: cdn-allowed.example.com}, {matchName: api.partner.example}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""
DENY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: block, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egressDeny:
  - toFQDNs: [{matchName: beacon.example.com}, {matchPattern: "*.telemetry.example.com"}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  log: {value: blocked}
"""


def write(tmp_path: Path, *docs: str) -> Path:
    path = tmp_path / "policies"
    path.mkdir(exist_ok=True)
    (path / "p.yaml").write_text("\n---\n".join(textwrap.dedent(d).strip() for d in docs) + "\n")
    return path


def fake_lookup(table):
    """A resolver double: name -> [ips] (ttl 300), or an exception instance to raise."""

    def lookup(name, rdtype):
        value = table.get(name)
        if isinstance(value, Exception):
            raise value
        if value is None:
            raise dns.resolver.NXDOMAIN()
        ips = [ip for ip in value if (":" in ip) == (rdtype == "AAAA")]
        return ips, 300.0

    return lookup


def learn(learner, flow, now):
    """What the daemon does with a DNS flow: parse its answer once, hand it to the learner."""
    answer = dns_answer_of(flow)
    assert answer is not None
    return learner.learn_answer(answer, now)


def dns_flow(name, ips, *, app="web", ns="shop", time="2026-01-01T00:00:00Z", ttl=30):
    return {
        "flow": {
            "time": time,
            "verdict": "FORWARDED",
            "source": {"namespace": "kube-system", "labels": ["k8s:k8s-app=kube-dns"]},
            "destination": {"namespace": ns, "pod_name": f"{app}-0",
                            "labels": [f"k8s:app={app}", f"k8s:io.kubernetes.pod.namespace={ns}"]},
            "Type": "L7",
            "l7": {"type": "RESPONSE", "dns": {"query": name + ".", "ips": ips, "ttl": ttl}},
            "event_type": {"type": 129},
            "traffic_direction": "EGRESS",
        },
        "time": time,
    }


def test_example_compiles_to_golden_manifests_that_lint_and_validate(tmp_path):
    out = tmp_path / "out"
    job = CompileJob([str(EXAMPLE)], out_dir=str(out), flows=[str(EXAMPLE / "flows.jsonl")], resolve=False,
                     clock="flows")
    report = run_compile(job)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        ".hushflow-state.json",
        "ciliumcidrgroups/hushflow.cnp.my-namespace.app-external-block-policy.egressdeny-0.yaml",
        "ciliumnetworkpolicies/my-namespace.app-external-block-policy.yaml",
        "dns/blocky-hushflow.yml",
        "dns/coredns-hushflow.conf",
        "dns/hushflow.rpz",
    ]
    for relative in files[1:3]:
        text = (out / relative).read_text().replace(str(ROOT) + "/", "")
        golden = GOLDEN / Path(relative).name
        if os.environ.get("HUSHFLOW_UPDATE_GOLDEN"):  # regenerate after a deliberate change
            golden.write_text(text)
        assert text == golden.read_text(), f"{relative} differs from {golden}"
    for obj in report.output.objects:
        assert validate_object(obj, obj["apiVersion"], obj["kind"]) == []
    # Compiled together with the rest of the namespace's policies, it lints clean.
    others = EXAMPLE / "policies" / "my-namespace-egress.yaml"
    lint = lint_paths([str(out / "ciliumnetworkpolicies"), str(out / "ciliumcidrgroups"), str(others)])
    assert [d.code for d in lint.diagnostics] == []
    assert report.state.ips(report.output.denies[0].id) == ["198.51.100.10", "198.51.100.11", "198.51.100.12"]


def test_second_run_changes_nothing_and_removed_objects_are_deleted(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    out = tmp_path / "out"
    lookup = fake_lookup({"beacon.example.com": ["192.0.2.1", "2001:db8::1"]})
    first = run_compile(CompileJob([str(policies)], out_dir=str(out)), lookup=lookup, now=lambda: 1000.0)
    assert len(first.written.created) == 5
    mine = out / "notes.md"
    mine.write_text("my own file\n")
    second = run_compile(CompileJob([str(policies)], out_dir=str(out)), lookup=lookup, now=lambda: 1001.0)
    assert second.written.created == [] and second.written.updated == [] and len(second.written.unchanged) == 5
    # The deny goes away: its policy and groups are deleted, my own file stays.
    write(tmp_path, DNS_RULE)
    third = run_compile(CompileJob([str(policies)], out_dir=str(out)), lookup=lookup, now=lambda: 1002.0)
    assert sorted(third.written.deleted) == [
        "ciliumcidrgroups/hushflow.cnp.shop.block.egressdeny-0.yaml",
        "ciliumnetworkpolicies/shop.block.yaml",
        "dns/blocky-hushflow.yml",
        "dns/coredns-hushflow.conf",
        "dns/hushflow.rpz",
    ]
    assert mine.exists()


def test_resolved_ips_with_both_families_and_errors_never_remove(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    state = tmp_path / "state.json"
    job = CompileJob([str(policies)], state_path=str(state))
    report = run_compile(job, lookup=fake_lookup({"beacon.example.com": ["192.0.2.1", "2001:db8::1"]}),
                         now=lambda: 1000.0)
    (group,) = report.output.groups
    assert group["spec"]["externalCIDRs"] == ["192.0.2.1/32", "2001:db8::1/128"]
    # The resolver fails on the next run: nothing is removed, the failure is reported.
    failing = fake_lookup({"beacon.example.com": dns.exception.Timeout()})
    again = run_compile(job, lookup=failing, now=lambda: 1100.0)
    assert again.state.ips(again.output.denies[0].id) == ["192.0.2.1", "2001:db8::1"]
    assert any("resolving beacon.example.com failed" in line for line in again.lines())


def test_expiry_after_min_ttl_without_being_seen_again(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    job = CompileJob([str(policies)], state_path=str(tmp_path / "state.json"), min_ttl=3600)
    lookup = fake_lookup({"beacon.example.com": ["192.0.2.1"]})
    run_compile(job, lookup=lookup, now=lambda: 0.0)
    gone = fake_lookup({"beacon.example.com": ["192.0.2.9"]})
    still = run_compile(job, lookup=gone, now=lambda: 3000.0)
    assert still.state.ips(still.output.denies[0].id) == ["192.0.2.1", "192.0.2.9"]
    later = run_compile(job, lookup=gone, now=lambda: 3700.0)  # .1 last seen at 0 + 3600 s: expired
    assert later.state.ips(later.output.denies[0].id) == ["192.0.2.9"] and later.expired == 1


def test_restart_from_state_file(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    state_path = tmp_path / "state.json"
    job = CompileJob([str(policies)], state_path=str(state_path), resolve=False)
    loaded = load_policies([str(policies)])
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learn(DenyLearner(loaded.policy_set, [deny], state), dns_flow("a.telemetry.example.com", ["198.51.100.7"])["flow"], 10.0)
    state.save(str(state_path))
    report = run_compile(job, now=lambda: 20.0)  # a new process: the state file is all it has
    assert report.state.ips(deny.id) == ["198.51.100.7"]
    saved = json.loads(state_path.read_text())
    assert saved["denies"][deny.id]["198.51.100.7"]["names"] == ["a.telemetry.example.com"]


def test_corrupt_state_is_a_clear_error(tmp_path):
    state_path = tmp_path / "state.json"
    state_path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read the state file"):
        DenyState.load(str(state_path))


def test_observed_answers_only_for_endpoints_the_rule_selects():
    loaded = load_policies([str(EXAMPLE)])
    denies = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learner = DenyLearner(loaded.policy_set, denies, state)
    other = dns_flow("x.telemetry.example.com", ["203.0.113.1"], app="other", ns="my-namespace")["flow"]
    mine = dns_flow("x.telemetry.example.com", ["203.0.113.2"], app="my-app", ns="my-namespace")["flow"]
    mine["destination"]["labels"] = ["k8s:app.kubernetes.io/name=my-app", "k8s:io.kubernetes.pod.namespace=my-namespace"]
    apex = dns_flow("telemetry.example.com", ["203.0.113.3"], app="my-app", ns="my-namespace")["flow"]
    apex["destination"]["labels"] = mine["destination"]["labels"]
    assert learn(learner, other, 1.0) == []
    assert [c.ip for c in learn(learner, mine, 1.0)] == ["203.0.113.2"]
    assert learn(learner, apex, 1.0) == []  # `*.` needs one more label


@pytest.mark.parametrize(("mode", "denied"), [("skip", []), ("deny", ["192.0.2.50"])])
def test_shared_ip_with_an_allowed_name(tmp_path, mode, denied):
    policies = write(tmp_path, DNS_RULE, DENY)
    loaded = load_policies([str(policies)])
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learner = DenyLearner(loaded.policy_set, [deny], state, shared_ip=mode)
    learn(learner, dns_flow("cdn-allowed.example.com", ["192.0.2.50"])["flow"], 1.0)
    learn(learner, dns_flow("x.telemetry.example.com", ["192.0.2.50", "192.0.2.51"])["flow"], 2.0)
    assert state.ips(deny.id) == sorted(["192.0.2.51", *denied])
    assert state.shared[deny.id] == {"192.0.2.50": ["cdn-allowed.example.com"]}


def test_allowed_name_learned_after_the_deny_takes_the_ip_out(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    loaded = load_policies([str(policies)])
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learner = DenyLearner(loaded.policy_set, [deny], state)
    learn(learner, dns_flow("x.telemetry.example.com", ["192.0.2.50"])["flow"], 1.0)
    changes = learn(learner, dns_flow("api.partner.example", ["192.0.2.50"])["flow"], 2.0)
    assert [(c.ip, c.added) for c in changes] == [("192.0.2.50", False)]
    assert state.ips(deny.id) == [] and learner.stats.shared_skipped == 1


def test_global_guard(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    loaded = load_policies([str(policies)])
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learner = DenyLearner(loaded.policy_set, [deny], state, max_total=2)
    learner.learn_resolved("beacon.example.com", ["192.0.2.1", "192.0.2.2", "192.0.2.3"], 60, 0.0)
    assert len(state.ips(deny.id)) == 2 and learner.stats.guard_skipped == 1
    assert "global limit of 2 denied IPs" in learner.stats.notes[0]


def test_sharding_keeps_every_group_under_the_cap(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    (deny,) = fqdn_denies(load_policies([str(policies)]).policy_set)
    ips = [f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(2500)]
    groups = cidr_groups(deny, ips, cap=1000)
    sizes = [len(g["spec"]["externalCIDRs"]) for g in groups]
    assert len(groups) == 1 << shard_bits(ips, 1000) and len(groups) >= 4
    assert sum(sizes) == 2500 and max(sizes) <= 1000
    assert len({g["metadata"]["name"] for g in groups}) == len(groups)
    assert all(g["metadata"]["labels"]["hushflow.io/deny"] == deny.id for g in groups)
    # Learning one more IP changes exactly one group.
    again = cidr_groups(deny, [*ips, "10.200.0.1"], cap=1000)
    assert sum(a != b for a, b in zip(groups, again, strict=True)) == 1


def test_unobserved_denies_are_refused_unless_allowed(tmp_path):
    policies = write(tmp_path, DENY)
    with pytest.raises(CompileError, match="no L7 DNS rule sends through Cilium's DNS proxy"):
        run_compile(CompileJob([str(policies)]), lookup=fake_lookup({}))
    report = run_compile(CompileJob([str(policies)], allow_unobserved=True), lookup=fake_lookup({}))
    assert len(report.output.policies) == 1


def test_policy_errors_are_refused(tmp_path):
    policies = write(tmp_path, DNS_RULE.replace("egress:", "egres:", 1))
    with pytest.raises(CompileError, match=r"the policies have 2 error\(s\); run `hushflow lint` on them"):
        run_compile(CompileJob([str(policies)]))


def test_compile_apply_against_the_api_double(tmp_path):
    """`hushflow compile --apply` end to end. No Kubernetes API server runs here: this runs against
    tests.doubles.fake_apiserver.FakeApiServer (a local test double); the code path is the production one."""
    import yaml
    from click.testing import CliRunner

    from hushflow.cli import main
    from tests.doubles.fake_apiserver import FakeApiServer

    with FakeApiServer() as server:
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "f", "cluster": {"server": server.url}}],
            "users": [{"name": "u", "user": {"token": "x"}}],
            "contexts": [{"name": "t", "context": {"cluster": "f", "user": "u"}}],
        }))
        args = ["compile", str(EXAMPLE), "--apply", "--kubeconfig", str(config), "--no-resolve",
                "--state", str(tmp_path / "state.json")]
        first = CliRunner().invoke(main, [*args, "--flows", str(EXAMPLE / "flows.jsonl"), "--clock", "flows"])
        assert first.exit_code == 0, first.output
        (group,) = server.objects("CiliumCIDRGroup")
        assert len(group["spec"]["externalCIDRs"]) == 3
        assert server.objects("CiliumNetworkPolicy")[0]["spec"]["egressDeny"][0]["toCIDRSet"]
        # The state file is lost: the IPs come back from the cluster, and a dry run shows no change.
        (tmp_path / "state.json").unlink()
        again = CliRunner().invoke(main, [*args, "--dry-run"])
        assert again.exit_code == 0, again.output
        assert "would be: 0 created, 0 updated, 2 unchanged, 0 deleted" in again.output
        (group,) = server.objects("CiliumCIDRGroup")
        assert len(group["spec"]["externalCIDRs"]) == 3


def test_an_soa_serial_from_a_far_future_flow_clock_is_held_at_32_bits(tmp_path):
    """--clock flows takes the serial from flow times, which are input: year 9999 is no traceback."""
    from hushflow.app.compile import dns_files

    denies = fqdn_denies(load_policies([str(write(tmp_path, DNS_RULE, DENY))]).policy_set)
    answer = "nxdomain"
    files, _ = dns_files(denies, answer, serial=253402300799)
    assert "4294967295" in files["dns/hushflow.rpz"]
    again, _ = dns_files(denies, answer, serial=253402300800, previous_rpz=files["dns/hushflow.rpz"])
    assert again == files
