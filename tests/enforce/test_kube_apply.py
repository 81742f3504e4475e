"""`hushflow compile --apply`: server-side apply, ownership, prune and dry run.

No Kubernetes API server can run here, so every test talks to `tests.doubles.fake_apiserver.FakeApiServer`,
a local HTTP test double of the few cilium.io/v2 endpoints hushflow uses, through the production
code path: the official `kubernetes.client.ApiClient` over real HTTP.
"""

from __future__ import annotations

import copy
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration

from hushflow.enforce.kube import ApplyResult, KubeApiError, apply_objects
from hushflow.enforce.kube_objects import ObjectRef
from tests.doubles.fake_apiserver import FakeApiServer

MANAGED = {"app.kubernetes.io/managed-by": "hushflow"}


def cidr_group(name: str, *cidrs: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumCIDRGroup",
        "metadata": {"name": name, "labels": dict(MANAGED if labels is None else labels)},
        "spec": {"externalCIDRs": list(cidrs)},
    }


def network_policy(name: str, namespace: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED)},
        "spec": {
            "endpointSelector": {"matchLabels": {"app.kubernetes.io/name": "my-app"}},
            "egressDeny": [{
                "toCIDRSet": [{"cidrGroupRef": group}],
                "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}, {"port": "80", "protocol": "TCP"}]}],
            }],
        },
    }


def clusterwide_policy(name: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": name, "labels": dict(MANAGED)},
        "spec": {"endpointSelector": {}, "egressDeny": [{"toCIDRSet": [{"cidrGroupRef": group}]}]},
    }


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake


@pytest.fixture
def api(server: FakeApiServer) -> Iterator[ApiClient]:
    client = ApiClient(Configuration(host=f"http://127.0.0.1:{server.port}"))
    yield client
    client.close()


def desired_set() -> list[dict[str, Any]]:
    return [
        network_policy("app-external-block-policy", "my-namespace", "hushflow-telemetry"),
        clusterwide_policy("hushflow-global-block", "hushflow-telemetry"),
        cidr_group("hushflow-telemetry", "192.0.2.10/32", "198.51.100.0/24"),
    ]


def test_create_applies_every_kind_at_its_url(server: FakeApiServer, api: ApiClient) -> None:
    """New objects are created with SSA at the URL of their kind, CIDR groups first.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    result = apply_objects(api, desired_set())

    assert result.ok, result.problems()
    assert sorted(result.created) == [
        ObjectRef("CiliumCIDRGroup", "hushflow-telemetry"),
        ObjectRef("CiliumClusterwideNetworkPolicy", "hushflow-global-block"),
        ObjectRef("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace"),
    ]
    assert result.updated == result.unchanged == result.deleted == []
    patches = [r.path for r in server.requests if r.method == "PATCH"]
    assert patches == [
        "/apis/cilium.io/v2/ciliumcidrgroups/hushflow-telemetry",
        "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies/hushflow-global-block",
        "/apis/cilium.io/v2/namespaces/my-namespace/ciliumnetworkpolicies/app-external-block-policy",
    ]
    stored = server.get("CiliumCIDRGroup", "hushflow-telemetry")
    assert stored is not None
    assert stored["spec"] == {"externalCIDRs": ["192.0.2.10/32", "198.51.100.0/24"]}
    assert stored["metadata"]["labels"] == MANAGED
    assert stored["metadata"]["managedFields"][0]["manager"] == "hushflow"
    cnp = server.get("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace")
    assert cnp is not None and cnp["spec"]["egressDeny"][0]["toCIDRSet"] == [{"cidrGroupRef": "hushflow-telemetry"}]
    assert "+  - 198.51.100.0/24" in result.diff
    assert result.summary() == "applied: 3 created, 0 updated, 0 unchanged, 0 deleted, 0 refused, 0 failed"


def test_update_changes_the_live_object(server: FakeApiServer, api: ApiClient) -> None:
    """A changed desired object is reported as updated, and the live object follows it.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, [cidr_group("hushflow-telemetry", "192.0.2.10/32")])
    before = server.get("CiliumCIDRGroup", "hushflow-telemetry")

    result = apply_objects(api, [cidr_group("hushflow-telemetry", "192.0.2.10/32", "203.0.113.7/32")])

    assert result.updated == [ObjectRef("CiliumCIDRGroup", "hushflow-telemetry")]
    assert result.created == result.unchanged == []
    after = server.get("CiliumCIDRGroup", "hushflow-telemetry")
    assert before is not None and after is not None
    assert after["spec"]["externalCIDRs"] == ["192.0.2.10/32", "203.0.113.7/32"]
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert "+  - 203.0.113.7/32" in result.diff
    assert "--- live/CiliumCIDRGroup/hushflow-telemetry" in result.diff


