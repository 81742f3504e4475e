"""Named ports (`port: http-alt`) resolve from pod specs; an unresolved one is "unknown", never allowed.

Decision table: one row per semantic, each group citing the Cilium file it comes from (read in
cilium/cilium main, 2026; the cases are written here, none is copied). A row is (id, policies,
pods given or not, flow, expected outcome, responsible policies).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from hushflow.engine.explain import explain_flow
from hushflow.engine.pods import PodIndex, is_port_name, load_pods
from hushflow.policy.loading import load_policies
from hushflow.policy.model import PolicySet
from tests.engine.conftest import WORLD, flow, pod


def cnp(name: str, spec: str) -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}"


API_SEL = "  endpointSelector: {matchLabels: {app: api}}\n"
WEB_SEL = "  endpointSelector: {matchLabels: {app: web}}\n"


def ports(*entries: str) -> str:
    return "    toPorts: [{ports: [" + ", ".join(entries) + "]}]\n"


def from_web(name: str, *entries: str) -> str:
    return cnp(name, API_SEL + "  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n" + ports(*entries))


def to_app(name: str, app: str, *entries: str, section: str = "egress") -> str:
    return cnp(name, WEB_SEL + f"  {section}:\n  - toEndpoints: [{{matchLabels: {{app: {app}}}}}]\n" + ports(*entries))


ALLOW_ALL_EGRESS = cnp("all-egress", WEB_SEL + "  egress:\n  - toEndpoints: [{}]\n")
ING_HTTP = from_web("ing-http", "{port: http-alt}")
ING_HTTP_UPPER = from_web("ing-http-upper", "{port: HTTP-ALT, protocol: TCP}")
ING_ADMIN = from_web("ing-admin", "{port: admin}")
ING_STATS_TCP = from_web("ing-stats-tcp", "{port: stats, protocol: TCP}")
ING_RANGE = from_web("ing-range", "{port: http-alt, endPort: 9000}")
ING_LOW_END = from_web("ing-low-end", "{port: http-alt, endPort: 8000}")
EG_HTTP = to_app("eg-http", "api", "{port: http-alt}")
EG_LEGACY = to_app("eg-legacy", "legacy", "{port: http-alt}")
EG_ADMIN = to_app("eg-admin", "api", "{port: admin}")
EG_8080 = to_app("eg-8080", "api", '{port: "8080"}')
DENY_HTTP = to_app("deny-http", "api", "{port: http-alt}", section="egressDeny")

PODS_YAML = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: api-0, namespace: shop, labels: {app: api}}
  spec:
    containers:
    - name: app
      ports:
      - {name: http-alt, containerPort: 8080}
      - {name: stats, containerPort: 9125, protocol: UDP}
  status: {phase: Running, podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.2}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: api-1, namespace: shop, labels: {app: api}}
  spec:
    containers:
    - {name: app, ports: [{name: http-alt, containerPort: 8080, protocol: TCP}]}
  status: {phase: Running, podIP: 10.0.0.3}
- apiVersion: v1
  kind: Pod
  metadata: {name: legacy-0, namespace: shop, labels: {app: legacy}}
  spec:
    containers:
    - {name: app, ports: [{name: http-alt, containerPort: 8080}]}
  status: {phase: Running, podIP: 10.0.0.4}
- apiVersion: v1
  kind: Pod
  metadata: {name: legacy-1, namespace: shop, labels: {app: legacy}}
  spec:
    containers:
    - {name: app, ports: [{name: http-alt, containerPort: 9090}]}
  status: {phase: Running, podIP: 10.0.0.5}
"""

WEB = pod("shop", "web", 1001)
API = pod("shop", "api", 1002)
LEGACY = pod("shop", "legacy", 1003)
UNKNOWN_API = {**API, "pod_name": "api-7"}  # an api pod the pod specs do not hold
API_NO_NAME = {k: v for k, v in API.items() if k not in ("pod_name",)}  # trimmed flow: IP only


def ingress(dst: dict[str, Any], port: int, proto: str = "TCP", **kw: Any) -> dict[str, Any]:
    return flow(WEB, dst, direction="INGRESS", port=port, proto=proto, **kw)


def egress(dst: dict[str, Any], port: int, dst_ip: str = "10.0.0.2", **kw: Any) -> dict[str, Any]:
    return flow(WEB, dst, port=port, dst_ip=dst_ip, **kw)


DENIED = {"verdict": "DROPPED", "drop": "POLICY_DENY"}

