#!/usr/bin/env python3
"""`hushflow suggest` beside hubble-audit2policy, on the same recorded flows: how many rules each
suggests, and what they would do, replayed with hushflow's replay against every recorded flow.

Usage: .venv/bin/python benchmarks/bench_suggest.py [--flows 20000] [--seed 1] [--no-audit2policy]

Scenarios: examples/telemetry-block (its policies and flows), and the corpus.py corpus of
--flows flows with benchmarks/policies/corpus.yaml (generated once into benchmarks/data/).

For each tool the proposal is the current policies plus what the tool suggests (hushflow: every
verified "allow", patched into the files; hubble-audit2policy: its generated policies added as one
more file), and the recorded flows are replayed against both sets:
- drops answered: the unexpected drops (DROPPED/AUDIT no planned deny explains, as `suggest` finds
  them) that the proposal newly allows;
- newly allowed beyond: every other flow the proposal newly allows (the planned drops stay denied
  in both: Cilium's deny wins over any allow);
- other changes: newly dropped (a new policy that puts an endpoint in default-deny), tags lost
  or changed;
- probes allowed: what the recorded flows cannot show, a rule's breadth. For each group, flows
  nobody recorded beside its first drop (the same port to an address no DNS answer names, the
  same peer on another port, another app's pod in the peer's namespace): an exact answer admits
  none of them;
- planned drops its allows cover: the planned drops the added allows admit once the deny rules
  are taken out of both sets (today the deny wins; the day the deny is edited or removed, these
  open). An allow that knows the intended denies covers none.
hubble-audit2policy runs on the DROPPED and AUDIT flows, as documented (it cannot tell a planned
drop from an unplanned one), and on the unexpected drops only (the input hushflow answers, its
best case); each plain (`--no-enrich`: its fallback selector `app: X`) and "enriched": each
`app: X` selector replaced by the labels its own cluster enrichment would read
(`_security_labels_to_match_labels` of the endpoint's security labels, which the flows carry),
since that enrichment needs `kubectl exec` into the Cilium pods of a live cluster.

hubble-audit2policy is installed for the benchmark only (`pip install --target` into
benchmarks/data/audit2policy/, never into the venv or pyproject). When it cannot be installed or
run, the table shows hushflow's figures alone and says why.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from hushflow.app.suggest import (  # noqa: E402
    SuggestOptions,
    apply_edits,
    proposed_policies,
    read_text,
    suggest,
)
from hushflow.engine.replay import Change, Replayer  # noqa: E402
from hushflow.policy.loading import load_policies  # noqa: E402
from hushflow.policy.model import BuildOptions  # noqa: E402

A2P_DIR = HERE / "data" / "audit2policy"
A2P_PACKAGE = "hubble-audit2policy"


@dataclass
class Outcome:
    tool: str
    policies: int  # policy objects added
    rules: int  # rule entries (egress/ingress items) added
    answered: int
    beyond: int  # flows newly allowed that are no unexpected drop
    beyond_connections: int  # distinct (workload, peer, port) among them
    other: Counter[str]
    seconds: float
    note: str = ""
    probes: int = 0  # probe flows (unrecorded peers and ports beside the drops) newly allowed
    overlap: int = 0  # planned drops the suggestion's allows admit (seen with every deny removed)


def install_audit2policy() -> tuple[Path | None, str]:
    """The directory hubble-audit2policy is installed in (installed on first use), or why not."""
    if (A2P_DIR / "hubble_audit2policy.py").exists():
        return A2P_DIR, ""
    A2P_DIR.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(A2P_DIR), A2P_PACKAGE], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (A2P_DIR / "hubble_audit2policy.py").exists():
        shutil.rmtree(A2P_DIR, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"pip install {A2P_PACKAGE} failed: {last}"
    return A2P_DIR, ""


def run_audit2policy(a2p: Path, flows: Path, out: Path, verdicts: tuple[str, ...]) -> tuple[str, str]:
    """Its generated policies (one multi-document file) and why not, as its CLI makes them."""
    env = dict(os.environ, PYTHONPATH=str(a2p), PATH="/usr/bin:/bin")  # no kubectl: --no-enrich anyway
    args = [sys.executable, "-m", "hubble_audit2policy", "--no-enrich", "--single-file", str(out), str(flows)]
    for verdict in verdicts:
        args[3:3] = ["--verdict", verdict]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not out.exists():
        return "", f"hubble-audit2policy exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return out.read_text(), ""


def enriched(a2p: Path, text: str, flows: list[dict[str, Any]]) -> str:
    """Its policies with every `{app: X}` selector replaced by the labels its cluster enrichment
    would give workload X (`_security_labels_to_match_labels` of the endpoint's security labels)."""
    import yaml

    sys.path.insert(0, str(a2p))
    import hubble_audit2policy as a2p_module

    keys = a2p_module.DEFAULT_LABEL_KEYS
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for event in flows:
        flow = event.get("flow") or {}
        for side in ("source", "destination"):
            endpoint = flow.get(side) or {}
            namespace, security = endpoint.get("namespace"), endpoint.get("labels") or []
            app = a2p_module._parse_identity_label(security, keys)
            if namespace and app and (namespace, app) not in labels:
                labels[(namespace, app)] = a2p_module._security_labels_to_match_labels(security)

    def replace(selector: dict[str, Any], namespace: str) -> dict[str, Any]:
        match = selector.get("matchLabels") or {}
        if set(match) - {"app", "k8s:io.kubernetes.pod.namespace"} or "app" not in match:
            return selector
        peer_namespace = match.get("k8s:io.kubernetes.pod.namespace", namespace)
        real = labels.get((peer_namespace, match["app"]))
        if real is None:
            return selector
        if peer_namespace != namespace:
            real = {**real, "k8s:io.kubernetes.pod.namespace": peer_namespace}
        return {"matchLabels": real}

    documents = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    for document in documents:
        namespace = document["metadata"].get("namespace", "")
        spec = document["spec"]
        spec["endpointSelector"] = replace(spec["endpointSelector"], namespace)
        for section, field in (("egress", "toEndpoints"), ("ingress", "fromEndpoints")):
            for rule in spec.get(section) or ():
                if field in rule:
                    rule[field] = [replace(selector, namespace) for selector in rule[field]]
    return yaml.safe_dump_all(documents, sort_keys=False)


def _count_rules(text: str) -> tuple[int, int]:
    import yaml

    documents = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    rules = sum(len(d["spec"].get(s) or ()) for d in documents for s in ("egress", "ingress", "egressDeny",
                                                                       "ingressDeny"))
    return len(documents), rules


_PROBE_IPS = {"v4": "198.18.7.7", "v6": "2001:db8:7::7"}


def probes_of(flows: list[dict[str, Any]], groups: list[Any]) -> list[dict[str, Any]]:
    """For each group of unexpected drops, flows nobody recorded beside its first drop: the same
    port to an address no DNS answer names, and the same peer on another port; for a pod peer, a
    pod of another app in the peer's namespace on the same port. An exact answer admits none."""
    import copy

    out = []
    for group in groups:
        event = flows[group.indices[0]]
        flow = event["flow"]
        peer_side, ip_key = ("destination", "destination") if group.direction == "egress" else ("source", "source")
        l4 = flow.get("l4") or {}
        other_address = copy.deepcopy(event)
        f = other_address["flow"]
        f["IP"][ip_key] = _PROBE_IPS["v6" if ":" in f["IP"][ip_key] else "v4"]
        f[peer_side] = {"identity": 2, "labels": ["reserved:world"]}
        f.pop("destination_names", None)
        f.pop("source_names", None)
        out.append(other_address)
        for protocol in ("TCP", "UDP", "SCTP"):
            if protocol in l4:
                other_port = copy.deepcopy(event)
                port = int(l4[protocol].get("destination_port", 0))
                other_port["flow"]["l4"][protocol]["destination_port"] = 8443 if port != 8443 else 8444
                out.append(other_port)
        peer = flow.get(peer_side) or {}
        if peer.get("namespace"):
            other_pod = copy.deepcopy(event)
            namespace = peer["namespace"]
            other_pod["flow"][peer_side] = {
                "identity": 65000, "namespace": namespace, "pod_name": "probe-other-0",
                "labels": ["k8s:app=probe-other", "k8s:app.kubernetes.io/name=probe-other",
                           f"k8s:io.kubernetes.pod.namespace={namespace}"],
                "workloads": [{"name": "probe-other", "kind": "Deployment"}]}
            out.append(other_pod)
    return out


def without_denies(policy_set: Any) -> Any:
    """The set with every deny rule removed (what the allows admit on their own)."""
    import dataclasses

    from hushflow.policy.model import PolicySet

    policies = [dataclasses.replace(policy, rules=tuple(
        dataclasses.replace(rule, egress_deny=(), ingress_deny=()) for rule in policy.rules))
        for policy in policy_set.policies]
    return PolicySet(policies, list(policy_set.cidr_groups), [])


def replay_outcome(tool: str, current: list[str], proposed_paths: list[str] | None, proposed_set: Any,
                   flows: list[dict[str, Any]], unexpected: set[int], planned: set[int], probes: list[dict[str, Any]],
                   seconds: float, policies: int, rules: int, note: str = "") -> Outcome:
    build = BuildOptions()
    current_set = load_policies(current, build).policy_set
    if proposed_set is None:
        proposed_set = load_policies(proposed_paths or [], build).policy_set
    bare = Replayer(without_denies(current_set), without_denies(proposed_set))
    overlap = 0
    for index, event in enumerate(flows):
        replay = bare.replay(event)
        if index in planned and replay is not None and replay.change is Change.NEWLY_ALLOWED:
            overlap += 1
    replayer = Replayer(current_set, proposed_set)
    answered = beyond = 0
    connections: set[tuple[str, str, str]] = set()
    other: Counter[str] = Counter()
    for index, event in enumerate(flows):
        replay = replayer.replay(event)
        if replay is None or replay.change is Change.UNCHANGED:
            continue
        if replay.change is Change.NEWLY_ALLOWED:
            if index in unexpected:
                answered += 1
            else:
                beyond += 1
                connections.add((replay.workload, replay.peer, replay.port))
        else:
            other[replay.change.value] += 1
    probed = sum(1 for event in probes
                 if (replay := replayer.replay(event)) is not None and replay.change is Change.NEWLY_ALLOWED)
    return Outcome(tool, policies, rules, answered, beyond, len(connections), other, seconds, note, probed, overlap)


def planned_drops(result: Any) -> set[int]:
    """Positions of the planned drops (a planned deny's tag), attributed as suggest does."""
    from hushflow.app.enrich import make_attributor

    attributor = make_attributor(result.loaded.policy_set)
    planned = set()
    for index, event in enumerate(result.recorded.events):
        attribution = attributor.observe(json.loads(json.dumps(event)))
        if attribution is not None and attribution.expected:
            planned.add(index)
    return planned


def scenario(name: str, policies: Path, flows_path: Path, a2p: Path | None, why_not: str) -> list[Outcome]:
    start = time.perf_counter()
    result = suggest(SuggestOptions(policies=(str(policies),), inputs=(str(flows_path),), actions=("allow",)))
    seconds = time.perf_counter() - start
    flows = result.recorded.events
    unexpected = {index for group in result.scan.groups for index in group.indices}
    planned = planned_drops(result)
    probes = probes_of(flows, result.scan.groups)
    verified = [s for s in result.suggestions if s.verified and s.edit is not None]
    edits = [s.edit for s in verified if s.edit is not None]
    texts = {edit.file: read_text(edit.file) for edit in edits}
    patched = apply_edits(texts, edits)
    proposed = proposed_policies(result.loaded, patched, BuildOptions()).policy_set
    new_policies = len({edit.policy for edit in edits if edit.new_policy is not None})
    rules = sum(len(edit.entries) or len(edit.fqdns) for edit in edits)
    refused = len(result.suggestions) - len(verified)
    outcomes = [replay_outcome(
        "hushflow suggest", [str(policies)], None, proposed, flows, unexpected, planned, probes, seconds,
        new_policies, rules,
        f"{len(result.scan.groups)} groups, {refused} without a verified allow" if refused else
        f"{len(result.scan.groups)} groups")]
    print(f"{name}: {result.recorded.stats.events:,} flows ({len(flows):,} policy verdicts and DNS records), "
          f"{result.scan.unexpected:,} unexpected drops in "
          f"{len(result.scan.groups)} groups, {result.scan.planned:,} planned drops; suggest took {seconds:.2f} s; "
          f"{len(probes)} probe flows")
    if a2p is None:
        print(f"  hubble-audit2policy: not run ({why_not})")
        return outcomes
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        drops_only = work / "unexpected.jsonl"
        drops_only.write_text("".join(json.dumps(flows[i]) + "\n" for i in sorted(unexpected)))
        runs = (("DROPPED+AUDIT flows", flows_path, False), ("DROPPED+AUDIT flows, enriched", flows_path, True),
                ("unexpected drops only", drops_only, False), ("unexpected drops only, enriched", drops_only, True))
        for label, source, enrich in runs:
            out = work / f"a2p-{len(outcomes)}.yaml"
            began = time.perf_counter()
            text, problem = run_audit2policy(a2p, source, out, ("DROPPED", "AUDIT"))
            took = time.perf_counter() - began
            if problem:
                print(f"  hubble-audit2policy ({label}): {problem}")
                continue
            if enrich:
                text = enriched(a2p, text, flows)
                out.write_text(text)
            count, rules = _count_rules(text) if text.strip() else (0, 0)
            outcomes.append(replay_outcome(
                f"hubble-audit2policy, {label}", [str(policies)], [str(policies), str(out)], None, flows,
                unexpected, planned, probes, took, count, rules))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    header = ("tool", "policies+", "rules+", "drops answered", "newly allowed beyond", "(connections)",
              "probes allowed", "planned drops its allows cover", "other changes", "seconds")
    rows = [header]
    for o in outcomes:
        other = ", ".join(f"{n:,} {kind}" for kind, n in sorted(o.other.items())) or "none"
        rows.append((o.tool + (f" [{o.note}]" if o.note else ""), str(o.policies), str(o.rules), f"{o.answered:,}",
                     f"{o.beyond:,}", f"{o.beyond_connections:,}", f"{o.probes:,}", f"{o.overlap:,}", other,
                     f"{o.seconds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = io.StringIO()
    for n, row in enumerate(rows):
        out.write("  " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  " + "-+-".join("-" * width for width in widths) + "\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=20_000, help="corpus size (default 20,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-audit2policy", action="store_true", help="hushflow's figures alone")
    args = parser.parse_args()
    a2p, why_not = (None, "--no-audit2policy") if args.no_audit2policy else install_audit2policy()
    from corpus import POLICIES, ensure_corpus

    example = ROOT / "examples" / "telemetry-block"
    corpus = ensure_corpus(args.flows, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        # Copies: suggest reads the files it would patch, and nothing here writes them.
        example_policies = Path(tmp) / "example"
        shutil.copytree(example / "policies", example_policies)
        corpus_policies = Path(tmp) / "corpus"
        corpus_policies.mkdir()
        shutil.copy(POLICIES, corpus_policies / "corpus.yaml")
        for name, policies, flows in (("examples/telemetry-block", example_policies, example / "flows.jsonl"),
                                      (f"corpus {corpus.name}", corpus_policies, corpus)):
            outcomes = scenario(name, policies, flows, a2p, why_not)
            print(table(outcomes))


if __name__ == "__main__":
    main()
