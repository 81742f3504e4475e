#!/usr/bin/env python3
"""The leak window: from reading a DNS answer to its IPs being written in their CIDR group.

Usage: .venv/bin/python benchmarks/bench_leak.py [--learned 100000] [--answers 2000] [--dir DIR]

Directory mode, as `hushflow run --out DIR --state FILE` does it: the state already holds
`--learned` IPs for the example's FQDN deny (sharded over CiliumCIDRGroups of at most 1,000),
then `--answers` new DNS answers arrive one by one; each goes through the deny learner, the
fsync'ed state journal and the atomic (fsync + rename) write of its one group file. Prints
p50/p90/p99/max of the window and the answers/s. Target (issue 5): p99 under 50 ms with
100,000 learned IPs.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.publish import GroupPublisher
from hushflow.enforce.state import DenyState, Journal
from hushflow.flow.dns import dns_answer_of
from hushflow.policy.loading import load_policies

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "telemetry-block"


def answer(index: int) -> dict[str, object]:
    ip = f"100.{64 + (index >> 16) % 64}.{(index >> 8) & 255}.{index & 255}"
    return {
        "destination": {
            "namespace": "my-namespace",
            "pod_name": "my-app-0",
            "labels": ["k8s:app.kubernetes.io/name=my-app", "k8s:io.kubernetes.pod.namespace=my-namespace"],
        },
        "l7": {"type": "RESPONSE", "dns": {"query": f"h{index}.telemetry.example.com.", "ips": [ip], "ttl": 60}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learned", type=int, default=100_000)
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--dir", help="output directory (default: a temporary one)")
    args = parser.parse_args()
    loaded = load_policies([str(EXAMPLE)])
    denies = fqdn_denies(loaded.policy_set)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        state = DenyState()
        for index in range(args.learned):
            state.add(denies[0].id, f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}",
                      "x.telemetry.example.com", 3600, 0.0, "observed")
        state.save(str(root / "state.json"))
        journal = Journal(str(root / "state.json"))
        learner = DenyLearner(loaded.policy_set, denies, state, max_total=args.learned + args.answers + 1)
        publisher = GroupPublisher(denies, state, out_dir=str(root / "groups"), journal=journal)
        start = time.perf_counter()
        publisher.publish_all()
        first = time.perf_counter() - start
        groups = len(publisher.group_sizes())
        windows = []
        start = time.perf_counter()
        for index in range(args.answers):
            read_at = time.monotonic()
            parsed = dns_answer_of(answer(index))
            assert parsed is not None
            changes = learner.learn_answer(parsed, 1.0)
            window = publisher.publish_changes(changes, read_at)
            if window is not None:
                windows.append(window)
        elapsed = time.perf_counter() - start
        journal.close()
    windows.sort()

    def pct(p: float) -> float:
        return windows[min(len(windows) - 1, int(len(windows) * p))] * 1000

    print(f"learned IPs before: {args.learned:,} in {groups} CiliumCIDRGroups (first publish {first:.1f} s)")
    print(f"new answers: {len(windows):,} at {len(windows) / elapsed:,.0f}/s")
    print(f"leak window: p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f} ms, p99 {pct(0.99):.2f} ms, "
          f"max {windows[-1] * 1000:.2f} ms (target p99 < 50 ms)")
    print(f"peak memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
