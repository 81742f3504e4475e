"""deploy/kubernetes/hardening: the ValidatingAdmissionPolicy enforces what the docs claim.

Its CEL is evaluated with the CEL runtime hushflow ships (cel-expr-python, Google's C++ CEL) the
way the API server evaluates a ValidatingAdmissionPolicy: the matchConditions first (a request
they do not match is not judged at all), then every validation; false refuses, and so does an
error, because failurePolicy is Fail. The variables are those of an AdmissionRequest: `object`
(null for DELETE), `oldObject` (null for CREATE) and `request` (operation, userInfo.username).
The policy uses standard CEL only (cel-expr-python has none of Kubernetes' own libraries, such
as isCIDR()/cidr() or the strings extension, and the policy needs none), so what passes here
means the same on the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from cel_expr_python import cel

from tests.deploy.apply_daemon import run_apply
from tests.deploy.manifests import KUBERNETES_DIR, mode, one, render
from tests.doubles.fake_apiserver import FakeApiServer

HUSHFLOW = "system:serviceaccount:hushflow:hushflow"
MANAGED_BY = "app.kubernetes.io/managed-by"
DENY = "cnp.payments.block-telemetry.egressdeny-0"

# Which validation refuses, by a word of its message.
NAME = "named hushflow.*"
OWNED = "labelled app.kubernetes.io/managed-by"
LABELS = "its own labels"
ADDRESSES = "single addresses"


def _policy() -> dict[str, Any]:
    return one(render(KUBERNETES_DIR / "hardening"), "ValidatingAdmissionPolicy")


@dataclass(frozen=True)
class Verdict:
    matched: bool
    allowed: bool
    refusals: tuple[str, ...]  # the messages of the validations that refused


class AdmissionPolicy:
    """A ValidatingAdmissionPolicy's CEL, compiled once, judged like the API server judges it."""

    def __init__(self, policy: Mapping[str, Any]) -> None:
        spec = policy["spec"]
        assert spec["failurePolicy"] == "Fail"
        dyn = cel.Type("dyn")
        # Only the variables a policy without params sees; anything else fails to compile here.
        env = cel.NewEnv(variables={"object": dyn, "oldObject": dyn, "request": dyn})
        self.conditions = [env.compile(c["expression"]) for c in spec.get("matchConditions", [])]
        self.validations = [(env.compile(v["expression"]), v["message"]) for v in spec["validations"]]

    def judge(self, operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None,
              username: str = HUSHFLOW) -> Verdict:
        data = {"object": new, "oldObject": old,
                "request": {"operation": operation, "userInfo": {"username": username}}}
        for condition in self.conditions:
            outcome = _evaluate(condition, data)
            if outcome is False:
                return Verdict(matched=False, allowed=True, refusals=())
            if outcome is not True:  # an error: failurePolicy Fail
                return Verdict(matched=True, allowed=False, refusals=("matchCondition error",))
        refusals = tuple(message for program, message in self.validations if _evaluate(program, data) is not True)
        return Verdict(matched=True, allowed=not refusals, refusals=refusals)


def _evaluate(program: Any, data: dict[str, Any]) -> object:
    """True, False, or None for an evaluation error (no such key, wrong type, ...)."""
    try:
        value = program.eval(data=data).value()
    except RuntimeError:
        return None
    return value if isinstance(value, bool) else None


@pytest.fixture(scope="module")
def policy() -> AdmissionPolicy:
    return AdmissionPolicy(_policy())


def group(name: str = f"hushflow.{DENY}", labels: dict[str, str] | None = None,
          cidrs: list[str] | None = None) -> dict[str, Any]:
    if labels is None:
        labels = {MANAGED_BY: "hushflow", "hushflow.io/owner": "run.run", "hushflow.io/deny": DENY,
                  "hushflow.io/policy": "block-telemetry", "hushflow.io/policy-namespace": "payments"}
    return {
        "apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup",
        "metadata": {"name": name, "labels": labels, "annotations": {"hushflow.io/rule": "x"}},
        "spec": {"externalCIDRs": ["198.51.100.10/32", "2001:db8::10/128"] if cidrs is None else cidrs},
    }


