#!/usr/bin/env python3
"""Write `flows.jsonl`: what Hubble (Cilium 1.18) records for the telemetry-block story.

my-app resolves and calls its SaaS providers (allowed: Cilium fills egress_allowed_by and
policy_log), its SDK beacons to *.telemetry.example.com and is dropped by the compiled deny
(POLICY_DENY — but Cilium <= 1.19 leaves egress_denied_by and policy_log empty on drops, and
the SYN retransmits arrive as drop notifications), and once it calls a hard-coded IP that no
policy allows (default deny, POLICY_DENIED): the one drop somebody should look at.

Run from the repository root: `.venv/bin/python examples/telemetry-block/make_flows.py`.
The output is deterministic and canonical (`hubble observe -o jsonpb` byte layout).
"""

from __future__ import annotations

import calendar
import sys
import time
from pathlib import Path
from typing import Any

from hushflow.flow.protojson import EventNormalizer, encode_event, format_timestamp

NODE = "demo/node-1"
T0 = calendar.timegm(time.strptime("2026-11-27T09:00:00", "%Y-%m-%dT%H:%M:%S"))


def pod(ns: str, name: str, app: str, ep_id: int, identity: int, workload: str) -> dict[str, Any]:
    return {
        "ID": ep_id,
        "identity": identity,
        "cluster_name": "demo",
        "namespace": ns,
        "labels": sorted(
            [
                f"k8s:app.kubernetes.io/name={app}",
                f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}",
                "k8s:io.cilium.k8s.policy.cluster=demo",
                f"k8s:io.cilium.k8s.policy.serviceaccount={app}",
                f"k8s:io.kubernetes.pod.namespace={ns}",
            ]
        ),
        "pod_name": name,
        "workloads": [{"name": workload, "kind": "Deployment"}],
    }


MY_APP = pod("my-namespace", "my-app-5d8f7c9b4-x2x7k", "my-app", 1201, 31001, "my-app")
POSTGRES = pod("my-namespace", "postgres-0", "postgres", 1202, 31002, "postgres")
INGRESS = pod("ingress-nginx", "ingress-nginx-controller-7f9d-q8w2z", "ingress-nginx", 1100, 30500, "ingress-nginx")
COREDNS = {
    "ID": 752,
    "identity": 25595,
    "cluster_name": "demo",
    "namespace": "kube-system",
    "labels": [
        "k8s:io.cilium.k8s.policy.cluster=demo",
        "k8s:io.kubernetes.pod.namespace=kube-system",
        "k8s:k8s-app=kube-dns",
    ],
    "pod_name": "coredns-6d4b75cb6d-k9l2m",
    "workloads": [{"name": "coredns", "kind": "Deployment"}],
}
IPS = {"my-app": "10.0.1.10", "postgres": "10.0.1.20", "ingress": "10.0.2.5", "coredns": "10.0.0.10"}
WORLD = {
    "api.stripe.com": ["54.187.174.169", "54.187.205.235"],
    "hooks.slack.com": ["3.120.17.221"],
    "ingest.telemetry.example.com": ["198.51.100.10"],
    "eu.telemetry.example.com": ["198.51.100.11", "198.51.100.12"],
}
SAAS_POLICY = {
    "name": "my-app-saas-egress",
    "namespace": "my-namespace",
    "labels": [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=my-app-saas-egress",
        "k8s:io.cilium.k8s.policy.namespace=my-namespace",
        "k8s:io.cilium.k8s.policy.uid=5b0f0c6e-8d0a-4c1e-9b7a-2f6c1d3e4a51",
    ],
    "revision": "4",
    "kind": "CiliumNetworkPolicy",
}


