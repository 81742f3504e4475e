"""The ClusterRole grants exactly what `hushflow run --apply --watch-pods` calls, and nothing else.

Two sides, each checked against the manifests:
- RUN_APPLY_CALLS, the documented list of the requests the daemon's apply path makes
  (hushflow.app.cluster.Cluster over hushflow.enforce.kube), equals the rules granted;
- the daemon itself, run with --apply against the recording API server double
  (tests/doubles/fake_apiserver.py), sends only requests those rules allow, and uses every verb
  granted, so a new call in the code or a stale grant in the manifest fails here.
`compile --apply` (which writes policies too) runs from CI with the pipeline's credentials, never
with this service account: the role grants nothing on policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.apply_daemon import run_apply
from tests.deploy.manifests import MODES, mode, one
from tests.doubles.fake_apiserver import FakeApiServer, RecordedRequest

# (API group, resource, verb) -> the code that needs it.
RUN_APPLY_CALLS: dict[tuple[str, str, str], str] = {
    ("cilium.io", "ciliumcidrgroups", "list"):
        "Cluster.applied_groups (a new pod takes its learned IPs back) and the prune step: "
        "GET /apis/cilium.io/v2/ciliumcidrgroups?labelSelector=<its own labels>",
    ("cilium.io", "ciliumcidrgroups", "get"):
        "apply_objects / delete_named read the live group first (does it exist, is it hushflow's?)",
    ("cilium.io", "ciliumcidrgroups", "patch"):
        "apply_objects: server-side apply, PATCH application/apply-patch+yaml, fieldManager=hushflow",
    ("cilium.io", "ciliumcidrgroups", "create"):
        "the same PATCH when the group does not exist yet: the API server authorizes it as create too",
    ("cilium.io", "ciliumcidrgroups", "delete"):
        "prune / delete_named: DELETE of a group no longer needed, with a uid precondition",
    ("", "pods", "list"):
        "--watch-pods (hushflow.app.pod_watch): GET /api/v1/pods?limit=500, then again after 410 Gone",
    ("", "pods", "watch"):
        "--watch-pods: GET /api/v1/pods?watch=true&resourceVersion=N (named ports resolve from pod specs)",
}

# Served to every authenticated user by Kubernetes' system:discovery role: no grant needed.
DISCOVERY_PATHS = frozenset({"/api", "/apis", "/version", "/apis/cilium.io", "/apis/cilium.io/v2"})


@dataclass(frozen=True)
class Access:
    """One authorization check the API server makes for a request."""

    group: str
    resource: str
    verb: str
    name: str = ""


def _rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    return list(role["rules"])


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in _rules(role) for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _allows(role: dict[str, Any], access: Access) -> bool:
    """Kubernetes RBAC: some rule matches group, resource, verb (and resourceNames, if any)."""
    for rule in _rules(role):
        if access.group not in rule.get("apiGroups", []) or access.resource not in rule.get("resources", []):
            continue
        if access.verb not in rule["verbs"]:
            continue
        if rule.get("resourceNames") and access.name not in rule["resourceNames"]:
            continue
        return True
    return False


def checks_of(requests: list[RecordedRequest]) -> list[Access]:
    """The authorization checks the API server makes for these requests, in order.

    A server-side apply PATCH is authorized as `patch`, and also as `create` when the object does
    not exist yet (Kubernetes' patch handler checks create before creating); which objects exist
    is followed from the requests themselves (the double starts empty).
    """
    existing: set[tuple[str, str, str]] = set()
    checks: list[Access] = []
    for request in requests:
        if request.path in DISCOVERY_PATHS:
            continue
        parts = request.path.strip("/").split("/")
        if parts[0] == "api":
            group, rest = "", parts[2:]
        elif parts[0] == "apis":
            group, rest = parts[1], parts[3:]
        else:
            raise AssertionError(f"non-resource request {request.method} {request.path}: RBAC grants none")
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource, name = rest[0], rest[1] if len(rest) > 1 else ""
        if len(rest) > 2:
            resource = f"{resource}/{rest[2]}"
        key = (resource, namespace, name)
        if request.method == "GET":
            verb = ("watch" if request.param("watch") in ("true", "1") else "list") if not name else "get"
        elif request.method == "DELETE":
            verb = "delete" if name else "deletecollection"
            existing.discard(key)
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[request.method]
            if verb == "patch" and key not in existing:
                checks.append(Access(group, resource, "create", name))
            existing.add(key)
        checks.append(Access(group, resource, verb, name))
    return checks


@pytest.fixture(scope="module")
def daemon_requests(tmp_path_factory: pytest.TempPathFactory) -> list[RecordedRequest]:
    """What `hushflow run --apply` sends: a first pod that creates, updates, reshards (cap 2: the
    deny's 3 IPs outgrow one group, which is then deleted), and a second one that starts from the
    cluster's groups and updates them."""
    tmp_path = tmp_path_factory.mktemp("rbac")
    with FakeApiServer() as server:
        run_apply(tmp_path, server.url, instance="node-a", group_cap=2)
        run_apply(tmp_path, server.url, instance="node-a", group_cap=2)
        assert server.objects("CiliumCIDRGroup"), "the daemon applied nothing: the replay proves nothing"
        return list(server.requests)


@pytest.mark.parametrize("mode_name", MODES)
def test_the_role_grants_exactly_what_run_apply_calls(mode_name: str) -> None:
    role = one(mode(mode_name), "ClusterRole")
    for rule in _rules(role):
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no nonResourceURLs
        assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
    assert _granted(role) == set(RUN_APPLY_CALLS)


def test_the_role_grants_nothing_on_policies() -> None:
    # compile --apply writes CiliumNetworkPolicies with CI's credentials; the pod never reads them.
    resources = {resource for _group, resource, _verb in _granted(one(mode("relay"), "ClusterRole"))}
    assert resources == {"ciliumcidrgroups", "pods"}


@pytest.mark.parametrize("mode_name", MODES)
def test_pods_are_only_listed_and_watched(mode_name: str) -> None:
    # The pod watch reads pod specs (named ports): no get, no write, no subresource (exec, log).
    granted = {(group, resource, verb) for group, resource, verb in _granted(one(mode(mode_name), "ClusterRole"))
               if group == ""}
    assert granted == {("", "pods", "list"), ("", "pods", "watch")}


def test_every_request_of_the_daemon_is_allowed(daemon_requests: list[RecordedRequest]) -> None:
    role = one(mode("relay"), "ClusterRole")
    checks = checks_of(daemon_requests)
    refused = [check for check in checks if not _allows(role, check)]
    assert refused == [], f"RBAC would refuse: {refused}"


def test_the_daemon_uses_every_verb_granted(daemon_requests: list[RecordedRequest]) -> None:
    used = {(check.group, check.resource, check.verb) for check in checks_of(daemon_requests)}
    assert used == set(RUN_APPLY_CALLS)


@pytest.mark.parametrize(("method", "path", "query", "expected", "allowed"), [
    ("GET", "/apis/cilium.io/v2/ciliumcidrgroups", {}, [Access("cilium.io", "ciliumcidrgroups", "list")], True),
    ("GET", "/apis/cilium.io/v2/ciliumcidrgroups", {"watch": ["true"]},
     [Access("cilium.io", "ciliumcidrgroups", "watch")], False),
    ("PUT", "/apis/cilium.io/v2/ciliumcidrgroups/a", {}, [Access("cilium.io", "ciliumcidrgroups", "update", "a")],
     False),
    ("PATCH", "/apis/cilium.io/v2/namespaces/n/ciliumnetworkpolicies/p", {},
     [Access("cilium.io", "ciliumnetworkpolicies", "create", "p"),
      Access("cilium.io", "ciliumnetworkpolicies", "patch", "p")], False),
    ("DELETE", "/apis/cilium.io/v2/ciliumcidrgroups", {}, [Access("cilium.io", "ciliumcidrgroups", "deletecollection")],
     False),
    ("GET", "/api/v1/namespaces/hushflow/secrets/s", {}, [Access("", "secrets", "get", "s")], False),
    ("GET", "/api/v1/pods", {"watch": ["true"]}, [Access("", "pods", "watch")], True),
    ("GET", "/api/v1/pods", {}, [Access("", "pods", "list")], True),
    ("GET", "/api/v1/namespaces/shop/pods/p", {}, [Access("", "pods", "get", "p")], False),
    ("GET", "/api/v1/namespaces/shop/pods/p/log", {}, [Access("", "pods/log", "get", "p")], False),
])
def test_requests_map_to_the_checks_kubernetes_makes(
    method: str, path: str, query: dict[str, list[str]], expected: list[Access], allowed: bool
) -> None:
    request = RecordedRequest(method, path, query, None, {}, None, b"")
    assert checks_of([request]) == expected
    role = one(mode("relay"), "ClusterRole")
    assert [_allows(role, check) for check in expected] == [allowed] * len(expected)


def test_the_binding_is_for_hushflows_service_account() -> None:
    objects = mode("relay")
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hushflow"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_rbac_says_it_cannot_restrict_by_label() -> None:
    from tests.deploy.manifests import KUBERNETES_DIR

    text = (KUBERNETES_DIR / "common" / "rbac.yaml").read_text()
    assert "RBAC cannot restrict by label" in text and "app.kubernetes.io/managed-by=hushflow" in text