def relabelled(changes: Mapping[str, str | None]) -> dict[str, Any]:
    """The proper group with labels changed (key: value) or removed (key: None)."""
    labels = dict(group()["metadata"]["labels"])
    for key, value in changes.items():
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    return group(labels=labels)


PER_NODE = group(name=f"hushflow.{DENY}.node-a.0", labels={
    MANAGED_BY: "hushflow", "hushflow.io/owner": "run.node-a", "hushflow.io/instance": "node-a",
    "hushflow.io/deny": DENY, "hushflow.io/policy": "block-telemetry"})
FOREIGN = group(name="payments-egress", labels={MANAGED_BY: "argocd", "team": "payments"})

ALLOWED = [
    ("create a proper group", "CREATE", None, group()),
    ("create a per-node group", "CREATE", None, PER_NODE),
    ("create an empty group", "CREATE", None, group(cidrs=[])),
    ("create a group without spec", "CREATE", None, {**group(), "spec": {}}),
    ("update its own group", "UPDATE", group(), group(cidrs=["198.51.100.10/32", "198.51.100.11/32"])),
    ("delete its own group", "DELETE", group(), None),
    ("delete a per-node group", "DELETE", PER_NODE, None),
]

REFUSED = [
    ("create a name without the prefix", "CREATE", None, group(name="payments-egress"), {NAME}),
    ("create a name like the prefix", "CREATE", None, group(name="hushflow-telemetry"), {NAME}),
    ("create without managed-by", "CREATE", None, relabelled({MANAGED_BY: None}), {OWNED}),
    ("create managed by another", "CREATE", None, relabelled({MANAGED_BY: "argocd"}), {OWNED}),
    ("create without labels", "CREATE", None, group(labels={}), {OWNED}),
    ("create without metadata.labels", "CREATE", None,
     {**group(), "metadata": {"name": f"hushflow.{DENY}"}}, {OWNED}),
    ("create with a foreign label key", "CREATE", None, relabelled({"team": "payments"}), {LABELS}),
    ("create with another prefix's key", "CREATE", None, relabelled({"hushflow.io.evil/deny": DENY}), {LABELS}),
    ("create with an unknown hushflow key", "CREATE", None, relabelled({"hushflow.io/selected": "yes"}), {LABELS}),
    ("create 0.0.0.0/0", "CREATE", None, group(cidrs=["198.51.100.10/32", "0.0.0.0/0"]), {ADDRESSES}),
    ("create ::/0", "CREATE", None, group(cidrs=["::/0"]), {ADDRESSES}),
    ("create 10.0.0.0/8", "CREATE", None, group(cidrs=["10.0.0.0/8"]), {ADDRESSES}),
    ("create an IPv4 /24", "CREATE", None, group(cidrs=["198.51.100.0/24"]), {ADDRESSES}),
    ("create an IPv6 /32", "CREATE", None, group(cidrs=["2001:db8::/32"]), {ADDRESSES}),
    ("create an IPv4-mapped /96", "CREATE", None, group(cidrs=["::ffff:0.0.0.0/96"]), {ADDRESSES}),
    ("create an address without prefix", "CREATE", None, group(cidrs=["198.51.100.10"]), {ADDRESSES}),
    ("create a non-string entry", "CREATE", None, group(cidrs=[32]), {ADDRESSES}),  # type: ignore[list-item]
    ("create 0.0.0.0/0 in another field's place", "CREATE", None,
     {**group(), "spec": {"externalCIDRs": "0.0.0.0/0"}}, {ADDRESSES}),
    ("update that takes over an unlabelled group", "UPDATE", relabelled({MANAGED_BY: None}),
     group(), {OWNED}),
    ("update that takes over a foreign group", "UPDATE", FOREIGN,
     group(name="payments-egress"), {NAME, OWNED}),
    ("update that releases its group", "UPDATE", group(), relabelled({MANAGED_BY: None}), {OWNED}),
    ("update that adds a foreign label", "UPDATE", group(), relabelled({"team": "payments"}), {LABELS}),
    ("update that widens to 0.0.0.0/0", "UPDATE", group(), group(cidrs=["0.0.0.0/0"]), {ADDRESSES}),
    ("delete a foreign group", "DELETE", FOREIGN, None, {NAME, OWNED}),
    ("delete an unlabelled group with hushflow's name", "DELETE", relabelled({MANAGED_BY: None}),
     None, {OWNED}),
    ("delete a labelled group with another name", "DELETE", group(name="payments-egress"), None, {NAME}),
]


