"""hushflow run --apply: CIDR groups server-side applied, per instance, recovered after a lost state.

No Kubernetes API server runs here: these tests run against tests.doubles.fake_apiserver.FakeApiServer, a
local test double of the few endpoints used; the daemon's code path (kubeconfig loader,
ApiClient, server-side apply, list with a label selector) is the production one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from hushflow.app.daemon import Daemon, RunOptions
from tests.doubles.fake_apiserver import FakeApiServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
DENY_LABEL = "cnp.my-namespace.app-external-block-policy.egressdeny-0"


def kubeconfig(tmp_path: Path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "hushflow", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "hushflow"}}],
    }))
    return str(path)


def run(tmp_path: Path, url: str, instance: str, flows: bool = True) -> Daemon:
    daemon = Daemon(RunOptions(
        policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl" if flows else tmp_path / "empty"),),
        apply=True, kubeconfig=kubeconfig(tmp_path, url), instance=instance, resolve=False, clock="flows",
    ))
    assert daemon.run() == 0
    return daemon


def groups(server: FakeApiServer) -> dict[str, list[str]]:
    return {g["metadata"]["name"]: g["spec"]["externalCIDRs"] for g in server.objects("CiliumCIDRGroup")}


def test_each_instance_applies_only_its_own_groups(tmp_path):
    with FakeApiServer() as server:
        run(tmp_path, server.url, "node-a")
        run(tmp_path, server.url, "node-b")
        found = groups(server)
        assert found == {
            f"hushflow.{DENY_LABEL}.node-a": ["198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32"],
            f"hushflow.{DENY_LABEL}.node-b": ["198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32"],
        }
        labels = [g["metadata"]["labels"] for g in server.objects("CiliumCIDRGroup")]
        assert {lab["hushflow.io/instance"] for lab in labels} == {"node-a", "node-b"}
        assert all(lab["hushflow.io/deny"] == DENY_LABEL for lab in labels)


def test_a_new_pod_without_state_takes_the_learned_ips_back_from_the_cluster(tmp_path):
    (tmp_path / "empty").write_text("")
    with FakeApiServer() as server:
        run(tmp_path, server.url, "node-a")
        # The pod is replaced: no state file, no flows yet. The applied group must not be emptied.
        daemon = run(tmp_path, server.url, "node-a", flows=False)
        assert groups(server)[f"hushflow.{DENY_LABEL}.node-a"] == [
            "198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32"]
        assert sorted(daemon.state.ips(DENY_LABEL)) == ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