def test_second_apply_changes_nothing(server: FakeApiServer, api: ApiClient) -> None:
    """Applying the same objects again reports them unchanged and leaves resourceVersions alone.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, desired_set())
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in server.objects()}

    result = apply_objects(api, desired_set())

    assert result.ok
    assert len(result.unchanged) == 3
    assert result.created == result.updated == result.deleted == []
    assert result.diff == ""
    assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in server.objects()} == versions


def test_prune_deletes_only_managed_cidr_groups_not_desired(server: FakeApiServer, api: ApiClient) -> None:
    """Prune deletes labelled CIDR groups that are no longer desired, and nothing else.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, [*desired_set(), cidr_group("hushflow-stale", "192.0.2.99/32"),
                        network_policy("old-policy", "my-namespace", "hushflow-stale")])
    server.put(cidr_group("someone-elses", "10.0.0.0/8", labels={}))
    server.put(cidr_group("other-tool", "10.1.0.0/16", labels={"app.kubernetes.io/managed-by": "argo"}))
    stale_uid = server.get("CiliumCIDRGroup", "hushflow-stale")["metadata"]["uid"]  # type: ignore[index]

    result = apply_objects(api, desired_set())

    assert result.deleted == [ObjectRef("CiliumCIDRGroup", "hushflow-stale")]
    assert server.get("CiliumCIDRGroup", "hushflow-stale") is None
    assert server.get("CiliumCIDRGroup", "someone-elses") is not None
    assert server.get("CiliumCIDRGroup", "other-tool") is not None
    assert server.get("CiliumCIDRGroup", "hushflow-telemetry") is not None
    # Only CIDR groups are pruned by default: the managed policy that is no longer desired stays.
    assert server.get("CiliumNetworkPolicy", "old-policy", "my-namespace") is not None
    lists = [r for r in server.requests if r.method == "GET" and r.path == "/apis/cilium.io/v2/ciliumcidrgroups"]
    assert lists[-1].param("labelSelector") == "app.kubernetes.io/managed-by=hushflow"
    deletes = [r for r in server.requests if r.method == "DELETE"]
    assert [d.path for d in deletes] == ["/apis/cilium.io/v2/ciliumcidrgroups/hushflow-stale"]
    assert deletes[0].body["preconditions"] == {"uid": stale_uid}
    assert "-  - 192.0.2.99/32" in result.diff and "+++ /dev/null" in result.diff


def test_prune_of_policies_when_asked(server: FakeApiServer, api: ApiClient) -> None:
    """prune_kinds extends pruning to policies; namespaced ones are listed across namespaces.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, [*desired_set(), network_policy("old-policy", "other-ns", "hushflow-telemetry")])

    result = apply_objects(api, desired_set(), prune_kinds=("CiliumCIDRGroup", "CiliumNetworkPolicy"))

    assert result.deleted == [ObjectRef("CiliumNetworkPolicy", "old-policy", "other-ns")]
    assert server.get("CiliumNetworkPolicy", "old-policy", "other-ns") is None
    assert server.get("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace") is not None


def test_foreign_object_is_refused_and_left_untouched(server: FakeApiServer, api: ApiClient) -> None:
    """An existing object without hushflow's label is refused; the other objects are applied.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    foreign = server.put(cidr_group("hushflow-telemetry", "10.0.0.0/8", labels={"team": "net"}))

    result = apply_objects(api, desired_set())

    assert [p.ref for p in result.refused] == [ObjectRef("CiliumCIDRGroup", "hushflow-telemetry")]
    message = str(result.refused[0])
    assert message.startswith("CiliumCIDRGroup hushflow-telemetry: exists and is not managed by hushflow")
    assert "app.kubernetes.io/managed-by=hushflow" in message
    assert not result.ok
    assert server.get("CiliumCIDRGroup", "hushflow-telemetry") == foreign
    assert not [r for r in server.mutating_requests() if r.path.endswith("/ciliumcidrgroups/hushflow-telemetry")]
    assert len(result.created) == 2
    assert "1 refused" in result.summary()


