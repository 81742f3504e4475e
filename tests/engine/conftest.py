"""Builders for policy sets and flows used by the engine tests."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from hushflow.policy.loading import load_policies
from hushflow.policy.model import PolicySet


def pod(ns: str, app: str, identity: int = 1000) -> dict[str, Any]:
    return {
        "ID": identity % 4000 + 1,
        "identity": identity,
        "namespace": ns,
        "labels": [f"k8s:app={app}", "k8s:io.cilium.k8s.policy.cluster=c1", f"k8s:io.kubernetes.pod.namespace={ns}"],
        "pod_name": f"{app}-0",
    }


WORLD = {"identity": 2, "labels": ["reserved:world"]}


def flow(
    src: dict[str, Any],
    dst: dict[str, Any],
    *,
    src_ip: str = "10.0.0.1",
    dst_ip: str = "10.0.0.2",
    port: int = 443,
    proto: str = "TCP",
    verdict: str = "FORWARDED",
    direction: str = "EGRESS",
    drop: str | None = None,
    event_type: int = 5,
    names: list[str] | None = None,
    time: str = "2026-01-01T00:00:10Z",
    **extra: Any,
) -> dict[str, Any]:
    l4: dict[str, Any]
    if proto.startswith("ICMP"):
        l4 = {proto: {"type": port}}
    else:
        l4 = {proto: {"source_port": 40000, "destination_port": port}}
    f: dict[str, Any] = {
        "time": time,
        "verdict": verdict,
        "IP": {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv6" if ":" in dst_ip else "IPv4"},
        "l4": l4,
        "source": src,
        "destination": dst,
        "event_type": {"type": event_type},
        "traffic_direction": direction,
    }
    if names:
        f["destination_names"] = names
    if drop:
        f["drop_reason_desc"] = drop
        if event_type == 1:
            f["event_type"] = {"type": 1, "sub_type": 181 if drop == "POLICY_DENY" else 133}
    f.update(extra)
    return {"flow": f, "node_name": "c1/node", "time": time}


def dns_answer(client: dict[str, Any], name: str, ips: list[str], ttl: int = 60,
               time: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "flow": {
            "time": time,
            "verdict": "FORWARDED",
            "IP": {"source": "10.96.0.10", "destination": "10.0.0.1"},
            "source": pod("kube-system", "coredns"),
            "destination": client,
            "Type": "L7",
            "l7": {"type": "RESPONSE", "dns": {"query": name + ".", "ips": ips, "ttl": ttl}},
            "event_type": {"type": 129},
            "traffic_direction": "EGRESS",
            "is_reply": True,
        },
        "time": time,
    }


@pytest.fixture
def policies(tmp_path):
    def build(*docs: str) -> PolicySet:
        path = tmp_path / "policies.yaml"
        path.write_text("\n---\n".join(textwrap.dedent(d).strip() for d in docs) + "\n")
        loaded = load_policies([str(path)])
        errors = [d for d in loaded.diagnostics if d.code not in ("HF020",) and d.level.value == "error"]
        assert not errors, errors
        return loaded.policy_set

    return build
