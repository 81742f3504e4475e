"""The enforcing endpoint's namespace comes from `namespace` when `labels` do not carry it.

Cilium: the namespace label `k8s:io.kubernetes.pod.namespace` is one of every pod identity's labels
(pkg/k8s/apis/cilium.io/const.go, PodNamespaceLabel), and a CiliumNetworkPolicy's endpointSelector
is restricted to its own namespace through that label (pkg/k8s/apis/cilium.io/utils/utils.go).
Hubble fills `Endpoint.namespace` from the endpoint's Kubernetes metadata and `Endpoint.labels`
from the identity, separately (pkg/hubble/parser/common/endpoint.go), so a field-masked export or a
trimmed flow can keep `namespace` and lose the label; the pod is still in that namespace.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from hushflow.flow.connection import connection_of, endpoint_labels
from hushflow.policy.loading import load_policies
from tests.engine.conftest import WORLD, flow, pod
from tests.engine.test_decision import FQDN_DENY

NS_LABEL = "k8s:io.kubernetes.pod.namespace"

# (name, endpoint, labels the policy engine sees)
ROWS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("labels carry the namespace: as they are",
     {"namespace": "shop", "labels": ["k8s:app=web", f"{NS_LABEL}=shop"]}, ("k8s:app=web", f"{NS_LABEL}=shop")),
    ("namespace label missing: taken from namespace",
     {"namespace": "shop", "labels": ["k8s:app=web"]}, ("k8s:app=web", f"{NS_LABEL}=shop")),
    ("no labels at all: the namespace label alone",
     {"namespace": "shop", "identity": 12345}, (f"{NS_LABEL}=shop",)),
    ("a label that says another namespace is Cilium's and stands",
     {"namespace": "shop", "labels": ["k8s:app=web", f"{NS_LABEL}=other"]}, ("k8s:app=web", f"{NS_LABEL}=other")),
    ("no namespace: nothing added",
     {"labels": ["k8s:app=web"]}, ("k8s:app=web",)),
    ("empty namespace: nothing added",
     {"namespace": "", "labels": ["k8s:app=web"]}, ("k8s:app=web",)),
    ("reserved identity without labels: its reserved label",
     {"identity": 2}, ("reserved:world",)),
]


@pytest.mark.parametrize(("endpoint", "want"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_endpoint_labels(endpoint: dict[str, Any], want: tuple[str, ...]) -> None:
    assert endpoint_labels(endpoint) == want


def _policies(tmp_path: Path, *docs: str) -> Any:
    path = tmp_path / "policies.yaml"
    path.write_text("\n---\n".join(textwrap.dedent(d).strip() for d in docs) + "\n")
    return load_policies([str(path)]).policy_set


TELEMETRY = {"dst_ip": "198.51.100.1", "names": ["a.telemetry.example.com"]}


@pytest.mark.parametrize("trim", ["namespace label removed", "labels removed but app"])
def test_a_trimmed_flow_is_attributed_in_its_namespace(tmp_path: Path, trim: str) -> None:
    app = pod("shop", "web", 1001)
    app["labels"] = [label for label in app["labels"] if not label.startswith(NS_LABEL)]
    if trim == "labels removed but app":
        app["labels"] = ["k8s:app=web"]
    event = flow(app, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    conn = connection_of(event["flow"])
    assert conn is not None
    attribution = Attributor(_policies(tmp_path, FQDN_DENY)).observe(event)
    assert attribution is not None
    assert attribution.decision.outcome != "not-enforced"
    assert event["flow"]["policy_log"] == ["blocked"]
    assert attribution.expected is True
