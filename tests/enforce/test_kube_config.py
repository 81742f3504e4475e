"""Loading the Kubernetes client configuration: kubeconfig files, $KUBECONFIG, contexts, in-cluster.

The client that `load_kube_api` returns is checked against `tests.doubles.fake_apiserver.FakeApiServer`,
a local HTTP test double (no Kubernetes API server can run here), through the official
`kubernetes` config loader and `ApiClient`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hushflow.enforce.kube import apply_objects
from hushflow.enforce.kube_config import KubeConfigError, load_kube_api
from hushflow.enforce.kube_objects import ObjectRef
from tests.doubles.fake_apiserver import FakeApiServer
from tests.enforce.test_kube_apply import cidr_group


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake


def write_kubeconfig(path: Path, server_url: str, *, contexts: tuple[str, ...] = ("test",)) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "hushflow", "user": {"token": "test-token"}}],
        "contexts": [{"name": name, "context": {"cluster": "fake", "user": "hushflow"}} for name in contexts],
        "current-context": contexts[0],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_load_kube_api_from_kubeconfig_file(server: FakeApiServer, tmp_path: Path) -> None:
    """A kubeconfig written to tmp_path yields a client that applies with the kubeconfig's token.

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes config loader and ApiClient over HTTP.
    """
    kubeconfig = write_kubeconfig(tmp_path / "config", server.url, contexts=("test", "other"))

    client = load_kube_api(str(kubeconfig), "other", in_cluster=False)
    try:
        result = apply_objects(client, [cidr_group("hushflow-telemetry", "192.0.2.10/32")])
    finally:
        client.close()

    assert result.created == [ObjectRef("CiliumCIDRGroup", "hushflow-telemetry")]
    assert server.requests[0].headers["authorization"] == "Bearer test-token"


def test_load_kube_api_uses_kubeconfig_env(server: FakeApiServer, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --kubeconfig, $KUBECONFIG is read (as kubectl does).

    Runs against the local test double (no Kubernetes API server runs here); the code path is the
    production one: the real kubernetes config loader and ApiClient over HTTP.
    """
    kubeconfig = write_kubeconfig(tmp_path / "config", server.url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    client = load_kube_api(None, None, in_cluster=False)
    try:
        assert client.configuration.host == server.url
    finally:
        client.close()


def test_load_kube_api_errors_say_what_to_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing files, unknown contexts and a missing pod environment give one-line errors.

    No API server is contacted; the code path is the production kubernetes config loader.
    """
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    with pytest.raises(KubeConfigError, match=r"^no kubeconfig at .*/nope: check --kubeconfig$"):
        load_kube_api(str(tmp_path / "nope"), None, in_cluster=False)
    with pytest.raises(KubeConfigError,
                       match=r"^no kubeconfig at ~/.kube/config and not running in a pod: pass --kubeconfig$"):
        load_kube_api(None, None, in_cluster=False)
    with pytest.raises(KubeConfigError, match=r"^--in-cluster: not running in a pod"):
        load_kube_api(None, None, in_cluster=True)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeConfigError, match=r"^no kubeconfig at ~/.kube/config and the pod's service account is "
                                              r"unusable \(.*\): pass --kubeconfig$"):
        load_kube_api(None, None, in_cluster=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")

    kubeconfig = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:1", contexts=("prod", "staging"))
    with pytest.raises(KubeConfigError, match=r"has no context 'dev' \(it has: prod, staging\): check --context$"):
        load_kube_api(str(kubeconfig), "dev", in_cluster=False)

    broken = tmp_path / "broken"
    broken.write_text("clusters: [unclosed\n")
    with pytest.raises(KubeConfigError, match=r"^kubeconfig .*broken"):
        load_kube_api(str(broken), None, in_cluster=False)
