"""The bytes pre-check is a necessary condition: for any filter, a canonical line whose event
matches always passes ``line_may_match``. Checked with generated filters over Hubble's corpus."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hushflow.filter import FilterError, compile_filters

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


@cache
def corpus() -> tuple[tuple[bytes, dict[str, Any]], ...]:
    lines = gzip.decompress(GOLDEN.read_bytes()).splitlines()[::4]
    extra = [b'{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"2"},"node_name":"a","time":"2026-03-02T09:00:00Z"}']
    return tuple((line, orjson.loads(line)) for line in [*lines, *extra])


@cache
def vocabulary() -> dict[str, list[Any]]:
    vocab: dict[str, set[Any]] = {k: set() for k in ("ns", "pod", "label", "ip", "name", "node", "port", "wl", "cluster")}
    for _, event in corpus():
        flow = event.get("flow", {})
        for side in ("source", "destination"):
            ep = flow.get(side, {})
            if ep.get("namespace"):
                vocab["ns"].add(ep["namespace"])
            if ep.get("pod_name"):
                vocab["pod"].add(ep["pod_name"][:5])
            for label in ep.get("labels", []):
                key, _, value = label.partition(":")[2].partition("=")
                if value and "/" not in key:
                    vocab["label"].add(f"{key}={value}")
            for wl in ep.get("workloads", []):
                vocab["wl"].add(wl["name"])
            if ep.get("cluster_name"):
                vocab["cluster"].add(ep["cluster_name"])
        for key in ("source", "destination"):
            if flow.get("IP", {}).get(key):
                vocab["ip"].add(flow["IP"][key])
        vocab["name"].update(flow.get("destination_names", []))
        vocab["node"].add(flow.get("node_name", "x").split("/")[-1][:8] + "*")
        for proto in ("TCP", "UDP"):
            if proto in flow.get("l4", {}):
                vocab["port"].add(str(flow["l4"][proto].get("destination_port", 0)))
    return {k: sorted(v) for k, v in vocab.items()}


def field_strategy(vocab: dict[str, list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def pick(key: str) -> st.SearchStrategy[list[Any]]:
        return st.lists(st.sampled_from(vocab[key]), min_size=1, max_size=2)

    fields: dict[str, st.SearchStrategy[Any]] = {
        "verdict": st.lists(st.sampled_from(["FORWARDED", "DROPPED", "AUDIT", "VERDICT_UNKNOWN"]), min_size=1, max_size=2),
        "source_pod": pick("ns").map(lambda v: [f"{n}/" for n in v]),
        "destination_pod": st.one_of(pick("pod").map(lambda v: [f"/{p}" for p in v]), st.just(["/"])),
        "source_label": pick("label"),
        "destination_label": st.one_of(pick("label"), st.just(["!pci"]), st.just(["tier in (db, cache)"])),
        "source_ip": st.one_of(pick("ip"), st.just(["10.244.0.0/16"]), st.just(["0.0.0.0/0"])),
        "destination_fqdn": st.one_of(pick("name"), st.just(["*.amazonaws.com"]), st.just(["*"])),
        "node_name": pick("node"),
        "destination_port": pick("port"),
        "protocol": st.lists(st.sampled_from(["tcp", "udp", "icmp", "dns", "http"]), min_size=1, max_size=2),
        "event_type": st.lists(st.builds(lambda t: {"type": t}, st.sampled_from([0, 1, 4, 5, 129])), min_size=1, max_size=2),
        "traffic_direction": st.lists(st.sampled_from(["INGRESS", "EGRESS"]), min_size=1),
        "drop_reason_desc": st.lists(st.sampled_from(["POLICY_DENIED", "POLICY_DENY"]), min_size=1),
        "source_workload": pick("wl").map(lambda v: [{"name": n} for n in v]),
        "destination_cluster_name": pick("cluster"),
        "destination_identity": st.lists(st.sampled_from([1, 2, 6, 0]), min_size=1),
        "tcp_flags": st.lists(st.fixed_dictionaries({}, optional={"SYN": st.just(True), "ACK": st.just(True),
                                                                   "FIN": st.just(True)}), min_size=1, max_size=2),
        "reply": st.lists(st.booleans(), min_size=1, max_size=1),
        "http_url": st.just([""]),
        "experimental": st.sampled_from([
            {"cel_expression": ["_flow.verdict == Verdict.DROPPED"]},
            {"cel_expression": ["'pci-egress' in _flow.policy_log", "_flow.l7.dns.rcode == 3u"]},
            {"cel_expression": ["_flow.source.namespace != 'payments'"]},
        ]),
    }
    return st.dictionaries(st.sampled_from(sorted(fields)), st.just(None), min_size=1, max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: fields[k] for k in chosen})
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_precheck_never_rejects_a_matching_line(data: st.DataObject) -> None:
    strategy = field_strategy(vocabulary())
    allow = data.draw(st.lists(strategy, min_size=1, max_size=2))
    try:
        compiled = compile_filters(allow, [])
    except FilterError:  # e.g. http_url with a non-L7 event_type: Hubble rejects it too
        assume(False)
        return
    for line, event in corpus():
        if compiled(event):
            assert compiled.line_may_match(line), (allow, line[:160])
