#!/usr/bin/env python3
"""Write `flows.jsonl`: what Hubble (Cilium 1.20) records when every kind of policy is in play.

The namespace of the telemetry-block example, on a Cilium 1.20 cluster where a NetworkPolicy
isolates postgres and a Baseline ClusterNetworkPolicy keeps other namespaces out of the pods no
namespaced policy selects. Cilium 1.20 names the rule of its own policy verdicts (cilium#45373):
`*_allowed_by`, `*_denied_by` and `policy_log` are filled on the verdicts it can correlate.

- my-app's telemetry beacon, dropped by the compiled FQDN deny (CNP tier), with its tag;
- my-app to postgres, allowed by the NetworkPolicy;
- ingress-nginx to postgres, dropped by the NetworkPolicy's default deny (POLICY_DENIED);
- ingress-nginx to the reports pod, which no namespaced policy selects: the Baseline tier's Deny.

Run from the repository root: `.venv/bin/python examples/mixed-kinds/make_flows.py`. It reuses the
telemetry-block example's recorder, so both examples spell flows the same way.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TELEMETRY = runpy.run_path(str(HERE.parent / "telemetry-block" / "make_flows.py"))
Recorder, pod = TELEMETRY["Recorder"], TELEMETRY["pod"]
MY_APP, POSTGRES, INGRESS, IPS = TELEMETRY["MY_APP"], TELEMETRY["POSTGRES"], TELEMETRY["INGRESS"], TELEMETRY["IPS"]
REPORTS = pod("my-namespace", "reports-7c9d5b8f6-p4t2q", "reports", 1203, 31003, "reports")
REPORTS_IP = "10.0.1.30"


def entry(kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    labels = [f"k8s:io.cilium.k8s.policy.derived-from={kind}", f"k8s:io.cilium.k8s.policy.name={name}"]
    if namespace:
        labels.append(f"k8s:io.cilium.k8s.policy.namespace={namespace}")
    out: dict[str, Any] = {"name": name}
    if namespace:
        out["namespace"] = namespace
    out.update(labels=labels, revision="7", kind=kind)
    return out


def tcp(src: dict[str, Any], src_ip: str, dst: dict[str, Any], dst_ip: str, port: int, direction: str,
        verdict: str, **extra: Any) -> dict[str, Any]:
    flow = {
        "verdict": verdict,
        "IP": {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 52000 + port % 1000, "destination_port": port, "flags": {"SYN": True}}},
        "source": src, "destination": dst, "Type": "L3_L4", "event_type": {"type": 5},
        "traffic_direction": direction, "Summary": "TCP Flags: SYN",
    }
    flow.update(extra)
    return flow


def record() -> list[bytes]:
    rec = Recorder()
    rec.dns("ingest.telemetry.example.com")
    # The FQDN deny, compiled into a CiliumNetworkPolicy: Cilium 1.20 names it and its tag.
    rec.egress("198.51.100.10", 443, ["ingest.telemetry.example.com"], "DROPPED", drop="POLICY_DENY")
    beacon = rec.lines.pop()
    import orjson  # the recorder's line, with what Cilium 1.20 adds to it

    event = orjson.loads(beacon)
    event["flow"]["egress_denied_by"] = [entry("CiliumNetworkPolicy", "app-external-block-policy", "my-namespace")]
    event["flow"]["policy_log"] = ["app-explicit-traffic-blocked"]
    rec.emit({k: v for k, v in event["flow"].items() if k not in ("time", "node_name")}, dt=0.0)
    # The NetworkPolicy lets my-app reach postgres, and keeps ingress-nginx out (default deny).
    rec.emit(tcp(MY_APP, IPS["my-app"], POSTGRES, IPS["postgres"], 5432, "INGRESS", "FORWARDED",
                 policy_match_type=3, is_reply=False,
                 ingress_allowed_by=[entry("NetworkPolicy", "postgres-from-my-app", "my-namespace")]))
    rec.emit(tcp(INGRESS, IPS["ingress"], POSTGRES, IPS["postgres"], 5432, "INGRESS", "DROPPED",
                 drop_reason_desc="POLICY_DENIED"))
    # No namespaced policy selects the reports pod: the Baseline tier denies the other namespace.
    rec.emit(tcp(INGRESS, IPS["ingress"], REPORTS, REPORTS_IP, 8080, "INGRESS", "DROPPED",
                 drop_reason_desc="POLICY_DENY", policy_match_type=3,
                 ingress_denied_by=[entry("ClusterNetworkPolicy", "baseline-default-deny")]))
    return rec.lines


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "flows.jsonl"
    lines = record()
    out.write_bytes(b"\n".join(lines) + b"\n")
    print(f"wrote {len(lines)} flows to {out}")


if __name__ == "__main__":
    main()
