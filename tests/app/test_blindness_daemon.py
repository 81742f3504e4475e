"""hushflow run counts the connections an FQDN deny cannot see the name of, per workload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.enforce.resolver import ResolveResult
from hushflow.flow.times import flow_time

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
METRIC = "hushflow_unexplained_destinations_total"
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: block-tracker, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egressDeny:
  - toFQDNs: [{matchName: tracker.example.net}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  log: {value: tracker-blocked}
"""


def _pod(app: str, workload: str) -> dict[str, Any]:
    return {"ID": 7, "identity": 4242, "namespace": "shop", "pod_name": f"{workload}-5d8f-x2x7k",
            "labels": [f"k8s:app={app}", "k8s:io.kubernetes.pod.namespace=shop"],
            "workloads": [{"name": workload, "kind": "Deployment"}]}


def _time(second: int) -> str:
    return f"2026-11-27T09:00:{second:02d}Z"


def syn(ip: str, second: int, *, port: int = 443, app: str = "web", workload: str = "web") -> dict[str, Any]:
    return {"flow": {"time": _time(second), "verdict": "FORWARDED",
                     "IP": {"source": "10.0.1.10", "destination": ip, "ipVersion": "IPv4"},
                     "l4": {"TCP": {"source_port": 50000 + second, "destination_port": port, "flags": {"SYN": True}}},
                     "source": _pod(app, workload), "destination": {"identity": 2, "labels": ["reserved:world"]},
                     "Type": "L3_L4", "node_name": "c/node-1", "event_type": {"type": 5},
                     "traffic_direction": "EGRESS"}, "node_name": "c/node-1", "time": _time(second)}


def answer(name: str, ip: str, second: int, ttl: int = 300) -> dict[str, Any]:
    return {"flow": {"time": _time(second), "verdict": "FORWARDED",
                     "IP": {"source": "10.96.0.10", "destination": "10.0.1.10", "ipVersion": "IPv4"},
                     "l4": {"UDP": {"source_port": 53, "destination_port": 40000}},
                     "source": {"identity": 1234, "namespace": "kube-system", "labels": ["k8s:k8s-app=kube-dns"]},
                     "destination": _pod("web", "web"), "Type": "L7", "node_name": "c/node-1",
                     "l7": {"type": "RESPONSE", "dns": {"query": name + ".", "ips": [ip], "ttl": ttl, "rcode": 0}},
                     "event_type": {"type": 129}, "traffic_direction": "EGRESS", "is_reply": True},
            "node_name": "c/node-1", "time": _time(second)}


def run(tmp_path: Path, events: list[dict[str, Any]], *, policies: str | None = None,
        resolved: ResolveResult | None = None, **extra: Any) -> Daemon:
    if policies is None:
        (tmp_path / "policies").mkdir(exist_ok=True)
        (tmp_path / "policies" / "block.yaml").write_text(POLICY)
        policies = str(tmp_path / "policies")
    flows = tmp_path / "flows.jsonl"
    flows.write_text("".join(json.dumps(event) + "\n" for event in events))
    daemon = Daemon(RunOptions(policies=(policies,), input_files=(str(flows),), resolve=False, clock="flows",
                               min_ttl=0.0, **extra))
    if resolved is not None:  # what the resolver thread hands over, before the first flow
        daemon._resolved(resolved, flow_time(events[0]["flow"], events[0]), 0.0)
    assert daemon.run() == 0
    return daemon


def count(daemon: Daemon, **labels: str) -> float:
    return daemon.registry.get_sample_value(METRIC, labels) or 0.0


def test_the_examples_unplanned_drops_are_one_unexplained_destination(tmp_path):
    # my-app's three drops to 203.0.113.50:443 (a verdict and two SYN retransmits), which no DNS
    # answer names: the telemetry deny, which selects my-app on 443, cannot know that name.
    events = tmp_path / "events.jsonl"
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),),
                               resolve=False, clock="flows", events=(f"file:{events}",)))
    assert daemon.run() == 0
    assert count(daemon, namespace="my-namespace", workload="my-app") == 1
    # The telemetry IPs its DNS answers named, and everything else, are explained.
    assert daemon.summary.unexplained == {"my-namespace/my-app": 1}
    # The unexpected-drop event's explanation says why the deny did not stop it.
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert "no DNS answer seen for 203.0.113.50: the FQDN deny cnp my-namespace/app-external-block-policy" \
        in event["explain"]
    assert "docs/runbooks.md#hushflowunexplaineddestinations" in event["explain"]


def test_planted_connections(tmp_path):
    daemon = run(tmp_path, [
        syn("203.0.113.7", 1),  # no answer: counted
        syn("203.0.113.7", 2),  # the same connection again: not counted again
        answer("api.payments.example", "198.51.100.20", 3),
        syn("198.51.100.20", 4),  # an allowed name's answer explains it
        syn("203.0.113.8", 5, port=8443),  # not a denied port
        syn("203.0.113.9", 6, app="batch", workload="batch"),  # no deny selects batch
        syn("203.0.113.10", 7),  # another IP: counted
    ])
    assert count(daemon, namespace="shop", workload="web") == 2
    assert count(daemon, namespace="shop", workload="batch") == 0


def test_the_resolvers_answer_explains_its_ips(tmp_path):
    resolved = ResolveResult(answers={"tracker.example.net": (["203.0.113.7"], 600.0)})
    daemon = run(tmp_path, [syn("203.0.113.7", 1), syn("203.0.113.66", 2)], resolved=resolved)
    assert count(daemon, namespace="shop", workload="web") == 1  # only the IP the resolver did not return


def test_labels_follow_metric_labels_and_max_series(tmp_path):
    events = [syn(f"203.0.113.{n}", n, workload=f"web-{n}") for n in range(1, 4)]
    daemon = run(tmp_path, events, metric_context=frozenset({"namespace"}))
    assert count(daemon, namespace="shop", workload="") == 3
    daemon = run(tmp_path, events, max_series=1)
    assert count(daemon, namespace="shop", workload="web-1") == 1
    assert count(daemon, namespace="_other", workload="_other") == 2


def test_no_fqdn_deny_no_alarm(tmp_path):
    allow_only = POLICY.replace("egressDeny:", "egress:")
    (tmp_path / "allow").mkdir()
    (tmp_path / "allow" / "allow.yaml").write_text(allow_only)
    daemon = run(tmp_path, [syn("203.0.113.7", 1)], policies=str(tmp_path / "allow"))
    assert daemon.blindness is None
    assert count(daemon, namespace="shop", workload="web") == 0


def test_the_summary_names_the_workloads(tmp_path):
    import io

    from rich.console import Console

    from hushflow.cli.run import print_summary

    daemon = run(tmp_path, [syn("203.0.113.7", 1), syn("203.0.113.8", 2, app="web", workload="[bold]web-2[/]")])
    out = io.StringIO()
    print_summary(daemon.summary, Console(file=out, width=200, color_system=None))
    line = next(line for line in out.getvalue().splitlines() if line.startswith("unexplained destinations"))
    assert "shop/web 1" in line and "shop/[bold]web-2[/] 1" in line  # a name from the flows is printed, not markup
