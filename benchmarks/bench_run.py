#!/usr/bin/env python3
"""The main job end to end: flows/s through `hushflow run`, and its memory after 10M flows.

Usage: .venv/bin/python benchmarks/bench_run.py [--flows 300000] [--replays 10] [--big-flows 1000000]
       [--long-flows 10000000] [--repeat 5] [--seed 1]

Scenarios (each client in its own process; the corpus is corpus.py's, generated once into
benchmarks/data/, the policies benchmarks/policies/corpus.yaml, those of the cluster it simulates;
CIDR groups written to a temporary directory):

- gRPC: a loopback Observer server in its own process (bench_grpc.py's replay server, which
  sends at Go speed what Hubble would send for the request) streams the `--flows` corpus; the
  daemon reads it with the production `HubbleSource` (upstream allowlist and field mask: Hubble
  sends only DNS, policy verdicts and drops, ~30 % of the corpus), learns DNS, fills the
  deny groups, attributes, and updates the Prometheus metrics. Reported: flows received and
  processed per second, the daemon's CPU per flow (all its threads: the one-core figure), and
  the node traffic that rate covers (received / share Hubble sends).
- gRPC, long: the same stream sent over and over until `--long-flows` flows (10M by default)
  have gone through the daemon: peak RSS against the short run shows whether memory stays flat.
- files: the same pipeline reading the `--big-flows` corpus from a file once, then
  `--replays` times in a row (10M flows by default): peak RSS after each, likewise.

Target (issue 6): >= 50,000 flows/s end to end on one core, memory flat after 10M flows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_grpc import ensure_protobuf_corpus, serve  # noqa: E402
from corpus import POLICIES, ensure_corpus  # noqa: E402


def child(kind: str, target: str, replays: int) -> None:
    from hushflow.app.daemon import Daemon, FileSource, RunOptions

    with tempfile.TemporaryDirectory() as out:
        options = RunOptions(policies=(str(POLICIES),), resolve=False, out_dir=out, clock="flows")
        if kind == "grpc":
            from hushflow.flow.sources import HubbleSource

            source = HubbleSource(target, None, follow=False)
        else:
            source = FileSource([target] * replays, follow=False)  # type: ignore[assignment]
        daemon = Daemon(options, source=source)  # type: ignore[arg-type]
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        start = time.perf_counter()
        daemon.run()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    print(json.dumps({
        "flows": daemon.summary.flows, "verdicts": daemon.summary.verdicts, "seconds": seconds, "cpu": cpu,
        "baseline_mb": baseline_kb / 1024, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def run_child(kind: str, target: str, replays: int = 1) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, target, str(replays)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=300_000,
                        help="corpus streamed over gRPC (Hubble sends ~37%% of it)")
    parser.add_argument("--big-flows", type=int, default=1_000_000, help="corpus replayed from a file")
    parser.add_argument("--replays", type=int, default=10)
    parser.add_argument("--long-flows", type=int, default=10_000_000, help="flows in the long gRPC run")
    parser.add_argument("--repeat", type=int, default=5, help="gRPC runs (the least CPU is reported, and all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    jsonl = ensure_corpus(args.flows, args.seed)
    pb = ensure_protobuf_corpus(jsonl)
    ctx = multiprocessing.get_context("spawn")

    def with_server(repeat: int, runs: int) -> tuple[dict[str, int], list[dict[str, float]]]:
        parent, child_conn = ctx.Pipe()
        server = ctx.Process(target=serve, args=(pb, child_conn, repeat), daemon=True)
        server.start()
        address, sent = parent.recv()
        try:
            return sent, [run_child("grpc", address) for _ in range(runs)]
        finally:
            parent.send("stop")
            server.join(30)

    sent, runs = with_server(1, args.repeat)
    grpc_run = min(runs, key=lambda r: r["cpu"])
    rates = sorted(r["flows"] / r["cpu"] for r in runs)
    median = rates[len(rates) // 2]
    share = sent["hushflow"] / sent["all"]
    rate = grpc_run["flows"] / grpc_run["seconds"]
    per_cpu = grpc_run["flows"] / grpc_run["cpu"]
    print(f"gRPC -> hushflow run (best of {args.repeat}): {grpc_run['flows']:,.0f} flows received and processed, "
          f"{rate:,.0f} flows/s, {grpc_run['cpu'] / grpc_run['flows'] * 1e6:.1f} us CPU/flow "
          f"({per_cpu:,.0f} flows per CPU-second), peak RSS {grpc_run['peak_mb']:.0f} MB")
    print(f"  all {args.repeat} runs, flows per CPU-second: {', '.join(f'{x:,.0f}' for x in rates)} "
          f"(median {median:,.0f})")
    print(f"  Hubble sends {share:.0%} of this node's flows (DNS, verdicts, drops): {per_cpu:,.0f} received per "
          f"CPU-second covers a node emitting {per_cpu / share:,.0f} flows/s")

    passes = max(1, round(args.long_flows / sent["hushflow"]))
    _, (long_run,) = with_server(passes, 1)
    print(f"gRPC -> hushflow run, {long_run['flows']:,.0f} flows ({passes} passes over the stream): "
          f"{long_run['flows'] / long_run['seconds']:,.0f} flows/s, peak RSS {long_run['peak_mb']:.0f} MB "
          f"({long_run['peak_mb'] - grpc_run['peak_mb']:+.0f} MB against {grpc_run['flows']:,.0f} flows)")

    big = ensure_corpus(args.big_flows, args.seed)
    once = run_child("files", str(big), 1)
    many = run_child("files", str(big), args.replays)
    for label, result in ((f"{args.big_flows:,} flows", once), (f"{args.big_flows * args.replays:,} flows", many)):
        print(f"files -> hushflow run, {label}: {result['flows'] / result['seconds']:,.0f} flows/s, "
              f"peak RSS {result['peak_mb']:.0f} MB (after start-up {result['baseline_mb']:.0f} MB)")
    growth = many["peak_mb"] - once["peak_mb"]
    print(f"memory growth from {args.big_flows:,} to {args.big_flows * args.replays:,} flows: {growth:+.0f} MB")


if __name__ == "__main__":
    main()