# (id, policies, pods given, flow, outcome, responsible)
CASES = [
    # -- ingress: the enforcing pod's own container ports -----------------------------------------
    # pkg/endpoint/endpoint.go (GetNamedPort: ingress uses only the pod's own ports, GetK8sPorts);
    # pkg/types/portmap.go (NamedPortMap.GetNamedPort: unknown name, protocol must agree,
    # container port protocol defaults to TCP in newPortProto).
    ("ingress-resolved", [ING_HTTP], True, ingress(API, 8080), "allowed", ["ing-http"]),
    ("ingress-resolved-other-number", [ING_HTTP], True, ingress(API, 8081), "default-deny", []),
    ("ingress-name-not-declared-is-skipped", [ING_ADMIN], True, ingress(API, 8080), "default-deny", []),
    ("ingress-protocol-mismatch-any", [ING_HTTP], True, ingress(API, 8080, "UDP"), "default-deny", []),
    ("ingress-protocol-mismatch-declared-udp", [ING_STATS_TCP], True, ingress(API, 9125), "default-deny", []),
    ("ingress-found-by-ip", [ING_HTTP], True, ingress(API_NO_NAME, 8080), "allowed", ["ing-http"]),
    ("ingress-no-pod-specs", [ING_HTTP], False, ingress(API, 8080), "unknown", []),
    ("ingress-pod-not-in-specs", [ING_HTTP], True, ingress(UNKNOWN_API, 8080), "unknown", []),
    # pkg/policy/api/rule_validation.go (PortProtocol: an IANA service name is lowercased) and
    # pkg/iana/svcname.go (IsSvcName).
    ("ingress-name-case-ignored", [ING_HTTP_UPPER], True, ingress(API, 8080), "allowed", ["ing-http-upper"]),
    # -- egress: the destination's pods -------------------------------------------------------------
    # pkg/endpoint/endpoint.go (GetNamedPort: egress uses the named ports of all pods) and
    # pkg/types/portmap.go (NamedPortMultiMap.GetNamedPort: ErrUnknownNamedPort for a pod
    # not scheduled yet; ErrDuplicateNamedPorts when the identities give a name different numbers,
    # where newer releases' GetNamedPorts take each number instead).
    ("egress-resolved", [EG_HTTP], True, egress(API, 8080), "allowed", ["eg-http"]),
    ("egress-resolved-other-number", [EG_HTTP], True, egress(API, 9090), "default-deny", []),
    ("egress-two-pods-agree", [EG_HTTP], True, egress({**API, "pod_name": "api-1"}, 8080, "10.0.0.3"),
     "allowed", ["eg-http"]),
    ("egress-two-pods-disagree", [EG_LEGACY], True, egress(LEGACY, 8080, "10.0.0.4"), "unknown", []),
    ("egress-name-not-declared", [EG_ADMIN], True, egress(API, 8080), "unknown", []),
    ("egress-no-pod-specs", [EG_HTTP], False, egress(API, 8080), "unknown", []),
    ("egress-world-peer-has-no-named-ports", [cnp("eg-world", WEB_SEL + "  egress:\n  - toCIDR: [0.0.0.0/0]\n"
                                                  + ports("{port: http-alt}"))], False,
     egress(WORLD, 8080, "198.51.100.7"), "default-deny", []),
    # -- deny against allow ---------------------------------------------------------------------
    # pkg/policy/l4.go and pkg/policy/mapstate.go (a deny entry wins over every allow): a deny on a
    # named port hushflow cannot resolve may be what dropped the flow, so it is never "allowed".
    ("deny-resolved", [DENY_HTTP, ALLOW_ALL_EGRESS], True, egress(API, 8080, **DENIED), "denied", ["deny-http"]),
    ("deny-resolved-other-number", [DENY_HTTP, ALLOW_ALL_EGRESS], True, egress(API, 8081),
     "allowed", ["all-egress"]),
    ("deny-unresolved-never-allowed", [DENY_HTTP, ALLOW_ALL_EGRESS], False, egress(API, 8080, **DENIED),
     "unknown", []),
    ("deny-unresolved-over-numeric-allow", [DENY_HTTP, EG_8080], False, egress(API, 8080), "unknown", []),
    ("allow-unresolved-names-no-rule", [EG_HTTP], False, egress(API, 8080), "unknown", []),
    ("allow-numeric-stands-beside-unresolved", [EG_HTTP, EG_8080], False, egress(API, 8080),
     "allowed", ["eg-8080"]),
    # -- endPort with a name ----------------------------------------------------------------------
    # pkg/policy/l4.go (toMapState resolves the name, then PortRangeToMaskedPorts(resolved, EndPort))
    # and PortRangeToMaskedPorts in pkg/policy (an end at or below the start is the start alone).
    ("endport-from-the-resolved-number", [ING_RANGE], True, ingress(API, 8500), "allowed", ["ing-range"]),
    ("endport-the-number-itself", [ING_RANGE], True, ingress(API, 8080), "allowed", ["ing-range"]),
    ("endport-past-the-range", [ING_RANGE], True, ingress(API, 9001), "default-deny", []),
    ("endport-below-the-number-is-no-range", [ING_LOW_END], True, ingress(API, 8080), "allowed", ["ing-low-end"]),
    ("endport-below-the-number-not-below", [ING_LOW_END], True, ingress(API, 8000), "default-deny", []),
    ("endport-unresolved-is-unknown", [ING_RANGE], False, ingress(API, 8500), "unknown", []),
]


