#!/usr/bin/env python3
"""Throughput of compiled FlowFilters over canonical Hubble lines, against orjson parse-only.

Usage: .venv/bin/python benchmarks/bench_filter.py [--flows 200000] [--seed 1] [--corpus PATH]

For each scenario (raw filters as `hubble observe --print-raw-filters` prints them), reports
flows/s and the ratio to the orjson parse-only ceiling for:
- "parse+match": orjson.loads every line, then the predicate;
- "precheck": ``line_may_match(raw)`` first, orjson.loads + predicate only when it passes.
Lines are held in memory (no I/O); the garbage collector is frozen as a long-running reader would
tune it. The corpus is corpus.py's (generated once into benchmarks/data/), or the file --corpus
names (any `hubble observe -o jsonpb` lines).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

import orjson
from corpus import ensure_corpus

from hushflow.filter import compile_filters

SCENARIOS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("--verdict DROPPED", [{"verdict": ["DROPPED"]}], []),
    ("-n payments -l app=payments-api",
     [{"source_pod": ["payments/"], "source_label": ["app=payments-api"]},
      {"destination_pod": ["payments/"], "destination_label": ["app=payments-api"]}], []),
    ("--to-fqdn *.amazonaws.com", [{"destination_fqdn": ["*.amazonaws.com"]}], []),
    ("--from-ip 10.244.0.0/16 --to-identity world",
     [{"source_ip": ["10.244.0.0/16"], "destination_identity": [2]}], []),
    ("--verdict AUDIT --not --cel-expression policy_log",
     [{"verdict": ["AUDIT"]}], [{"experimental": {"cel_expression": ["'pci-egress' in _flow.policy_log"]}}]),
    ("--cel-expression _flow.verdict == Verdict.DROPPED",
     [{"experimental": {"cel_expression": ["_flow.verdict == Verdict.DROPPED"]}}], []),
    ("--cel-expression egress_allowed_by.exists(...)",
     [{"experimental": {"cel_expression": ["_flow.egress_allowed_by.exists(p, p.namespace == 'payments')"]}}], []),
    ("--verdict DROPPED --cel-expression size(...) > 0",
     [{"verdict": ["DROPPED"], "experimental": {"cel_expression": ["size(_flow.destination_names) > 0"]}}], []),
    ("--cel-expression (runtime) _flow.time > timestamp(...)",
     [{"experimental": {"cel_expression": ["_flow.time > timestamp('2026-03-02T09:00:30Z')"]}}], []),
    ("--not --verdict FORWARDED (denylist only)", [], [{"verdict": ["FORWARDED"]}]),
]


def corpus(path: Path | None, flows: int, seed: int = 1) -> list[bytes]:
    if path is None:
        path = ensure_corpus(flows, seed)
    return path.read_bytes().splitlines()[:flows]


def rate(lines: list[bytes], body: Any) -> float:
    start = time.perf_counter()
    body(lines)
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", type=Path)
    args = ap.parse_args()
    lines = corpus(args.corpus, args.flows, args.seed)
    gc.freeze()
    loads = orjson.loads

    def parse_only(ls: list[bytes]) -> None:
        for line in ls:
            loads(line)

    base = rate(lines, parse_only)
    print(f"{len(lines):,} lines; orjson parse-only: {base:,.0f} flows/s")
    for name, allow, deny in SCENARIOS:
        compiled = compile_filters(allow, deny)
        full, kept = measure(lines, compiled.matches, None)
        pre, kept_pre = measure(lines, compiled.matches, compiled.line_may_match)
        assert kept == kept_pre, "the pre-check dropped a matching line"
        print(f"{name:55s} kept {kept:7,}  parse+match {full:9,.0f}/s ({full / base:4.0%})"
              f"  precheck {pre:9,.0f}/s ({pre / base:4.0%})")


def measure(lines: list[bytes], match: Any, may: Any) -> tuple[float, int]:
    loads = orjson.loads
    kept = 0
    start = time.perf_counter()
    if may is None:
        for line in lines:
            if match(loads(line)):
                kept += 1
    else:
        for line in lines:
            if may(line) and match(loads(line)):
                kept += 1
    return len(lines) / (time.perf_counter() - start), kept


if __name__ == "__main__":
    main()