def test_dry_run_sends_dry_run_all_diffs_and_changes_nothing(server: FakeApiServer, api: ApiClient) -> None:
    """dry_run sends dryRun=All on every write, reports a diff and deletions, and stores nothing.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, [*desired_set(), cidr_group("hushflow-stale", "192.0.2.99/32")])
    before = server.objects()
    changed = desired_set()
    changed[2] = cidr_group("hushflow-telemetry", "192.0.2.10/32", "203.0.113.7/32")
    changed.append(cidr_group("hushflow-new", "198.51.100.1/32"))
    first_write = len(server.requests)

    result = apply_objects(api, changed, dry_run=True)

    assert result.dry_run and result.ok
    assert result.updated == [ObjectRef("CiliumCIDRGroup", "hushflow-telemetry")]
    assert result.created == [ObjectRef("CiliumCIDRGroup", "hushflow-new")]
    assert result.deleted == [ObjectRef("CiliumCIDRGroup", "hushflow-stale")]
    assert len(result.unchanged) == 2
    writes = [r for r in server.requests[first_write:] if r.method in ("PATCH", "DELETE")]
    assert len(writes) == 5  # four applies (unchanged ones too: SSA decides) and one delete
    assert all(w.param("dryRun") == "All" for w in writes)
    assert server.objects() == before
    assert "+  - 203.0.113.7/32" in result.diff
    assert "+++ desired/CiliumCIDRGroup/hushflow-new" in result.diff
    assert "-  - 192.0.2.99/32" in result.diff
    # Only the fields hushflow sets: no server-managed metadata in the diff.
    for noise in ("resourceVersion", "managedFields", "uid:", "creationTimestamp", "generation", "status"):
        assert noise not in result.diff
    assert result.summary() == (
        "dry run, nothing changed; would be: 1 created, 1 updated, 2 unchanged, 1 deleted, 0 refused, 0 failed"
    )


def test_diff_shows_fields_hushflow_no_longer_sets(server: FakeApiServer, api: ApiClient) -> None:
    """A field hushflow applied before and no longer sets shows as removed (SSA removes it).

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    with_annotation = cidr_group("hushflow-telemetry", "192.0.2.10/32")
    with_annotation["metadata"]["annotations"] = {"hushflow.io/source": "policies/a.yaml"}
    apply_objects(api, [with_annotation])

    result = apply_objects(api, [cidr_group("hushflow-telemetry", "192.0.2.10/32")], dry_run=True)

    assert result.updated == [ObjectRef("CiliumCIDRGroup", "hushflow-telemetry")]
    assert "-    hushflow.io/source: policies/a.yaml" in result.diff
    apply_objects(api, [cidr_group("hushflow-telemetry", "192.0.2.10/32")])
    stored = server.get("CiliumCIDRGroup", "hushflow-telemetry")
    assert stored is not None and "annotations" not in stored["metadata"]


def test_server_side_apply_wire_format(server: FakeApiServer, api: ApiClient) -> None:
    """Each apply is a PATCH with the SSA content type, fieldManager=hushflow, the full object.

    force=true is sent only for objects that already carry hushflow's label, never on a first
    create. Runs against the local test double (no Kubernetes API server runs here); the code path
    is the production one: the real kubernetes ApiClient over HTTP.
    """
    desired = cidr_group("hushflow-telemetry", "192.0.2.10/32", labels={})
    desired["status"] = {"ignored": True}
    desired["metadata"]["resourceVersion"] = "42"
    apply_objects(api, [desired])
    apply_objects(api, [desired])

    patches = [r for r in server.requests if r.method == "PATCH"]
    assert len(patches) == 2
    for patch in patches:
        assert patch.content_type == "application/apply-patch+yaml"
        assert patch.param("fieldManager") == "hushflow"
        assert patch.param("dryRun") is None
        assert patch.body == {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumCIDRGroup",
            "metadata": {"name": "hushflow-telemetry", "labels": MANAGED},
            "spec": {"externalCIDRs": ["192.0.2.10/32"]},
        }
        assert patch.headers["accept"] == "application/json"
    assert patches[0].param("force") is None
    assert patches[1].param("force") == "true"
    assert desired["metadata"]["resourceVersion"] == "42", "the caller's object is not modified"