def build(tmp_path, docs: list[str]) -> PolicySet:
    path = tmp_path / "policies.yaml"
    path.write_text("\n---\n".join(textwrap.dedent(d).strip() for d in docs) + "\n")
    loaded = load_policies([str(path)])
    errors = [d for d in loaded.diagnostics if d.level.value == "error"]
    assert not errors, errors
    return loaded.policy_set


def pod_index(tmp_path, text: str = PODS_YAML) -> PodIndex:
    path = tmp_path / "pods.yaml"
    path.write_text(text)
    loaded = load_pods([str(path)])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return loaded.index


@pytest.mark.parametrize(
    ("docs", "with_pods", "event", "outcome", "responsible"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_named_ports(tmp_path, docs, with_pods, event, outcome, responsible):
    attributor = Attributor(build(tmp_path, docs), pods=pod_index(tmp_path) if with_pods else None)
    attribution = attributor.observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert sorted({m.rule.policy.name for m in attribution.decision.responsible}) == responsible


def test_an_allow_through_an_unresolved_name_never_tags_the_flow(tmp_path):
    attributor = Attributor(build(tmp_path, [EG_HTTP]))
    event = egress(API, 8080)
    attribution = attributor.observe(event)
    assert attribution is not None and attribution.decision.outcome == "unknown"
    assert "egress_allowed_by" not in event["flow"] and not attribution.responsible
    assert [m.rule.policy.name for m in attribution.decision.unknown] == ["eg-http"]


def test_a_deny_on_an_unresolved_name_is_explained_as_unknown(tmp_path):
    attributor = Attributor(build(tmp_path, [DENY_HTTP, ALLOW_ALL_EGRESS]))
    text = explain_flow(attributor, egress(API, 8080, **DENIED), "flows.json:3")
    assert text is not None
    assert "decision: unknown" in text
    assert "allowed" not in text.split("decision:")[1].splitlines()[0]
    assert "deny  cnp shop/deny-http" in text or "deny cnp shop/deny-http" in text
    assert "named port http-alt/ANY could not be resolved: no pod specs were given" in text


def test_explain_names_the_pod_that_lacks_the_name(tmp_path):
    attributor = Attributor(build(tmp_path, [EG_ADMIN]), pods=pod_index(tmp_path))
    text = explain_flow(attributor, egress(API, 8080), "flows.json:4")
    assert text is not None
    assert "no pod of shop/api-0's identity in the pod specs declares a port named admin" in text


def test_a_resolved_name_is_explained_with_its_pod(tmp_path):
    attributor = Attributor(build(tmp_path, [EG_HTTP]), pods=pod_index(tmp_path))
    text = explain_flow(attributor, egress(API, 8080), "flows.json:5")
    assert text is not None
    assert "port 8080/TCP is http-alt/ANY (8080): http-alt is 8080/TCP in pod shop/api-0" in text


def test_decisions_follow_pod_changes(tmp_path):
    """The watch of `run` changes the index under a live engine: cached decisions must not stand."""
    index = PodIndex()
    attributor = Attributor(build(tmp_path, [EG_HTTP]), pods=index)
    first = attributor.observe(egress(API, 8080))
    assert first is not None and first.decision.outcome == "unknown"
    index.replace_all(pod_index(tmp_path).pods())
    second = attributor.observe(egress(API, 8080))
    assert second is not None and second.decision.outcome == "allowed"
    index.remove("shop", "api-0")
    third = attributor.observe(egress(API, 8080))
    assert third is not None and third.decision.outcome == "unknown"


# -- the pod specs file: hostile input -------------------------------------------------------------


def test_bad_documents_are_counted_with_file_line_and_skipped(tmp_path):
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: not-a-pod}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {namespace: shop}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: api-0, namespace: shop, labels: {app: api}}
        spec:
          containers:
          - name: app
            ports:
            - {name: Bad_Name, containerPort: 1}
            - {name: http-alt, containerPort: "8080"}
            - {name: grpc, containerPort: 70000}
            - {name: sctp-ok, containerPort: 3868, protocol: SCTP}
        status: {podIP: not-an-ip}
        ---
        - a list, not an object
        """)
    path = tmp_path / "pods.yaml"
    path.write_text(text)
    loaded = load_pods([str(path)])
    problems = [str(p) for p in loaded.problems]
    assert len(problems) == 7, problems
    assert any(f"{path}:22" in p and "not a Kubernetes object" in p for p in problems)
    assert any(f"{path}:2" in p and "not a Pod" in p for p in problems)
    assert any(f"{path}:7" in p and "metadata.name" in p for p in problems)
    assert any(f"{path}:16" in p and "Bad_Name" in p for p in problems)
    assert any(f"{path}:17" in p and "'8080'" in p for p in problems)
    assert any(f"{path}:18" in p and "70000" in p for p in problems)
    assert any("not-an-ip" in p for p in problems)
    api = loaded.index.get("shop", "api-0")
    assert api is not None and [(p.name, p.port, p.protocol) for p in api.ports] == [("sctp-ok", 3868, "SCTP")]
    assert api.unreadable_ports == 3
    # A name the pod may declare in a port hushflow skipped is unknown, even on ingress.
    attributor = Attributor(build(tmp_path, [ING_HTTP]), pods=loaded.index)
    attribution = attributor.observe(ingress(API, 8080))
    assert attribution is not None and attribution.decision.outcome == "unknown"


def test_kubectl_json_output_is_read(tmp_path):
    listing = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "shop", "labels": {"app": "api"}},
         "spec": {"containers": [{"name": "app", "ports": [{"name": "http-alt", "containerPort": 8080}]}]},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]}},
    ]}
    path = tmp_path / "pods.json"
    path.write_text(json.dumps(listing, indent=2))
    loaded = load_pods([str(path)])
    assert not loaded.problems
    found, _ = loaded.index.find({}, "fd00::2")
    assert found is not None and found.ref == "shop/api-0"


def test_host_network_and_finished_pods_are_not_found_by_ip(tmp_path):
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: agent, namespace: kube-system}
        spec: {hostNetwork: true, containers: [{name: a, ports: [{name: metrics, containerPort: 9962}]}]}
        status: {podIP: 192.0.2.10}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: job-1, namespace: shop}
        spec: {containers: [{name: a}]}
        status: {phase: Succeeded, podIP: 10.0.0.9}
        """)
    index = pod_index(tmp_path, text)
    assert index.find({}, "192.0.2.10")[0] is None
    assert index.find({}, "10.0.0.9")[0] is None
    assert index.find({"namespace": "kube-system", "pod_name": "agent"}, "")[0] is not None


