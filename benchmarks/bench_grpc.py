#!/usr/bin/env python3
"""How fast does hushflow read flows from Hubble's gRPC API, on one core?

Usage: .venv/bin/python benchmarks/bench_grpc.py [--flows 100000] [--seed 1] [--repeat 1]

A loopback Observer server (``benchmarks.replay_server``, in its own process) streams a
``corpus.py`` corpus (generated once, like bench_observe.py; its protobuf encoding is cached
next to it as ``.pb``) and each scenario reads it in a fresh client process, reporting flows/s
(wall clock), the client's CPU time per flow (all its threads: the "one core" figure) and peak
RSS (ru_maxrss; "+" is the growth during the run, past imports).

The server replays bytes prepared before the clock starts (filtered and masked for the request,
as Hubble does in Go), so the client is not paced by a Python gRPC server (grpcio's own server
spends ~30 µs a message, as much as the client: against it, a client measures its waiting).

- ``grpc receive only``: the GetFlows stream iterated as raw bytes (grpcio's own ceiling);
- ``grpc receive + decode``: the same, each message decoded (upb);
- ``proto_dict only``: decoded messages converted to canonical dicts in memory, no gRPC;
- ``GrpcFlowSource -> FlowEvent``: the real source, every flow of the corpus;
- ``HubbleSource -> FlowEvent``: what ``hushflow run`` asks for: only DNS, policy verdicts and
  drops (the allowlist, applied by the server), cut to the fields hushflow reads (the mask).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

from corpus import ensure_corpus  # noqa: E402

if TYPE_CHECKING:
    from hushflow.proto.observer_pb2 import GetFlowsResponse

SCENARIOS = ["grpc receive only", "grpc receive + decode", "proto_dict only", "GrpcFlowSource -> FlowEvent",
             "HubbleSource -> FlowEvent"]


# -- corpus as protobuf -----------------------------------------------------------------------------


def ensure_protobuf_corpus(jsonl: Path) -> Path:
    """The corpus as length-prefixed serialized GetFlowsResponse messages (json_format is slow:
    ~6k lines/s, so it is done once)."""
    path = jsonl.with_suffix(".pb")
    if path.exists():
        return path
    from google.protobuf import json_format
    from google.protobuf.internal.encoder import _VarintBytes

    from hushflow.proto import observer_pb2

    print(f"encoding {jsonl.name} as protobuf into {path} (once) ...", file=sys.stderr)
    tmp = path.with_suffix(".tmp")
    with open(jsonl, "rb") as src, open(tmp, "wb") as out:
        for line in src:
            if line.strip():
                data = json_format.Parse(line, observer_pb2.GetFlowsResponse()).SerializeToString()
                out.write(_VarintBytes(len(data)))
                out.write(data)
    tmp.rename(path)
    return path


def read_protobuf_corpus(path: Path) -> Iterator[bytes]:
    from google.protobuf.internal.decoder import _DecodeVarint

    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        size, pos = _DecodeVarint(data, pos)
        yield data[pos : pos + size]
        pos += size


def load_messages(path: Path) -> list[GetFlowsResponse]:
    from hushflow.proto import observer_pb2

    return [observer_pb2.GetFlowsResponse.FromString(b) for b in read_protobuf_corpus(path)]


# -- the server (its own process) -------------------------------------------------------------------


def serve(path: Path, conn: multiprocessing.connection.Connection, repeat: int = 1) -> None:
    """The server process: every request the scenarios make is prepared before the address is
    sent, so no client waits for the filtering. ``repeat``: the corpus is streamed that many times."""
    from replay_server import ReplayObserverServer

    from hushflow.flow.grpc_source import GrpcFlowSource
    from hushflow.flow.sources import HubbleSource

    server = ReplayObserverServer(list(read_protobuf_corpus(path)), repeat=repeat)
    sent = {
        "all": server.prepare(GrpcFlowSource(server.address, follow=False).request),
        "hushflow": server.prepare(HubbleSource(server.address, follow=False).source.request),
    }
    server.start()
    conn.send((server.address, sent))
    conn.recv()  # until the parent says stop
    server.stop()


# -- scenarios (each in a fresh client process) ---------------------------------------------------


def child(scenario: str, address: str, path: Path) -> None:
    import grpc
    import grpc.experimental

    from hushflow.flow.grpc_source import GrpcFlowSource
    from hushflow.flow.proto_dict import response_to_event
    from hushflow.flow.sources import HubbleSource
    from hushflow.proto import observer_pb2

    messages = load_messages(path) if scenario == "proto_dict only" else None
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    start = time.perf_counter()
    count = 0
    if scenario.startswith("grpc receive"):
        options = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]  # as GrpcFlowSource
        channel = grpc.insecure_channel(address, options=options)
        decode = observer_pb2.GetFlowsResponse.FromString if scenario.endswith("decode") else None
        call = channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=decode,
        )
        for _ in call(observer_pb2.GetFlowsRequest()):
            count += 1
        channel.close()
    elif scenario == "proto_dict only":
        assert messages is not None
        for m in messages:
            response_to_event(m)
            count += 1
    elif scenario.startswith("HubbleSource"):
        for _ in HubbleSource(address, follow=False).events():
            count += 1
    else:
        for _ in GrpcFlowSource(address, follow=False):
            count += 1
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "count": count, "baseline_kb": baseline_kb,
                      "peak_kb": peak_kb}))


def run_client(scenario: str, address: str, path: Path, repeat: int) -> dict[str, float]:
    best: dict[str, float] | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--address", address, "--file", str(path)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(f"{scenario}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=100_000, help="corpus size (default 100,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs per scenario, best kept (default 1)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.address, args.file)
        return 0

    jsonl = ensure_corpus(args.flows, args.seed)
    pb = ensure_protobuf_corpus(jsonl)
    print(f"corpus: {jsonl} ({args.flows:,} flows, {pb.stat().st_size / args.flows:.0f} B/flow as protobuf)")
    print(f"python {sys.version.split()[0]}, server and each client in their own process, best of {args.repeat}\n")
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(pb, child_end), daemon=True)
    proc.start()
    address, sent = parent.recv()
    print(f"HubbleSource's request selects {sent['hushflow']:,} of {sent['all']:,} events "
          f"({sent['hushflow'] / sent['all']:.0%}): the rest stays in Hubble\n")
    print(f"{'scenario':<32} {'flows/s':>9} {'client CPU/flow':>16} {'flows/CPU-s':>12} {'peak RSS':>15}")
    try:
        for scenario in SCENARIOS:
            r = run_client(scenario, address, pb, args.repeat)
            rate = r["count"] / r["seconds"]
            per_flow_us = r["cpu"] / r["count"] * 1e6
            peak = r["peak_kb"] / 1024
            growth = (r["peak_kb"] - r["baseline_kb"]) / 1024
            print(f"{scenario:<32} {rate:>9,.0f} {per_flow_us:>13.1f} µs {1e6 / per_flow_us:>12,.0f} "
                  f"{peak:>6.0f} MB (+{growth:.0f})")
    finally:
        parent.send("stop")
        proc.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