def test_custom_field_manager_and_selector(server: FakeApiServer, api: ApiClient) -> None:
    """A per-node instance uses its own selector: it labels, lists and prunes only its objects.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    node_a = "app.kubernetes.io/managed-by=hushflow,hushflow.io/node=a"
    node_b = "app.kubernetes.io/managed-by=hushflow,hushflow.io/node=b"
    apply_objects(api, [cidr_group("hushflow-node-a", "192.0.2.1/32")], managed_selector=node_a,
                  field_manager="hushflow-a")
    apply_objects(api, [cidr_group("hushflow-node-b", "192.0.2.2/32")], managed_selector=node_b,
                  field_manager="hushflow-b")

    result = apply_objects(api, [], managed_selector=node_a, field_manager="hushflow-a")

    assert result.deleted == [ObjectRef("CiliumCIDRGroup", "hushflow-node-a")]
    stored_b = server.get("CiliumCIDRGroup", "hushflow-node-b")
    assert stored_b is not None
    assert stored_b["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "hushflow", "hushflow.io/node": "b"}
    assert stored_b["metadata"]["managedFields"][0]["manager"] == "hushflow-b"


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        pytest.param(403, "PATCH", "CiliumCIDRGroup hushflow-telemetry: forbidden: ", id="forbidden-apply"),
        pytest.param(409, "PATCH", "CiliumCIDRGroup hushflow-telemetry: conflict: ", id="conflict-apply"),
        pytest.param(422, "PATCH", "CiliumCIDRGroup hushflow-telemetry: invalid: ", id="invalid-apply"),
        pytest.param(403, "GET", "CiliumCIDRGroup hushflow-telemetry: forbidden: ", id="forbidden-get"),
        pytest.param(500, "PATCH", "CiliumCIDRGroup hushflow-telemetry: server error (HTTP 500): ", id="server-error"),
    ],
)
def test_api_errors_become_messages_naming_the_object(
    server: FakeApiServer, api: ApiClient, status: int, method: str, expected: str
) -> None:
    """An API error on one object is a readable message for it; the other objects still apply.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    server.fail(status, name="hushflow-telemetry", method=method,
                message='ciliumcidrgroups.cilium.io "hushflow-telemetry" is refused by the test double')

    result = apply_objects(api, desired_set())

    assert [str(p) for p in result.failed] == [
        expected + 'ciliumcidrgroups.cilium.io "hushflow-telemetry" is refused by the test double'
        + {403: f"; hushflow's credentials need RBAC '{'patch' if method == 'PATCH' else 'get'}' on ciliumcidrgroups.cilium.io",
           409: "; another field manager owns a field hushflow sets (hushflow forces only objects labelled as its own)",
           }.get(status, "")
    ]
    assert len(result.created) == 2
    assert server.get("CiliumCIDRGroup", "hushflow-telemetry") is None
    assert "1 failed" in result.summary()


def test_real_conflict_on_first_apply_is_reported(server: FakeApiServer, api: ApiClient) -> None:
    """An object created by someone else between hushflow's GET and PATCH is not forced over.

    Simulated by failing only the first GET with 404. Runs against the local test double (no
    Kubernetes API server runs here); the code path is the production one: the real kubernetes
    ApiClient over HTTP.
    """
    server.put(cidr_group("hushflow-telemetry", "10.0.0.0/8"), manager="kubectl")
    server.fail(404, name="hushflow-telemetry", method="GET", times=1)

    result = apply_objects(api, [cidr_group("hushflow-telemetry", "192.0.2.10/32")])

    assert len(result.failed) == 1
    assert str(result.failed[0]).startswith(
        'CiliumCIDRGroup hushflow-telemetry: conflict: Apply failed with 1 conflict(s): conflict with "kubectl"'
    )
    stored = server.get("CiliumCIDRGroup", "hushflow-telemetry")
    assert stored is not None and stored["spec"]["externalCIDRs"] == ["10.0.0.0/8"]


