#!/usr/bin/env python3
"""How fast is `hushflow replay`? 1M recorded flows against two 2,000-policy sets.

Usage: .venv/bin/python benchmarks/bench_replay.py [--flows 1000000] [--seed 1] [--policies 2000] [--profile]

The flows are the corpus.py corpus of bench_observe.py (generated once into benchmarks/data/).
The CURRENT set is the cluster's own policies (benchmarks/policies/corpus.yaml) padded with
bench_enrich.py's filler rules up to --policies; the PROPOSED set is a modified copy:
- the `telemetry-blocked` denies lose their log tag (planned drops that stop being planned),
- the `pci-isolation` clusterwide deny is removed,
- 20 denies are added (world egress on port 443 for the `catalog` namespace, and CIDR denies),
- 50 filler allows are removed.
The replay runs the command's own path (`app.replay.replay_flows`: load both sets, read with
FlowReader, decide each flow twice, summarize) in a child process, which reports seconds,
flows/s, peak RSS and the change counts. Target (issue 15): under 30 s for 1M flows.
--profile prints the top functions by cumulative time (cProfile) instead of the timing.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_enrich import NAMESPACES, write_policies  # noqa: E402

ADDED = 20
REMOVED_FILLERS = 50


def write_proposed(current: Path, out: Path) -> Path:
    """A modified copy of `current` (see the module docstring)."""
    docs = current.read_text().split("\n---\n")
    kept = []
    removed = 0
    for doc in docs:
        if "name: pci-isolation\n" in doc:
            continue
        if "name: filler-" in doc and "egress:" in doc and removed < REMOVED_FILLERS and "toEndpoints" in doc:
            removed += 1
            continue
        kept.append(doc.replace("  log: {value: telemetry-blocked}\n", "").replace(
            "  log: {value: telemetry-blocked}", ""))
    for i in range(ADDED):
        if i == 0:
            kept.append("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
                        "metadata: {name: catalog-no-world-https, namespace: catalog}\n"
                        "spec:\n  endpointSelector: {}\n  egressDeny:\n  - toEntities: [world]\n"
                        '    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n  log: {value: catalog-offline}\n')
            continue
        ns = NAMESPACES[i % len(NAMESPACES)]
        kept.append(f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
                    f"metadata: {{name: new-deny-{i}, namespace: {ns}}}\n"
                    f"spec:\n  endpointSelector: {{}}\n  egressDeny:\n  - toCIDRSet: [{{cidr: 198.18.{i}.0/24}}]\n")
    out.write_text("\n---\n".join(kept) + "\n")
    return out


def _policy_count(path: Path) -> int:
    from hushflow.policy.loading import load_policies

    return len(load_policies([str(path)]).policy_set.policies)


def child(corpus: Path, current: Path, proposed: Path, profile: bool) -> None:
    from hushflow.app.policies import load_job_policies
    from hushflow.app.replay import ReplayOptions, replay_flows
    from hushflow.engine.replay import Replayer
    from hushflow.policy.model import BuildOptions

    options = ReplayOptions(current=[str(current)], proposed=[str(proposed)], input_files=[str(corpus)])
    err = io.StringIO()
    start = time.perf_counter()  # what loading both sets and indexing them costs, paid once
    build = BuildOptions.for_cluster(options.cilium_version)
    Replayer(load_job_policies([str(current)], build).policy_set, load_job_policies([str(proposed)], build).policy_set)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(replay_flows, options, err)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(25)
    else:
        result = replay_flows(options, err)
    seconds = time.perf_counter() - start
    summary = result.summary
    print(json.dumps({
        "seconds": seconds,
        "load_seconds": load_seconds,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "verdicts": summary.flows,
        "groups": len(summary.groups),
        "counts": {change.value: count for change, count in summary.counts.items()},
        "bad_lines": result.bad_lines,
    }))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    from corpus import POLICIES, ensure_corpus

    corpus = ensure_corpus(args.flows, args.seed)
    work = HERE / "data" / "policies"
    current = write_policies(work, args.policies, POLICIES)
    proposed = write_proposed(current, work / f"proposed-{args.policies}.yaml")
    print(f"flows: {args.flows:,} ({corpus.name}); current: {_policy_count(current):,} policies, "
          f"proposed: {_policy_count(proposed):,} policies")
    proc = subprocess.run([sys.executable, __file__, "--child", str(corpus), str(current), str(proposed),
                           "1" if args.profile else "0"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"replay failed:\n{proc.stderr[-3000:]}")
    if args.profile:
        print(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds, load = float(result["seconds"]), float(result["load_seconds"])
    print(f"replay: {seconds:.1f} s total (loading both sets included: {load:.1f} s), "
          f"{args.flows / seconds:,.0f} flows/s end to end, {args.flows / max(seconds - load, 1e-9):,.0f} flows/s "
          f"once loaded; peak RSS {result['maxrss_mb']:.0f} MB")
    print(f"  {result['verdicts']:,} policy verdicts in {result['groups']:,} groups: "
          + ", ".join(f"{count:,} {change}" for change, count in sorted(result["counts"].items())))
    projected = load + (seconds - load) * 1_000_000 / args.flows
    how = "measured" if args.flows == 1_000_000 else "projected"
    verdict = "met" if projected < 30 else "NOT met"
    print(f"target (issue 15): 1,000,000 flows in under 30 s; {how}: {projected:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
