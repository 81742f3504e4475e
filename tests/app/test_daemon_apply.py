"""hushflow run --apply: CIDR groups server-side applied, per instance, recovered after a lost state.

No Kubernetes API server runs here: these tests run against tests.doubles.fake_apiserver.FakeApiServer, a
local test double of the few endpoints used; the daemon's code path (kubeconfig loader,
ApiClient, server-side apply, list with a label selector) is the production one.
"""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from prometheus_client import generate_latest

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


def compile_apply(tmp_path: Path, url: str) -> None:
    from click.testing import CliRunner

    from hushflow.cli import main

    result = CliRunner().invoke(main, [
        "compile", str(EXAMPLE), "--apply", "--kubeconfig", kubeconfig(tmp_path, url), "--no-resolve",
        "--state", str(tmp_path / "compile-state.json"), "--flows", str(EXAMPLE / "flows.jsonl"), "--clock", "flows",
    ])
    assert result.exit_code == 0, result.output


def test_compile_apply_and_run_apply_never_prune_each_others_groups_in_either_order(tmp_path):
    """Before: compile --apply pruned every group labelled managed-by=hushflow, the daemons' too."""
    compiled, relay, node = f"hushflow.{DENY_LABEL}", f"hushflow.{DENY_LABEL}.run", f"hushflow.{DENY_LABEL}.node-a"
    with FakeApiServer() as server:
        run(tmp_path, server.url, "")  # relay mode: no --instance
        run(tmp_path, server.url, "node-a")
        compile_apply(tmp_path, server.url)
        assert set(groups(server)) == {compiled, relay, node}
        run(tmp_path, server.url, "")
        compile_apply(tmp_path, server.url)
        assert set(groups(server)) == {compiled, relay, node}
        owners = {g["metadata"]["name"]: g["metadata"]["labels"]["hushflow.io/owner"]
                  for g in server.objects("CiliumCIDRGroup")}
        assert owners == {compiled: "compile", relay: "run.run", node: "run.node-a"}


def test_a_daemon_deletes_only_its_own_groups(tmp_path):
    with FakeApiServer() as server:
        compile_apply(tmp_path, server.url)
        daemon = Daemon(RunOptions(
            policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), apply=True,
            kubeconfig=kubeconfig(tmp_path, server.url), resolve=False, clock="flows",
        ))
        assert daemon.run() == 0
        # The compiled group has the name a daemon without --instance would never write; deleting it
        # by name is refused all the same (it is another owner's).
        result = daemon.writes._write([], [f"hushflow.{DENY_LABEL}"])  # type: ignore[union-attr]
        assert result.failed[f"hushflow.{DENY_LABEL}"][0] == "refused"
        assert f"hushflow.{DENY_LABEL}" in groups(server)


def test_a_failing_api_server_neither_loses_a_write_nor_stalls_the_flows(tmp_path):
    """503, 429, 409 and a 500: each group write is retried until the API server accepts it."""
    with FakeApiServer() as server:
        server.fail(503, method="PATCH", plural="ciliumcidrgroups", times=2)
        server.fail(429, method="PATCH", plural="ciliumcidrgroups", times=1)
        server.fail(409, method="PATCH", plural="ciliumcidrgroups", times=1)
        server.fail(500, method="GET", plural="ciliumcidrgroups", name=f"hushflow.{DENY_LABEL}.node-a", times=1)
        daemon = Daemon(RunOptions(
            policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), apply=True,
            kubeconfig=kubeconfig(tmp_path, server.url), instance="node-a", resolve=False, clock="flows",
        ))
        assert daemon.writes is not None
        daemon.writes.min_backoff = daemon.writes.max_backoff = 0.01
        assert daemon.run() == 0
        assert daemon.summary.flows == 25
        assert groups(server)[f"hushflow.{DENY_LABEL}.node-a"] == [
            "198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32"]
        failures = daemon.writes.stats.failures
        assert failures.get("api-5xx", 0) >= 2 and failures.get("api-429") == 1 and failures.get("api-409") == 1
        assert daemon.writes.depth() == 0
        text = generate_latest(daemon.registry).decode()
        assert 'hushflow_write_failures_total{reason="api-429",target="cidr-group"} 1.0' in text
        assert daemon.summary.leak_p99 is not None  # measured to the accepted write


def test_an_api_server_that_never_accepts_ends_a_finite_run_non_zero_with_the_flows_all_read(tmp_path):
    with FakeApiServer() as server:
        server.fail(503, method="PATCH", plural="ciliumcidrgroups")
        stderr = io.StringIO()
        daemon = Daemon(RunOptions(
            policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), apply=True,
            kubeconfig=kubeconfig(tmp_path, server.url), instance="node-a", resolve=False, clock="flows",
            drain_timeout=0.2,
        ), stderr=stderr)
        assert daemon.run() == 2
        assert daemon.summary.flows == 25  # reading never waited for the API server
        assert "did not land before the end" in stderr.getvalue()
        assert "CIDR group write failed, retrying" in stderr.getvalue()
        assert groups(server) == {}


def test_a_full_disk_is_reported_and_the_writes_land_when_space_returns(tmp_path, monkeypatch):
    import errno

    import hushflow.enforce.writer as writer

    real = writer.write_file_atomic
    full = {"left": 3}

    def write(path: str, text: str) -> None:
        if full["left"] > 0:
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, text)

    monkeypatch.setattr(writer, "write_file_atomic", write)
    stderr = io.StringIO()
    daemon = Daemon(RunOptions(
        policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), out_dir=str(tmp_path / "groups"),
        resolve=False, clock="flows",
    ), stderr=stderr)
    assert daemon.writes is not None
    daemon.writes.min_backoff = daemon.writes.max_backoff = 0.01
    assert daemon.run() == 0
    assert daemon.summary.flows == 25
    group = (tmp_path / "groups" / "ciliumcidrgroups" / f"hushflow.{DENY_LABEL}.run.yaml").read_text()
    assert "198.51.100.12/32" in group
    assert "No space left on device" in stderr.getvalue() and "[disk]" in stderr.getvalue()


def test_label_values_hushflow_generates_fit_kubernetes_rules_for_a_long_node_name(tmp_path):
    long_node = "ip-10-0-0-1." + "a" * 60 + ".compute.internal"
    with FakeApiServer() as server:
        run(tmp_path, server.url, long_node)
        (group,) = server.objects("CiliumCIDRGroup")
        labels = group["metadata"]["labels"]
        assert all(len(value) <= 63 for value in labels.values())
        assert len(group["metadata"]["name"]) <= 253
        # stable: a second run writes the same object, not a new one
        run(tmp_path, server.url, long_node)
        assert len(server.objects("CiliumCIDRGroup")) == 1


def test_a_restart_with_a_smaller_group_cap_deletes_the_groups_it_no_longer_needs(tmp_path):
    """Found by the RBAC test's helper: resharding at start-up left the old unsharded group behind."""
    def daemon(cap: int) -> Daemon:
        return Daemon(RunOptions(
            policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), apply=True,
            kubeconfig=kubeconfig(tmp_path, server.url), instance="node-a", resolve=False, clock="flows",
            group_cap=cap,
        ))

    with FakeApiServer() as server:
        assert daemon(1000).run() == 0
        assert set(groups(server)) == {f"hushflow.{DENY_LABEL}.node-a"}
        assert daemon(2).run() == 0
        found = groups(server)
        assert f"hushflow.{DENY_LABEL}.node-a" not in found
        assert sorted(ip for ips in found.values() for ip in ips) == [
            "198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32"]
