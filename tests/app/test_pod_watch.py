"""The pod watch of `hushflow run --watch-pods` against the Kubernetes API server double.

The double (tests/doubles/fake_apiserver.py) serves `GET /api/v1/pods` (list, with continue
pages) and its watch (chunked JSON events, 410 Gone after `compact_pod_events`), extended for
this watch. Waiting below is for a condition (with a generous cap), never an assertion on time;
retries wait through a fake that records the backoff instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.pod_watch import BACKOFF_FIRST, PodWatch
from hushflow.engine.pods import PodIndex
from tests.doubles.fake_apiserver import FakeApiServer


def api_pod(name: str, ip: str, port: int = 8080, app: str = "api", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http-alt", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip}, **extra}


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for: {what}")
        time.sleep(0.01)


class Watching:
    def __init__(self, server: FakeApiServer, **kwargs: Any) -> None:
        self.index = PodIndex()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reports: list[str] = []
        self.delays: list[float] = []

        def wait(seconds: float) -> bool:
            self.delays.append(seconds)
            return self.stopping.is_set()

        self.watch = PodWatch(ApiClient(Configuration(host=server.url)), self.index, self.lock, self.stopping,
                              report=self.reports.append, wait=wait, **kwargs)
        self.thread = threading.Thread(target=self.watch.run, daemon=True)

    def port_of(self, name: str) -> int | None:
        with self.lock:
            pod = self.index.get("shop", name)
        return pod.ports[0].port if pod is not None and pod.ports else None


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake


@pytest.fixture
def watching(server: FakeApiServer) -> Iterator[Watching]:
    running = Watching(server)
    yield running
    stop(server, running)


def stop(server: FakeApiServer, running: Watching) -> None:
    running.stopping.set()
    if running.thread.ident is None:
        return

    def ended() -> bool:
        server.end_pod_watches()  # again and again: a watch may open after the first call
        return not running.thread.is_alive()

    until(ended, "the watch thread to end")


def watch_requests(server: FakeApiServer) -> list[dict[str, str | None]]:
    return [{"resourceVersion": r.param("resourceVersion"), "timeoutSeconds": r.param("timeoutSeconds")}
            for r in server.requests if r.path == "/api/v1/pods" and r.param("watch") == "true"]


def test_lists_then_follows_adds_changes_and_deletes(server, watching):
    server.put_pod(api_pod("api-0", "10.0.0.2"))
    server.put_pod(api_pod("api-1", "10.0.0.3"))
    watching.thread.start()
    assert watching.watch.synced.wait(20)
    assert len(watching.index) == 2
    server.put_pod(api_pod("api-2", "10.0.0.4"))
    until(lambda: watching.port_of("api-2") == 8080, "the added pod")
    server.put_pod(api_pod("api-0", "10.0.0.2", port=9090))
    until(lambda: watching.port_of("api-0") == 9090, "the changed pod")
    server.delete_pod("shop", "api-1")
    until(lambda: watching.index.get("shop", "api-1") is None, "the deleted pod to leave")
    assert watching.watch.stats.lists == 1 and not watching.reports


def test_the_list_is_read_page_by_page(server, monkeypatch):
    monkeypatch.setattr("hushflow.app.pod_watch.PAGE_SIZE", 2)
    for number in range(5):
        server.put_pod(api_pod(f"api-{number}", f"10.0.0.{number + 2}"))
    running = Watching(server)
    running.thread.start()
    try:
        assert running.watch.synced.wait(20)
        assert len(running.index) == 5
        pages = [r.param("continue") for r in server.requests if r.path == "/api/v1/pods" and not r.param("watch")]
        assert pages == [None, "2", "4"]
    finally:
        stop(server, running)


def test_a_watch_that_ends_is_resumed_from_the_last_resource_version(server, watching):
    server.put_pod(api_pod("api-0", "10.0.0.2"))
    watching.thread.start()
    assert watching.watch.synced.wait(20)
    changed = server.put_pod(api_pod("api-0", "10.0.0.2", port=9090))
    until(lambda: watching.port_of("api-0") == 9090, "the change")
    server.end_pod_watches()  # the server's timeout
    until(lambda: len(watch_requests(server)) == 2, "the watch to resume")
    assert watch_requests(server)[1]["resourceVersion"] == changed["metadata"]["resourceVersion"]
    server.put_pod(api_pod("api-1", "10.0.0.3"))
    until(lambda: watching.port_of("api-1") == 8080, "an event after resuming")
    assert watching.watch.stats.lists == 1 and watching.watch.stats.relists == 0


def test_gone_lists_again(server, watching):
    server.put_pod(api_pod("api-0", "10.0.0.2"))
    watching.thread.start()
    assert watching.watch.synced.wait(20)
    server.compact_pod_events()  # the events since the list are gone from the server's memory
    server.put_pod(api_pod("api-1", "10.0.0.3"))
    server.compact_pod_events()
    server.end_pod_watches()
    until(lambda: watching.watch.stats.relists == 1, "410 Gone, then a new list")
    until(lambda: watching.port_of("api-1") == 8080, "the pod the lost event would have brought")
    assert watching.watch.stats.lists == 2


def test_failing_requests_back_off_then_recover(server, watching):
    server.put_pod(api_pod("api-0", "10.0.0.2"))
    server.fail(503, method="LIST", plural="pods", times=3)
    watching.thread.start()
    assert watching.watch.synced.wait(20)
    assert watching.delays == [BACKOFF_FIRST, BACKOFF_FIRST * 2, BACKOFF_FIRST * 4]
    assert len(watching.reports) == 3 and "HTTP 503" in watching.reports[0]
    assert watching.port_of("api-0") == 8080


def test_a_forbidden_watch_says_what_the_role_lacks(server, watching):
    server.fail(403, method="WATCH", plural="pods", times=1)
    watching.thread.start()
    until(lambda: watching.watch.stats.retries == 1, "the refused watch")
    assert "forbidden (the service account needs list and watch on pods)" in watching.reports[0]
    until(lambda: watching.watch.stats.watches == 1, "the watch after the backoff")
    until(lambda: watching.watch.up, "the watch to be up (hushflow_pod_watch_up 1)")


def test_the_watch_is_down_while_its_requests_fail(server, watching):
    """hushflow_pod_watch_up is 0 while lists fail (HushflowPodWatchDown alerts on it)."""
    server.fail(503, method="LIST", plural="pods", times=1000)
    watching.thread.start()
    until(lambda: watching.watch.stats.retries >= 2, "two failed lists")
    assert not watching.watch.up and not watching.watch.synced.is_set()


def test_bad_objects_are_counted_and_skipped(server, watching):
    server.put_pod(api_pod("api-0", "10.0.0.2"))
    server.put_pod({"metadata": {"name": "broken", "namespace": "shop", "labels": ["not", "a", "map"]}})
    watching.thread.start()
    assert watching.watch.synced.wait(20)
    assert len(watching.index) == 1 and watching.watch.stats.bad_objects == 1
    server.push_pod_watch_line(b"{not json")
    server.push_pod_watch_line(b'{"type": "SURPRISE", "object": {}}')
    server.push_pod_watch_line(b'{"type": "ADDED", "object": "a string"}')
    server.put_pod(api_pod("api-0", "10.0.0.2", port="8080"))  # type: ignore[arg-type]  # turned bad
    server.put_pod(api_pod("api-1", "10.0.0.3"))
    until(lambda: watching.port_of("api-1") == 8080, "the good event after the bad ones")
    until(lambda: watching.port_of("api-0") is None, "the malformed port to be dropped")
    api_0 = watching.index.get("shop", "api-0")
    assert api_0 is not None and api_0.unreadable_ports == 1  # its named ports now answer "unknown"
    assert watching.watch.stats.bad_objects == 5
    assert any("labels" in line for line in watching.reports)
    assert any("containerPort '8080'" in line for line in watching.reports)


def test_run_feeds_the_pod_watch_into_the_attribution(server, tmp_path):
    """`run --watch-pods`: a named port in a policy resolves from the cluster's pods."""
    import yaml

    server.put_pod(api_pod("api-0", "10.0.0.2"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "hushflow", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "hushflow"}}],
    }))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: to-api, namespace: shop}\n"
        "spec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress:\n"
        "  - toEndpoints: [{matchLabels: {app: api}}]\n    toPorts: [{ports: [{port: http-alt}]}]\n"
    )
    flows = tmp_path / "flows.jsonl"
    flows.write_text(
        '{"flow": {"time": "2026-01-01T00:00:10Z", "verdict": "FORWARDED", "IP": {"source": "10.0.0.1", '
        '"destination": "10.0.0.2"}, "l4": {"TCP": {"source_port": 40000, "destination_port": 8080}}, '
        '"source": {"identity": 1001, "namespace": "shop", "pod_name": "web-0", "labels": ["k8s:app=web", '
        '"k8s:io.kubernetes.pod.namespace=shop"]}, "destination": {"identity": 1002, "namespace": "shop", '
        '"pod_name": "api-0", "labels": ["k8s:app=api", "k8s:io.kubernetes.pod.namespace=shop"]}, '
        '"event_type": {"type": 5}, "traffic_direction": "EGRESS"}}\n'
    )
    daemon = Daemon(RunOptions(policies=(str(policy),), input_files=(str(flows),), watch_pods=True,
                               kubeconfig=str(kubeconfig), resolve=False, clock="flows"))
    assert daemon.run() == 0
    assert daemon.metrics.registry.get_sample_value("hushflow_pods_indexed") == 1  # exported for the dashboard
    assert daemon.attributor.stats.disagreements == {}  # allowed through http-alt = 8080, as Cilium did
    assert daemon.attributor.stats.filled["egress_allowed_by"] == 1


def test_run_watch_pods_without_a_cluster_says_so(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli import main

    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: shop}\n"
                      "spec:\n  endpointSelector: {}\n  egress: [{}]\n")
    flows = tmp_path / "flows.jsonl"
    flows.write_text("")
    result = CliRunner().invoke(main, ["run", "--policies", str(policy), "--input-file", str(flows), "--watch-pods",
                                       "--kubeconfig", str(tmp_path / "missing"), "--no-resolve"])
    assert result.exit_code != 0
    assert "--watch-pods: no kubeconfig at" in result.output
    assert "Traceback" not in result.output