class Recorder:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.normalizer = EventNormalizer()
        self.t_ns = T0 * 10**9

    def emit(self, flow: dict[str, Any], dt: float = 0.05) -> None:
        self.t_ns += round(dt * 1e9)
        stamp = format_timestamp(self.t_ns // 10**9, self.t_ns % 10**9)
        flow = {"time": stamp, "node_name": NODE, **flow}
        event = self.normalizer.normalize({"flow": flow, "node_name": NODE, "time": stamp}).event
        self.lines.append(encode_event(event))

    def dns(self, name: str) -> None:
        port = 40000 + len(self.lines)
        base = {"Type": "L7", "event_type": {"type": 129}, "traffic_direction": "EGRESS", "verdict": "FORWARDED"}
        self.emit({
            **base,
            "IP": {"source": IPS["my-app"], "destination": IPS["coredns"], "ipVersion": "IPv4"},
            "l4": {"UDP": {"source_port": port, "destination_port": 53}},
            "source": MY_APP, "destination": COREDNS, "is_reply": False,
            "l7": {"type": "REQUEST", "dns": {"query": name + ".", "observation_source": "proxy", "qtypes": ["A"]}},
            "Summary": f"DNS Query {name}. A",
        })
        ips = WORLD[name]
        self.emit({
            **base,
            "IP": {"source": IPS["coredns"], "destination": IPS["my-app"], "ipVersion": "IPv4"},
            "l4": {"UDP": {"source_port": 53, "destination_port": port}},
            "source": COREDNS, "destination": MY_APP, "is_reply": True, "reply": True,
            "l7": {"type": "RESPONSE", "latency_ns": "1800000", "dns": {
                "query": name + ".", "ips": ips, "ttl": 60, "observation_source": "proxy",
                "qtypes": ["A"], "rrtypes": ["A"]}},
            "Summary": f"DNS Answer \"{','.join(ips)}\" TTL: 60 (Proxy {name}. A)",
        }, dt=0.002)

    def egress(self, dst_ip: str, port: int, names: list[str], verdict: str, *, identity: int = 2,
               labels: list[str] | None = None, drop: str | None = None, allowed_by: list[dict[str, Any]] | None = None,
               policy_log: list[str] | None = None, retransmits: int = 0) -> None:
        sport = 50000 + len(self.lines)
        flow: dict[str, Any] = {
            "verdict": verdict,
            "IP": {"source": IPS["my-app"], "destination": dst_ip, "ipVersion": "IPv4"},
            "l4": {"TCP": {"source_port": sport, "destination_port": port, "flags": {"SYN": True}}},
            "source": MY_APP,
            "destination": {"identity": identity, "labels": labels or ["reserved:world"]},
            "Type": "L3_L4", "destination_names": names, "event_type": {"type": 5},
            "traffic_direction": "EGRESS", "Summary": "TCP Flags: SYN",
        }
        if drop:
            flow["drop_reason_desc"] = drop
            flow["policy_match_type"] = 2 if drop == "POLICY_DENY" else 0
        else:
            flow["policy_match_type"] = 2
            flow["is_reply"] = False
        if allowed_by:
            flow["egress_allowed_by"] = allowed_by
        if policy_log:
            flow["policy_log"] = policy_log
        self.emit(flow)
        for attempt in range(retransmits):
            code = 181 if drop == "POLICY_DENY" else 133
            self.emit({
                "verdict": "DROPPED", "drop_reason": code,
                "IP": flow["IP"], "l4": flow["l4"], "source": MY_APP, "destination": flow["destination"],
                "Type": "L3_L4", "destination_names": names, "event_type": {"type": 1, "sub_type": code},
                "traffic_direction": "EGRESS", "file": {"name": "bpf_lxc.c", "line": 1379},
                "drop_reason_desc": drop, "Summary": "TCP Flags: SYN",
            }, dt=1.0 * (2 ** attempt))


def record() -> list[bytes]:
    rec = Recorder()
    for name in WORLD:
        rec.dns(name)
    # Allowed SaaS calls: Cilium names the allow rule and copies its log value.
    for name in ("api.stripe.com", "hooks.slack.com", "api.stripe.com"):
        fqdn_label = f"fqdn:{name}"
        rec.egress(WORLD[name][0], 443, [name], "FORWARDED", identity=16777217 + len(fqdn_label) % 7,
                   labels=[fqdn_label, "reserved:world"], allowed_by=[SAAS_POLICY], policy_log=["app-saas-egress"])
    # The SDK's telemetry beacons, denied by the compiled deny: nothing names the rule.
    for name, port in (("ingest.telemetry.example.com", 443), ("eu.telemetry.example.com", 80),
                       ("ingest.telemetry.example.com", 443)):
        rec.egress(WORLD[name][-1], port, [name], "DROPPED", drop="POLICY_DENY", retransmits=2)
    # The drop nobody planned: a hard-coded IP, no DNS, no policy allows it.
    rec.egress("203.0.113.50", 443, [], "DROPPED", drop="POLICY_DENIED", retransmits=2)
    # In-cluster traffic stays allowed.
    rec.emit({
        "verdict": "FORWARDED",
        "IP": {"source": IPS["my-app"], "destination": IPS["postgres"], "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 51000, "destination_port": 5432, "flags": {"SYN": True}}},
        "source": MY_APP, "destination": POSTGRES, "Type": "L3_L4", "is_reply": False,
        "event_type": {"type": 5}, "traffic_direction": "EGRESS", "policy_match_type": 2,
        "Summary": "TCP Flags: SYN",
    })
    rec.emit({
        "verdict": "FORWARDED",
        "IP": {"source": IPS["ingress"], "destination": IPS["my-app"], "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 51200, "destination_port": 8080, "flags": {"SYN": True}}},
        "source": INGRESS, "destination": MY_APP, "Type": "L3_L4", "is_reply": False,
        "event_type": {"type": 5}, "traffic_direction": "INGRESS", "policy_match_type": 2,
        "Summary": "TCP Flags: SYN",
    })
    return rec.lines


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("flows.jsonl")
    lines = record()
    out.write_bytes(b"\n".join(lines) + b"\n")
    print(f"wrote {len(lines)} flows to {out}")


if __name__ == "__main__":
    main()