def test_prune_list_and_delete_errors(server: FakeApiServer, api: ApiClient) -> None:
    """A forbidden LIST skips pruning with a message; a failed DELETE names the object.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    apply_objects(api, [cidr_group("hushflow-stale", "192.0.2.99/32")])
    server.fail(403, method="LIST", plural="ciliumcidrgroups", times=1)

    listed = apply_objects(api, [])

    assert [str(p) for p in listed.failed] == [
        "CiliumCIDRGroup (list app.kubernetes.io/managed-by=hushflow): forbidden: ciliumcidrgroups.cilium.io "
        "forbidden (injected by the test double); hushflow's credentials need RBAC 'list' on "
        "ciliumcidrgroups.cilium.io; nothing of this kind pruned"
    ]
    assert server.get("CiliumCIDRGroup", "hushflow-stale") is not None

    server.fail(403, method="DELETE", name="hushflow-stale", times=1)
    deleted = apply_objects(api, [])
    assert [p.ref for p in deleted.failed] == [ObjectRef("CiliumCIDRGroup", "hushflow-stale")]
    assert str(deleted.failed[0]).startswith("CiliumCIDRGroup hushflow-stale: forbidden: ")
    assert deleted.deleted == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
                     "ConfigMap x: hushflow applies only CiliumCIDRGroup, CiliumClusterwideNetworkPolicy, "
                     "CiliumNetworkPolicy, not ConfigMap", id="unknown-kind"),
        pytest.param({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "x"}},
                     "CiliumNetworkPolicy x: metadata.namespace is missing; hushflow does not guess a namespace "
                     "for a CiliumNetworkPolicy", id="namespace-missing"),
        pytest.param({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumCIDRGroup", "metadata": {"name": "x"}},
                     "CiliumCIDRGroup x: apiVersion is 'cilium.io/v2alpha1', hushflow applies cilium.io/v2",
                     id="wrong-version"),
        pytest.param({"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": {}},
                     "CiliumCIDRGroup #0: metadata.name is missing", id="name-missing"),
    ],
)
def test_objects_hushflow_cannot_apply_are_reported(
    server: FakeApiServer, api: ApiClient, obj: dict[str, Any], expected: str
) -> None:
    """Objects that are not hushflow output are reported without any request for them.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    result = apply_objects(api, [obj], prune_kinds=())

    assert [str(p) for p in result.failed] == [expected]
    assert server.requests == []


def test_unreachable_api_server_is_one_clear_error() -> None:
    """A closed port gives KubeApiError naming the host, not a urllib3 traceback.

    No server at all is involved; the code path is the production one: the real kubernetes ApiClient.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    client = ApiClient(configuration)
    try:
        with pytest.raises(KubeApiError, match=rf"cannot reach the Kubernetes API at http://127.0.0.1:{port}"):
            apply_objects(client, [cidr_group("hushflow-telemetry", "192.0.2.10/32")])
    finally:
        client.close()


def test_bad_selector_and_prune_kind_are_caller_errors(api: ApiClient) -> None:
    """Selectors hushflow cannot label with, and kinds it does not manage, are rejected up front.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    with pytest.raises(ValueError, match="only key=value terms"):
        apply_objects(api, [], managed_selector="app.kubernetes.io/managed-by!=hushflow")
    with pytest.raises(ValueError, match="does not manage 'ConfigMap'"):
        apply_objects(api, [], prune_kinds=("ConfigMap",))


def test_apply_result_summary_and_problems() -> None:
    """summary() is one line; problems() one line per refused or failed object (no server involved)."""
    result = ApplyResult(created=[ObjectRef("CiliumCIDRGroup", "a")], deleted=[ObjectRef("CiliumCIDRGroup", "b")])
    assert result.summary() == "applied: 1 created, 0 updated, 0 unchanged, 1 deleted, 0 refused, 0 failed"
    assert result.ok and result.problems() == []
    assert copy.copy(result) == result


