#!/usr/bin/env python3
"""How fast is enrichment + filtering, and does it stay fast with many rules?

Usage: .venv/bin/python benchmarks/bench_enrich.py [--flows 1000000] [--seed 1] [--dns-names 1000000]

Uses the corpus.py corpus of bench_observe.py (generated once into benchmarks/data/) and the
policies of the cluster it simulates, benchmarks/policies/corpus.yaml (they agree on every
verdict: the enrichment summary printed below reports no disagreement). Each scenario runs in its
own subprocess and reports flows/s, the ratio to orjson parse-only of the same file in the same
run, and peak RSS:

- orjson parse-only (the ceiling);
- enrich + filter: `observe --enrich POLICIES --verdict DROPPED --not --cel-expression
  "'telemetry-blocked' in _flow.policy_log" -o jsonpb` (the issue's target: >= 35% of parse-only),
  with the real policies, then with only 10 rules, then with 10,000 rules (the real ones plus
  filler rules: in the same namespaces, in other namespaces, clusterwide, some selecting real pods);
  target: 10 -> 10,000 rules at most 2x slower;
- DNS knowledge holding N names (default 1,000,000): memory (target < 400 MB).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_observe import _parse_only  # noqa: E402

FILTER = ["--verdict", "DROPPED", "--not", "--cel-expression", "'telemetry-blocked' in _flow.policy_log"]
CNP_HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy"
NAMESPACES = ["payments", "checkout", "catalog", "storefront", "data", "monitoring", "staging"]


def write_policies(directory: Path, rules: int, policies: Path) -> Path:
    """The real `policies`, cut to `rules` rules or padded with filler rules up to it."""
    directory.mkdir(parents=True, exist_ok=True)
    real = policies.read_text().split("\n---\n")
    path = directory / f"policies-{rules}.yaml"
    if rules <= len(real):
        path.write_text("\n---\n".join(real[:rules]) + "\n")
        return path
    docs = list(real)
    for i in range(rules - len(real)):
        kind = i % 10
        if kind < 5:  # same namespaces as real pods, selecting workloads that do not exist
            ns = NAMESPACES[i % len(NAMESPACES)]
            docs.append(
                f"{CNP_HEAD}\nmetadata: {{name: filler-{i}, namespace: {ns}}}\n"
                f"spec:\n  endpointSelector: {{matchLabels: {{app: filler-{i}}}}}\n  egress:\n"
                f"  - toEndpoints: [{{matchLabels: {{app: peer-{i}}}}}]\n"
                f'    toPorts: [{{ports: [{{port: "{1000 + i % 5000}", protocol: TCP}}]}}]\n'
            )
        elif kind < 8:  # other namespaces
            docs.append(
                f"{CNP_HEAD}\nmetadata: {{name: filler-{i}, namespace: t{i}}}\n"
                f"spec:\n  endpointSelector: {{}}\n  egress:\n  - toFQDNs: [{{matchName: s{i}.example.org}}]\n"
            )
        elif kind == 8:  # clusterwide, selecting nothing real
            docs.append(
                f"apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: filler-{i}}}\n"
                f"spec:\n  endpointSelector: {{matchLabels: {{team: t{i}}}}}\n  ingress: [{{fromEntities: [world]}}]\n"
            )
        else:  # selecting real pods: more candidates to check on every new decision
            ns = NAMESPACES[i % len(NAMESPACES)]
            docs.append(
                f"{CNP_HEAD}\nmetadata: {{name: filler-{i}, namespace: {ns}}}\n"
                f"spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDRSet: [{{cidr: 192.0.{i % 256}.0/24}}]\n"
            )
    path.write_text("\n---\n".join(docs) + "\n")
    return path


def _load_seconds(policies: Path) -> float:
    """How long reading, validating and indexing the policies takes (paid once at start-up)."""
    from hushflow.engine.decision import PolicyEngine
    from hushflow.policy.loading import load_policies

    start = time.perf_counter()
    PolicyEngine(load_policies([str(policies)]).policy_set)
    return time.perf_counter() - start


def _enrich(path: Path, policies: Path) -> tuple[int, str]:
    from hushflow.cli.observe import run_observe

    with open(os.devnull, "wb") as out:
        err = io.StringIO()
        code = run_observe(["--input-file", str(path), "--enrich", str(policies), "-o", "jsonpb", *FILTER],
                           stdout=out, stderr=err)
    if code != 0:
        sys.exit(f"enrich failed ({code}): {err.getvalue()[:500]}")
    # The enrichment summary: what was attributed, and any disagreement with Cilium's verdicts.
    return 0, "\n  ".join(line for line in err.getvalue().splitlines() if line.startswith("hushflow:"))


def _dns(names: int) -> dict[str, float]:
    import gc

    from hushflow.engine.dns_knowledge import DnsKnowledge

    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dns = DnsKnowledge(max_names=2 * names)  # two generations: all `names` are kept
    start = time.perf_counter()
    for i in range(names):
        dns.learn(f"ns-{i % 500}/pod-{i % 3000}", f"host-{i}.tenant-{i % 977}.example.com",
                  [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"], 300, float(i // 1000))
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(dns) == names
    return {"names": names, "seconds": elapsed, "rss_growth_mb": (after - before) / 1024}


def child(scenario: str, path: Path, extra: str) -> None:
    start = time.perf_counter()
    result: dict[str, object] = {}
    if scenario == "parse":
        result["flows"] = _parse_only(path)
    elif scenario == "enrich":
        result["load_seconds"] = _load_seconds(Path(extra))
        start = time.perf_counter()
        _code, summary = _enrich(path, Path(extra))
        result["summary"] = summary
    elif scenario == "dns":
        result.update(_dns(int(extra)))
    result["seconds"] = result.get("seconds", time.perf_counter() - start)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run(scenario: str, path: Path, extra: str = "") -> dict[str, object]:
    proc = subprocess.run([sys.executable, __file__, "--child", scenario, str(path), extra],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{scenario} failed:\n{proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dns-names", type=int, default=1_000_000)
    args = parser.parse_args()
    from corpus import POLICIES, ensure_corpus  # here: the scenario processes import only what they measure

    corpus = ensure_corpus(args.flows, args.seed)
    work = HERE / "data" / "policies"
    flows = args.flows

    parse = run("parse", corpus)
    parse_rate = flows / float(parse["seconds"])  # type: ignore[arg-type]
    print("flows/s end to end (policy loading included), then per flow once the policies are loaded")
    print(f"{'scenario':<40} {'flows/s':>9} {'vs parse':>9} {'steady':>9} {'vs parse':>9} {'load':>7} {'RSS':>6}")
    print(f"{'orjson parse-only':<40} {parse_rate:>9,.0f} {'100%':>9} {'':>9} {'':>9} {'':>7} "
          f"{parse['maxrss_mb']:>5.0f}M")
    rates: dict[str, float] = {}
    for label, policies in (
        ("enrich+filter, corpus policies", POLICIES),
        ("enrich+filter, 10 rules", write_policies(work, 10, POLICIES)),
        ("enrich+filter, 10,000 rules", write_policies(work, 10_000, POLICIES)),
    ):
        result = run("enrich", corpus, str(policies))
        total, load = float(result["seconds"]), float(result["load_seconds"])  # type: ignore[arg-type]
        rate, steady = flows / total, flows / max(total - load, 1e-9)
        rates[label] = steady
        print(f"{label:<40} {rate:>9,.0f} {rate / parse_rate:>8.0%} {steady:>9,.0f} {steady / parse_rate:>8.0%} "
              f"{load:>6.2f}s {result['maxrss_mb']:>5.0f}M")
        if label.endswith("policies"):
            print(f"  {result['summary']}")
    slowdown = rates["enrich+filter, 10 rules"] / rates["enrich+filter, 10,000 rules"]
    print(f"per-flow slowdown from 10 to 10,000 rules: {slowdown:.2f}x (target <= 2x)")
    dns = run("dns", corpus, str(args.dns_names))
    print(f"DNS knowledge, {int(dns['names']):,} names: +{dns['rss_growth_mb']:.0f} MB RSS "
          f"(peak {dns['maxrss_mb']:.0f} MB), learned in {dns['seconds']:.1f} s (target < 400 MB)")


if __name__ == "__main__":
    main()