@pytest.mark.parametrize(("operation", "old", "new"), [case[1:] for case in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_hushflow_may_write_its_own_groups(
    policy: AdmissionPolicy, operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> None:
    verdict = policy.judge(operation, old, new)
    assert verdict == Verdict(matched=True, allowed=True, refusals=())


@pytest.mark.parametrize(("operation", "old", "new", "why"), [case[1:] for case in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_hushflow_may_not_write_anything_else(
    policy: AdmissionPolicy, operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None, why: set[str]
) -> None:
    verdict = policy.judge(operation, old, new)
    assert verdict.matched and not verdict.allowed
    # Each refusal names what is wrong: exactly the validations expected, no other.
    assert {word for word in (NAME, OWNED, LABELS, ADDRESSES) if any(word in m for m in verdict.refusals)} == why


@pytest.mark.parametrize("username", [
    "system:serviceaccount:kube-system:argocd-application-controller",
    "system:serviceaccount:hushflow:default",
    "system:serviceaccount:other:hushflow",
    "system:serviceaccount:hushflow:hushflow-ci",
    "kubernetes-admin",
])
def test_other_users_are_not_matched(policy: AdmissionPolicy, username: str) -> None:
    for _case, operation, old, new, _why in REFUSED:
        assert policy.judge(operation, old, new, username=username) == Verdict(matched=False, allowed=True,
                                                                                refusals=())


def test_it_applies_to_every_write_of_cidr_groups_and_denies() -> None:
    spec = _policy()["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [{
        "apiGroups": ["cilium.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE"],
        "resources": ["ciliumcidrgroups"],
    }]
    account = one(mode("relay"), "ServiceAccount")["metadata"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{account["namespace"]}:{account["name"]}"')
    binding = one(render(KUBERNETES_DIR / "hardening"), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": _policy()["metadata"]["name"], "validationActions": ["Deny"]}
    assert all(rule["reason"] == "Forbidden" for rule in spec["validations"])


@pytest.fixture(scope="module")
def applied_groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The CiliumCIDRGroups `hushflow run --apply` really writes, in relay mode (no instance) and
    per-node mode (instance = node), sharded (cap 2) and not, as the API server stores them."""
    tmp_path = tmp_path_factory.mktemp("admission")
    with FakeApiServer() as server:
        for instance, cap in (("", 1000), ("node-a", 2)):
            run_apply(tmp_path, server.url, instance=instance, group_cap=cap)
        groups = server.objects("CiliumCIDRGroup")
    assert len({g["metadata"]["labels"].get("hushflow.io/instance") for g in groups}) == 2
    return groups


def test_the_groups_hushflow_writes_are_admitted(policy: AdmissionPolicy, applied_groups: list[dict[str, Any]]) -> None:
    # If hushflow starts writing a label the policy does not know, the hardening would refuse
    # every write in the cluster: this fails first.
    for stored in applied_groups:
        name = stored["metadata"]["name"]
        assert policy.judge("CREATE", None, stored).allowed, name
        assert policy.judge("UPDATE", stored, stored).allowed, name
        assert policy.judge("DELETE", stored, None).allowed, name


def test_the_policy_says_what_it_enforces() -> None:
    text = (KUBERNETES_DIR / "hardening" / "cidrgroup-ownership-policy.yaml").read_text()
    for claim in ("hushflow.", "app.kubernetes.io/managed-by=hushflow", "cidrGroupSelector", "0.0.0.0/0", "::/0",
                  "Kubernetes >= 1.30"):
        assert claim in text, claim