def test_refusal_says_how_to_hand_a_policy_over(server: FakeApiServer, api: ApiClient) -> None:
    """The user's own policy, applied earlier with kubectl, is refused with the command to hand it over.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes ApiClient over HTTP.
    """
    mine = network_policy("app-external-block-policy", "my-namespace", "hushflow-telemetry")
    original = copy.deepcopy(mine)
    original["metadata"]["labels"] = {}
    original["spec"]["egressDeny"] = [{"toFQDNs": [{"matchPattern": "*.telemetry.example.com"}]}]
    server.put(original)

    refused = apply_objects(api, [mine], prune_kinds=())

    assert [str(p) for p in refused.refused] == [
        "CiliumNetworkPolicy my-namespace/app-external-block-policy: exists and is not managed by hushflow "
        "(no label app.kubernetes.io/managed-by=hushflow); left untouched: rename it in the hushflow output, or "
        "hand it over to hushflow with `kubectl label -n my-namespace ciliumnetworkpolicies.cilium.io "
        "app-external-block-policy app.kubernetes.io/managed-by=hushflow`"
    ]
    handed_over = server.get("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace")
    assert handed_over is not None
    handed_over["metadata"]["labels"] = dict(MANAGED)
    server.put(handed_over)  # what `kubectl label` does

    applied = apply_objects(api, [mine], prune_kinds=())

    assert applied.ok
    assert applied.updated == [ObjectRef("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace")]
    assert "-  - toFQDNs:" in applied.diff
    stored = server.get("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace")
    assert stored is not None and stored["spec"] == mine["spec"]


def test_client_without_param_serialize_is_a_clear_error() -> None:
    """A kubernetes client too old for hushflow gives one line saying what to install (no server involved)."""
    with pytest.raises(KubeApiError, match=r"pip install 'kubernetes>=37'"):
        apply_objects(object(), [])  # type: ignore[arg-type]  # deliberately not an ApiClient


# -- the test double keeps tests honest ---------------------------------------------------------------

def _raw(server: FakeApiServer, method: str, path: str, body: bytes | None = None,
         content_type: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.url + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_double_rejects_what_a_real_server_would(server: FakeApiServer) -> None:
    """The double accepts only apply patches with a field manager, and serves discovery.

    These are properties of the local test double itself (no Kubernetes API server runs here),
    checked so that the apply tests cannot pass on requests a real server would reject.
    """
    group = json.dumps(cidr_group("g", "192.0.2.1/32")).encode()
    path = "/apis/cilium.io/v2/ciliumcidrgroups/g"

    assert _raw(server, "PATCH", path, group, "application/merge-patch+json")[0] == 415
    status, body = _raw(server, "PATCH", path, group, "application/apply-patch+yaml")
    assert (status, body["reason"]) == (422, "Invalid")
    assert _raw(server, "PATCH", path + "?fieldManager=t&dryRun=Some", group, "application/apply-patch+yaml")[0] == 400
    wrong_name = json.dumps(cidr_group("other", "192.0.2.1/32")).encode()
    assert _raw(server, "PATCH", path + "?fieldManager=t", wrong_name, "application/apply-patch+yaml")[0] == 400
    assert _raw(server, "GET", "/apis/cilium.io/v2/namespaces/x/ciliumcidrgroups/g")[0] == 404
    assert server.objects() == []

    assert _raw(server, "PATCH", path + "?fieldManager=t", group, "application/apply-patch+yaml")[0] == 201
    assert _raw(server, "GET", "/apis/cilium.io/v2/ciliumcidrgroups?labelSelector=app.kubernetes.io/managed-by%3Dother")[1]["items"] == []
    assert _raw(server, "GET", "/apis/cilium.io/v2/ciliumcidrgroups?labelSelector=app.kubernetes.io/managed-by")[1]["items"][0]["metadata"]["name"] == "g"
    assert _raw(server, "GET", "/apis/cilium.io/v2/ciliumcidrgroups?labelSelector=x%20in%20(a)")[0] == 400
    assert _raw(server, "GET", "/version")[1]["gitVersion"].endswith("-hushflow-test-double")
    resources = _raw(server, "GET", "/apis/cilium.io/v2")[1]["resources"]
    assert {(r["name"], r["namespaced"]) for r in resources} == {
        ("ciliumnetworkpolicies", True), ("ciliumclusterwidenetworkpolicies", False), ("ciliumcidrgroups", False)}
