"""The corpus of valid policies: everything in tests/policy/corpus/ must lint clean.

The corpus holds hand-written CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
CiliumCIDRGroup objects that exercise the patterns of Cilium's policy documentation. Each one
is something Cilium accepts, so any error or warning hushflow reports on it is a false positive.
The counts below are pinned so that a file that is silently skipped (or an object that is
silently dropped) fails the test instead of shrinking the corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.cli.lint import lint
from hushflow.policy.diagnostics import CHECKS, Severity
from hushflow.policy.lint import lint_paths
from hushflow.policy.loading import load_policies
from hushflow.policy.model import CCNP, CNP, BuildOptions, PolicySet

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yaml", ".yml"))

EXPECTED_FILES = 39
EXPECTED_OBJECTS = 49  # every Kubernetes object, `kind: List` items counted one by one
EXPECTED_POLICIES = 45  # CNPs and CCNPs
EXPECTED_CIDR_GROUPS = 3
# Files that deliberately contain objects hushflow does not model (reported as info HF003).
MIXED_FILES = {"namespace-and-policy.yaml": 1}


def _problems(report) -> list[str]:
    return [
        f"{d.location.file}:{d.location.line} {d.code} {d.message}"
        for d in report.diagnostics
        if d.level in (Severity.ERROR, Severity.WARNING)
    ]


def test_corpus_files_are_all_found():
    assert len(FILES) == EXPECTED_FILES, [p.name for p in FILES]


@pytest.mark.parametrize("version", [(1, 18), (1, 19)], ids=["cilium-1.18", "cilium-1.19"])
def test_corpus_lints_clean(version):
    report = lint_paths([str(CORPUS)], BuildOptions(cilium_version=version))
    assert _problems(report) == []
    assert report.exit_code(strict=True) == 0
    assert len(report.files) == EXPECTED_FILES
    assert report.objects == EXPECTED_OBJECTS
    assert report.policies == EXPECTED_POLICIES
    infos = [d for d in report.diagnostics if d.level == Severity.INFO]
    assert sorted((Path(d.location.file).name, d.code) for d in infos) == sorted(
        (name, "HF003") for name, count in MIXED_FILES.items() for _ in range(count)
    )


def test_corpus_models_every_object():
    loaded = load_policies([str(CORPUS)])
    skipped = sum(MIXED_FILES.values())
    assert len(loaded.policy_set.policies) == EXPECTED_POLICIES
    assert len(loaded.policy_set.cidr_groups) == EXPECTED_CIDR_GROUPS
    assert loaded.objects == EXPECTED_POLICIES + EXPECTED_CIDR_GROUPS + skipped


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_file_has_a_policy_and_lints_clean_on_its_own(path):
    loaded = load_policies([str(path)])
    modelled = len(loaded.policy_set.policies) + len(loaded.policy_set.cidr_groups)
    assert modelled >= 1, f"{path.name}: no policy or CIDR group was modelled"
    skipped = [d for d in loaded.diagnostics if d.code == "HF003"]
    assert len(skipped) == MIXED_FILES.get(path.name, 0), [d.message for d in skipped]
    assert loaded.objects == modelled + len(skipped), f"{path.name}: an object was dropped"
    # Self-contained: no file relies on another one (e.g. for DNS proxy coverage).
    report = lint_paths([str(path)])
    assert _problems(report) == []


def test_per_file_counts_add_up():
    policies = sum(len(load_policies([str(p)]).policy_set.policies) for p in FILES)
    groups = sum(len(load_policies([str(p)]).policy_set.cidr_groups) for p in FILES)
    assert (policies, groups) == (EXPECTED_POLICIES, EXPECTED_CIDR_GROUPS)


def test_strict_cli_exits_zero():
    result = CliRunner().invoke(lint, ["--strict", str(CORPUS)])
    assert result.exit_code == 0, result.output


def _features(policy_set: PolicySet) -> set[str]:
    """What the corpus exercises, so that trimming it does not silently lose coverage."""
    seen: set[str] = set()
    kinds = {policy.ref.kind for policy in policy_set.policies}
    seen.update(kind for kind in (CNP, CCNP) if kind in kinds)
    if policy_set.cidr_groups:
        seen.add("CiliumCIDRGroup")
    for rule in policy_set.rules:
        if rule.node_subject is not None:
            seen.add("nodeSelector")
        if rule.log_value:
            seen.add("log")
        if rule.labels:
            seen.add("labels")
        if rule.description:
            seen.add("description")
        if rule.subject is not None and any(r.operator != "In" for r in rule.subject.written):
            seen.add("set-based-subject")
        if rule.egress_deny or rule.ingress_deny:
            seen.add("deny")
        if not rule.default_deny_ingress and rule.ingress:
            seen.add("enableDefaultDeny-false")
        for peer in rule.peer_rules:
            seen.update(f"L3:{name}" for name in peer.l3_fields)
            seen.update(f"entity:{entity}" for entity in peer.entities or ())
            if peer.authentication:
                seen.add(f"auth:{peer.authentication}")
            for cidr in peer.cidrs or ():
                if cidr.excepts:
                    seen.add("except")
                if cidr.group_ref:
                    seen.add("cidrGroupRef")
                if cidr.group_selector:
                    seen.add("cidrGroupSelector")
            for service in peer.services or ():
                seen.add("k8sServiceSelector" if service.selector else "k8sService")
            for icmp in peer.icmps or ():
                seen.add(f"icmp:{icmp.family}:{'number' if icmp.type.isdigit() else 'name'}")
            for fqdn in peer.fqdns or ():
                seen.add("matchPattern" if fqdn.match_pattern else "matchName")
            for selector in peer.endpoints or ():
                seen.update(f"source:{r.key.split(':', 1)[0]}" for r in selector.written)
                if any("namespace" in r.key for r in selector.written):
                    seen.add("cross-namespace")
            if peer.ports is not None and not peer.l3_fields:
                seen.add("L4-only")
            for port_rule in peer.ports or ():
                seen.update(f"L7:{kind}" for kind in port_rule.l7_kinds)
                for port in port_rule.ports:
                    seen.add(f"proto:{port.protocol}")
                    if port.end_port:
                        seen.add("endPort")
                    if port.number is None:
                        seen.add("named-port")
    return seen


def test_corpus_covers_the_documented_patterns():
    features = _features(load_policies([str(CORPUS)]).policy_set)
    wanted = {
        CNP, CCNP, "CiliumCIDRGroup", "nodeSelector", "log", "labels", "description", "set-based-subject",
        "deny", "enableDefaultDeny-false", "auth:required", "except", "cidrGroupRef", "cidrGroupSelector",
        "k8sService", "k8sServiceSelector", "matchName", "matchPattern", "cross-namespace", "L4-only",
        "endPort", "named-port", "L7:http", "L7:dns", "L7:kafka",
        "icmp:IPv4:number", "icmp:IPv4:name", "icmp:IPv6:number", "icmp:IPv6:name",
        "source:k8s", "source:any", "source:reserved",
        "proto:TCP", "proto:UDP", "proto:SCTP", "proto:ANY",
        "L3:fromEndpoints", "L3:toEndpoints", "L3:fromCIDR", "L3:toCIDR", "L3:fromCIDRSet", "L3:toCIDRSet",
        "L3:fromEntities", "L3:toEntities", "L3:toServices", "L3:toFQDNs",
        "entity:world", "entity:cluster", "entity:host", "entity:remote-node", "entity:kube-apiserver",
        "entity:all", "entity:health",
    }  # fmt: skip
    assert wanted - features == set()


def test_every_check_has_a_section_in_docs_lint_md():
    """SARIF results link to docs/lint.md#<code>: every code needs its anchor and heading."""
    docs = (Path(__file__).parents[2] / "docs" / "lint.md").read_text(encoding="utf-8")
    missing = [
        code
        for code, check in CHECKS.items()
        if f'<a id="{code.lower()}"></a>' not in docs or f"## {code} {check.name}" not in docs
    ]
    assert missing == []