@pytest.mark.parametrize(
    ("name", "ok"),
    [("http", True), ("HTTP-alt", True), ("h2c-8080", True), ("8080", False), ("-http", False),
     ("http-", False), ("ht--tp", False), ("a234567890123456", False), ("", False), ("web_ui", False)],
)
def test_port_names_are_iana_service_names(name, ok):
    # pkg/iana/svcname.go (IsSvcName: RFC 6335 section 5.1).
    assert is_port_name(name) is ok


# -- --pods FILE: what the commands load ------------------------------------------------------------


def test_pods_file_that_cannot_be_used_is_refused_with_a_clear_message(tmp_path):
    from hushflow.app.enrich import PodSpecsError, load_pod_specs

    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    for paths, words in (([str(tmp_path / "missing.yaml")], "no such file"), ([str(broken)], f"{broken}:2"),
                         ([str(empty)], "no Pod found")):
        with pytest.raises(PodSpecsError, match=words):
            load_pod_specs(paths)


def test_pods_file_with_bad_documents_loads_the_rest_and_says_where(tmp_path):
    from hushflow.app.enrich import load_pod_specs

    path = tmp_path / "pods.yaml"
    path.write_text(PODS_YAML + "- apiVersion: v1\n  kind: Secret\n  metadata: {name: x}\n")
    index, skipped = load_pod_specs([str(path)])
    assert len(index) == 4
    assert skipped == [f"{path}:36:3 kind: a 'Secret' object, not a Pod: skipped"]
