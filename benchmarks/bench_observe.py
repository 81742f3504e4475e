#!/usr/bin/env python3
"""How fast does hushflow read and filter Hubble flows, compared with orjson alone?

Usage: .venv/bin/python benchmarks/bench_observe.py [--flows 1000000] [--seed 1] [--repeat 1]

Generates (once, then reuses) a corpus of `hubble observe -o jsonpb` lines with corpus.py into
benchmarks/data/, then runs each scenario in its own subprocess and reports flows/s, the ratio to
orjson parse-only, and peak RSS (ru_maxrss; "+" is the growth during the run, past imports):

- orjson parse-only: read 1 MiB chunks, split lines, orjson.loads each line (the ceiling);
- reader: hushflow.flow.reader.FlowReader alone, every event's data read (each line proven or
  validated, parsed, wrapped: what the daemon pays on a file);
- observe --verdict DROPPED -o jsonpb (target: >= 200% of parse-only);
- observe -o jsonpb with no filter: every flow printed as Hubble prints it (a line proven to be
  those bytes by flow/_jsonpb_proof.c as it is, any other re-encoded; target >= 100% of parse-only);
- observe with a CEL filter (--cel-expression '_flow.verdict == Verdict.DROPPED');
- observe with a label + namespace filter (-n payments -l app=payments-api).

The observe scenarios run the `hushflow observe` command in-process (`run_observe`) with output to
/dev/null; they print "not available" while that command or the filters are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

OBSERVE_SCENARIOS = {
    "observe --verdict DROPPED -o jsonpb": ["--verdict", "DROPPED", "-o", "jsonpb"],
    "observe -o jsonpb (every flow printed)": ["-o", "jsonpb"],
    "observe CEL filter -o jsonpb": ["--cel-expression", "_flow.verdict == Verdict.DROPPED", "-o", "jsonpb"],
    "observe -n payments -l app=payments-api": ["-n", "payments", "-l", "app=payments-api", "-o", "jsonpb"],
}
SCENARIOS = ["orjson parse-only", "reader", *OBSERVE_SCENARIOS]


# -- scenarios (run in a child process) --------------------------------------------------------


def _parse_only(path: Path) -> int:
    import orjson

    loads = orjson.loads
    count = 0
    pending = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                loads(line)
            count += len(lines)
    if pending:
        loads(pending)
        count += 1
    return count


def _reader(path: Path) -> int:
    from hushflow.flow.reader import FlowReader

    count = 0
    for event in FlowReader([path]):
        event.data  # noqa: B018 - a proven line is parsed when read: read it, as the daemon does
        count += 1
    return count


def _observe(path: Path, args: list[str]) -> int:
    import io

    from hushflow.cli.observe import run_observe

    with open(os.devnull, "wb") as out:
        code = run_observe(["--input-file", str(path), *args], stdout=out, stderr=io.StringIO())
    if code != 0:
        raise RuntimeError(f"observe exited with {code}")
    return -1


def child(scenario: str, path: Path) -> None:
    if scenario in OBSERVE_SCENARIOS:
        try:
            import hushflow.filter
            from hushflow.cli.observe import run_observe  # noqa: F401
        except ImportError as e:
            print(json.dumps({"unavailable": str(e)}))
            return

        def run() -> int:
            return _observe(path, OBSERVE_SCENARIOS[scenario])
    elif scenario == "reader":
        import hushflow.flow.reader  # noqa: F401

        def run() -> int:
            return _reader(path)
    else:
        import orjson  # noqa: F401

        def run() -> int:
            return _parse_only(path)

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        count = run()
    except Exception as e:  # report, do not crash the whole benchmark
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"}))
        return
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "count": count, "baseline_kb": baseline_kb, "peak_kb": peak_kb}))


# -- parent --------------------------------------------------------------------------------------


def run_scenario(scenario: str, path: Path, repeat: int) -> dict[str, object]:
    best: dict[str, object] | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--file", str(path)],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            return {"unavailable": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if "unavailable" in result:
            return result
        if best is None or float(result["seconds"]) < float(best["seconds"]):  # type: ignore[arg-type]
            best = result
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000, help="corpus size (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs per scenario, best kept (default 1)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.file)
        return 0

    from corpus import ensure_corpus  # here: the scenario processes import only what they measure

    path = ensure_corpus(args.flows, args.seed)
    size = path.stat().st_size
    lines = args.flows
    print(f"corpus: {path} ({lines:,} flows, {size / 1e6:.0f} MB, {size / lines:.0f} B/flow)")
    print(f"python {sys.version.split()[0]}, one process per scenario, best of {args.repeat}\n")
    print(f"{'scenario':<42} {'flows/s':>10} {'vs parse':>9} {'seconds':>8} {'peak RSS':>16}")
    parse_rate = None
    for scenario in SCENARIOS:
        r = run_scenario(scenario, path, args.repeat)
        if "unavailable" in r:
            print(f"{scenario:<42} not available ({r['unavailable']})")
            continue
        seconds = float(r["seconds"])  # type: ignore[arg-type]
        rate = lines / seconds
        if parse_rate is None:
            parse_rate = rate
        peak = int(r["peak_kb"]) / 1024  # type: ignore[call-overload]
        growth = (int(r["peak_kb"]) - int(r["baseline_kb"])) / 1024  # type: ignore[call-overload]
        print(
            f"{scenario:<42} {rate:>10,.0f} {rate / parse_rate:>8.0%} {seconds:>8.2f} "
            f"{peak:>7.0f} MB (+{growth:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
