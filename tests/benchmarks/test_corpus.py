"""The benchmark corpus (benchmarks/corpus.py) is what a cluster would give Hubble to print.

The benchmarks measure hushflow on it, so it must be: lines ``hubble observe -o jsonpb`` prints
(they go through hushflow's reader unchanged, and through protobuf's own JSON parser), DNS
answers before the connections to their names, every kind of event hushflow handles, and
verdicts that benchmarks/policies/corpus.yaml explains (hushflow finds no disagreement).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from benchmarks.corpus import DENY_GROUPS, NODES, POLICIES, POLICY_LOGS, Cluster, generate
from benchmarks.corpus import main as corpus_main
from google.protobuf import json_format

from hushflow.enforce.compile import group_name
from hushflow.enforce.denies import fqdn_denies
from hushflow.engine.attribution import Attributor
from hushflow.flow.proto_dict import response_to_event
from hushflow.flow.protojson import EventNormalizer, encode_event, parse_timestamp
from hushflow.flow.reader import FlowReader, ReadStats
from hushflow.policy.loading import load_policies
from hushflow.policy.model import CCNP, PolicySet
from hushflow.proto import observer_pb2

FLOWS = 4000
SEED = 7


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return generate(FLOWS, SEED)


@pytest.fixture(scope="module")
def flows(lines: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line)["flow"] for line in lines]


@pytest.fixture(scope="module")
def policy_set() -> PolicySet:
    loaded = load_policies([str(POLICIES)])
    # hushflow's FQDN deny (HF020: Cilium cannot run it as written) is what the world is made of.
    errors = [d for d in loaded.diagnostics if d.level.name == "ERROR" and d.code != "HF020"]
    assert not errors, errors
    return loaded.policy_set


def _seconds(stamp: str) -> float:
    seconds, nanos = parse_timestamp(stamp)
    return seconds + nanos / 1e9


# -- the bytes ------------------------------------------------------------------------------------


def test_every_line_is_canonical_hubble_jsonpb(lines: list[bytes]) -> None:
    stats = ReadStats()
    reader = FlowReader(["-"], strict=True, stats=stats, stdin=io.BytesIO(b"\n".join(lines) + b"\n"))
    assert [event.raw for event in reader] == lines  # the fast path took every line as it is
    assert (stats.events, stats.converted, stats.bad_lines, stats.unknown_fields) == (FLOWS, 0, 0, set())
    normalizer = EventNormalizer()
    for line in lines:
        result = normalizer.normalize(orjson.loads(line))
        assert not result.changed, line
        assert encode_event(result.event) == line


def test_protobufs_own_parser_reads_every_line_back_to_the_same_bytes(lines: list[bytes]) -> None:
    for line in lines:
        message = json_format.Parse(line, observer_pb2.GetFlowsResponse())  # unknown field or enum: raises
        assert encode_event(response_to_event(message)) == line


def test_lines_are_hubble_sized_and_in_time_order(lines: list[bytes], flows: list[dict[str, Any]]) -> None:
    sizes = [len(line) for line in lines]
    assert 1600 <= sum(sizes) / len(sizes) <= 2200  # Hubble's ~1.85 KB
    assert max(sizes) < 64 * 1024  # the hubble CLI's line limit
    times = [_seconds(flow["time"]) for flow in flows]
    assert times == sorted(times)
    for line, flow in zip(lines, flows, strict=True):
        event = orjson.loads(line)
        assert (event["node_name"], event["time"]) == (flow["node_name"], flow["time"])
    assert len({flow["uuid"] for flow in flows}) == FLOWS


# -- the cluster ----------------------------------------------------------------------------------


def _kind(flow: dict[str, Any]) -> str:
    event_type = flow.get("event_type", {}).get("type")
    l7 = flow.get("l7", {})
    record = "dns" if "dns" in l7 else "http" if "http" in l7 else ""
    return " ".join(str(part) for part in (event_type, flow["verdict"], flow.get("drop_reason_desc", ""),
                                           record, l7.get("type", "")) if part)


def test_the_mix_holds_every_kind_of_event(flows: list[dict[str, Any]]) -> None:
    kinds = Counter(_kind(flow) for flow in flows)
    for kind in ("4 FORWARDED", "5 FORWARDED", "5 REDIRECTED", "5 AUDIT", "5 DROPPED POLICY_DENY",
                 "5 DROPPED POLICY_DENIED", "1 DROPPED POLICY_DENY", "1 DROPPED POLICY_DENIED",
                 "129 FORWARDED dns REQUEST", "129 FORWARDED dns RESPONSE", "129 FORWARDED http REQUEST",
                 "129 FORWARDED http RESPONSE"):
        assert kinds[kind], (kind, kinds)
    assert kinds["4 FORWARDED"] > FLOWS / 2  # traces are most of what Hubble sees
    points = Counter(flow.get("trace_observation_point") for flow in flows if "trace_observation_point" in flow)
    assert {"TO_ENDPOINT", "TO_OVERLAY", "TO_STACK", "TO_PROXY", "TO_HOST"} <= set(points)
    answers = [flow["l7"]["dns"] for flow in flows if flow.get("l7", {}).get("type") == "RESPONSE"
               and "dns" in flow["l7"]]
    assert any(a.get("ips") and a.get("ttl") for a in answers)
    assert any(a.get("rcode") == 3 for a in answers)  # search-path expansions
    assert any(a.get("cnames") for a in answers)
    tags = Counter(tag for flow in flows for tag in flow.get("policy_log", ()))
    assert {"pci-egress", "telemetry-export", "app-saas-egress"} <= set(tags)
    assert len({flow["source"].get("namespace") for flow in flows}) >= 10
    assert len({flow["node_name"] for flow in flows}) == NODES


def test_connections_to_names_follow_their_dns_answers(flows: list[dict[str, Any]]) -> None:
    answered: dict[tuple[str, str], list[tuple[float, set[str]]]] = {}
    checked = 0
    for flow in flows:
        l7 = flow.get("l7", {})
        if l7.get("type") == "RESPONSE" and "dns" in l7 and l7["dns"].get("ips"):
            pod = (flow["destination"]["namespace"], flow["destination"]["pod_name"])
            name = l7["dns"]["query"].rstrip(".")
            answered.setdefault((*pod, name), []).append((_seconds(flow["time"]), set(l7["dns"]["ips"])))
        names = flow.get("destination_names")
        if names and flow.get("traffic_direction") == "EGRESS" and flow["source"].get("pod_name"):
            t = _seconds(flow["time"])
            pod = (flow["source"]["namespace"], flow["source"]["pod_name"])
            for name in names:
                earlier = [ips for at, ips in answered.get((*pod, name), ()) if at <= t]
                assert any(flow["IP"]["destination"] in ips for ips in earlier), (pod, name, flow["time"])
                checked += 1
    assert checked > 100


def test_every_policy_the_flows_name_is_in_the_policy_file(policy_set: PolicySet) -> None:
    written = {(p.ref.kind, p.ref.namespace, p.ref.name) for p in policy_set.policies}
    for key, entry in Cluster().policies.items():
        assert (entry.kind, entry.namespace, entry.name) in written, key
    # The CIDR groups the peers' identities name are the ones `hushflow compile` writes.
    assert sorted(DENY_GROUPS.values()) == sorted(group_name(d.id, 0, 0) for d in fqdn_denies(policy_set))
    by_name = {(p.ref.namespace, p.ref.name): p for p in policy_set.policies}
    for key, log in POLICY_LOGS.items():
        namespace, _, name = key.rpartition("/")
        assert {rule.log_value for rule in by_name[(namespace, name)].rules} == {log}, key
    assert by_name[("", "pci-isolation")].ref.kind == CCNP


# -- the verdicts ---------------------------------------------------------------------------------


def test_hushflow_agrees_with_every_verdict(lines: list[bytes], policy_set: PolicySet) -> None:
    attributor = Attributor(policy_set)
    outcomes: Counter[tuple[str, str]] = Counter()
    filled: Counter[tuple[str, str]] = Counter()
    for event in FlowReader(["-"], stdin=io.BytesIO(b"\n".join(lines))):
        attribution = attributor.observe(event.data)
        if attribution is not None:
            outcomes[(attribution.observed, attribution.decision.outcome)] += 1
            filled.update((attribution.observed, name) for name in attribution.filled)
    assert attributor.stats.disagreements == Counter()
    assert attributor.stats.unknown_direction == 0
    assert set(outcomes) == {("allowed", "allowed"), ("denied", "denied"), ("default-deny", "default-deny"),
                             ("audit", "denied"), ("audit", "default-deny")}
    # Cilium named the allow rules itself; hushflow fills what it leaves empty on drops and AUDIT.
    assert not any(name.endswith("_allowed_by") for _, name in filled)
    assert filled[("denied", "policy_log")] and filled[("denied", "egress_denied_by")]
    assert filled[("denied", "ingress_denied_by")] and filled[("audit", "egress_denied_by")]


def test_observe_enrich_reports_no_disagreement(lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hushflow", "observe", "--input-file", str(path), "--enrich", str(POLICIES),
         "--verdict", "DROPPED", "--not", "--cel-expression", "'telemetry-blocked' in _flow.policy_log",
         "-o", "jsonpb"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hushflow: attributed" in proc.stderr
    assert "disagree" not in proc.stderr
    unexpected = [json.loads(line)["flow"] for line in proc.stdout.splitlines()]
    # What is left once the planned telemetry drops are filtered out: default denies and PCI
    # denies (and requests an HTTP rule refused, which are L7 flows).
    assert all(flow["verdict"] == "DROPPED" for flow in unexpected)
    assert all("telemetry-blocked" not in flow.get("policy_log", ()) for flow in unexpected)
    policy_drops = [flow for flow in unexpected if flow["Type"] == "L3_L4"]
    assert {flow["drop_reason_desc"] for flow in policy_drops} == {"POLICY_DENIED", "POLICY_DENY"}
    assert {tuple(flow.get("policy_log", ())) for flow in policy_drops} == {(), ("pci-isolation",)}


# -- the generator --------------------------------------------------------------------------------


def test_the_same_seed_writes_the_same_corpus(lines: list[bytes]) -> None:
    assert generate(600, SEED) == lines[:600]
    assert generate(600, SEED + 1) != lines[:600]


def test_the_command_line_writes_the_corpus(lines: list[bytes], tmp_path: Path) -> None:
    out, stats = tmp_path / "flows.jsonl", tmp_path / "stats.json"
    assert corpus_main(["-n", "300", "--seed", str(SEED), "-o", str(out), "--stats", str(stats)]) == 0
    assert out.read_bytes() == b"\n".join(lines[:300]) + b"\n"
    assert sum(json.loads(stats.read_text()).values()) == 300
