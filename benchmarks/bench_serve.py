#!/usr/bin/env python3
"""`hushflow run --serve`: flows/s from Hubble through enrichment to 0, 1 and 10 GetFlows clients.

Usage: .venv/bin/python benchmarks/bench_serve.py [--flows 100000] [--repeat 3] [--seed 1] [--quick]
       [--profile] [--skip-memory]

(~6 minutes with the defaults on 2 cores; ``--quick``: a ~30-second smoke run whose figures are
dominated by the processes' start-up.)

Each scenario is one daemon process and its clients, each client in its own process. The daemon is
the production pipeline in-process (``Daemon`` with a ``HubbleSource``: DNS learning, deny groups,
attribution, metrics; ``serve_observer`` on 127.0.0.1:0, as ``run --serve`` starts it) reading a
loopback replay server (benchmarks/replay_server.py, Go speed: it costs the daemon nothing to
read from) that streams the corpus.py corpus once. The clients are started first and each waits
for the ``node_status`` every GetFlows call begins with, so none misses the start; each follows
(``follow=True, number=0``, no mask unless said) with grpcio, counts the flows, bytes and
``lost_events`` it receives, and stops after one second without a message.

Scenarios:
- ``run``: no ``--serve``, the request ``run`` sends without it (upstream allowlist and field
  mask: Hubble sends ~27 % of the flows, cut down): bench_run.py's figure.
- ``run, full stream``: no ``--serve``, but every flow and field, as ``--serve`` asks: the base
  the serve figures compare with (same flows, same decoding).
- ``serve, N clients`` for N = 0, 1, 10, and 1 client sending the hubble CLI 1.19.4's default
  field mask (``defaults.FieldMask``); and 10 clients following only drops (``hubble observe
  --follow --verdict DROPPED``: the filter runs server-side, what is sent is the drops).
- memory: ``serve`` with 0 and 1 client, ring capacity 4095 (the default) and 65535; peak RSS
  against ``run, full stream``.

Reported per scenario: flows/s through the pipeline (wall, source to ring), the daemon's CPU
per flow (process CPU, all threads, over the pipeline and until the last client is done) and per
thread group (pipeline, the gRPC server's workers, grpcio's own threads), the encodings per flow
(calls of the response encoder: ``response_encoding.encode_response``; masked encodings apart),
what the clients received (flows/s of all of them together, over the first to the last message,
and lost_events), and peak RSS. ``--repeat``: runs per scenario; the least CPU is reported, with
the spread. ``--profile``: cProfile of the pipeline thread (full stream without and with 1 client).

Targets (issue 14): each flow encoded once however many clients follow; one following client at
most +25 % daemon CPU per flow against ``run`` without ``--serve``; ten clients together receive
>= 100,000 flows/s. The figures and why bench_run's gRPC figure differs between machines:
benchmarks/README.md.
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
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_grpc import ensure_protobuf_corpus, read_protobuf_corpus  # noqa: E402
from corpus import POLICIES, ensure_corpus  # noqa: E402

#: The hubble CLI 1.19.4's default field mask (hubble pkg/defaults FieldMask), as `hubble observe` sends it.
HUBBLE_CLI_DEFAULT_MASK = (
    "time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
    "destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "l7",
    "event_type", "source_service", "destination_service", "is_reply", "Summary", "ip_trace_id",
)
_CLIENT_IDLE_SECONDS = 1.0
_CLIENT_MAX_WAIT = 600.0
_TICKS = os.sysconf("SC_CLK_TCK")


# -- the replay server ------------------------------------------------------------------------------


def replay(path: Path, conn: Any) -> None:
    """The Hubble stand-in's process: both requests the daemon may send are prepared (filtered,
    masked, framed) before the address is handed out."""
    from replay_server import ReplayObserverServer

    from hushflow.flow.sources import HubbleSource

    server = ReplayObserverServer(list(read_protobuf_corpus(path)))
    sent = {
        "run": server.prepare(HubbleSource(server.address, follow=False).source.request),
        "full": server.prepare(HubbleSource(server.address, follow=False, allowlist=(), field_mask=()).source.request),
    }
    server.start()
    conn.send((server.address, sent))
    conn.recv()
    server.stop()


# -- a following client -----------------------------------------------------------------------------


def client_main(address: str, masked: bool, dropped: bool = False) -> None:
    """One GetFlows follower: prints "ready" once its call is open, then a JSON line of what it got."""
    import grpc
    import grpc.experimental

    from hushflow.proto import observer_pb2

    # The cheapest grpcio receive path (as GrpcFlowSource): the clients share the daemon's two cores.
    channel = grpc.insecure_channel(address, options=[(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)])
    call = channel.unary_stream("/observer.Observer/GetFlows",
                                request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                                response_deserializer=None)
    request = observer_pb2.GetFlowsRequest(follow=True)
    if masked:
        request.field_mask.paths.extend(HUBBLE_CLI_DEFAULT_MASK)
    if dropped:  # `hubble observe --follow --verdict DROPPED`: what an SRE on call follows
        request.whitelist.add().verdict.append(2)  # flow.Verdict.DROPPED
    stream = call(request)
    got = {"flows": 0, "bytes": 0, "lost": 0, "lost_messages": 0, "other": 0, "first": 0.0, "last": 0.0}
    last = [time.monotonic()]

    def idle_watch() -> None:
        # A follow stream never ends by itself: stop a quiet second after the last flow (or
        # when none came in _CLIENT_MAX_WAIT seconds: a run that failed).
        opened = time.monotonic()
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if (got["first"] and now - last[0] >= _CLIENT_IDLE_SECONDS) or now - opened > _CLIENT_MAX_WAIT:
                break
        stream.cancel()

    cpu = time.process_time()
    ready = False
    try:
        for raw in stream:
            now = time.monotonic()
            if raw[:1] == b"\x0a":  # field 1, flow: the response of nearly every message
                got["flows"] += 1
                got["bytes"] += len(raw)
                if not got["first"]:
                    got["first"] = now
                got["last"] = last[0] = now
                continue
            message = observer_pb2.GetFlowsResponse.FromString(raw)
            kind = message.WhichOneof("response_types")
            if kind == "lost_events":
                got["lost"] += message.lost_events.num_events_lost
                got["lost_messages"] += 1
            elif kind == "node_status" and not ready:
                ready = True
                print("ready", flush=True)
                threading.Thread(target=idle_watch, daemon=True).start()
            else:
                got["other"] += 1
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise
    got["cpu"] = time.process_time() - cpu
    print(json.dumps(got), flush=True)


# -- the daemon -------------------------------------------------------------------------------------


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return out


def thread_group(native_id: int, names: dict[int, str]) -> str:
    name = names.get(native_id)
    if name is None:
        try:
            with open(f"/proc/self/task/{native_id}/comm") as f:
                return "grpcio core: " + f.read().strip()
        except OSError:
            return "threads gone"
    if name == "MainThread":
        return "main (metrics every 0.5 s)"
    if name.startswith("hushflow-serve"):
        return "gRPC server workers (GetFlows)"
    if name.endswith("(_serve)"):
        return "grpcio server poller"
    return name


def daemon_main(spec: dict[str, Any]) -> None:
    """One scenario's daemon: serve, start the clients, run the pipeline over the stream once,
    wait for the clients, print a JSON line of the figures."""
    from hushflow.app import serve as serve_module
    from hushflow.app.daemon import Daemon, RunOptions
    from hushflow.flow.sources import HubbleSource

    counts: dict[str, Any] = {"encodings": 0, "masked": 0, "pipeline_cpu": 0.0, "pipeline_tid": -1}
    encoded_uuids: set[str] = set()  # the distinct flows encoded (every corpus flow has a uuid)
    encode, masked = serve_module.encode_response, serve_module.masked_response

    def counted_encode(data: Any, *args: Any) -> Any:
        counts["encodings"] += 1
        encoded_uuids.add(data["flow"].get("uuid", ""))
        return encode(data, *args)

    def counted_masked(*args: Any) -> Any:
        counts["masked"] += 1
        return masked(*args)

    serve_module.encode_response = counted_encode  # type: ignore[assignment]
    serve_module.masked_response = counted_masked  # type: ignore[assignment]
    serving = spec["serve"]
    with tempfile.TemporaryDirectory() as out:
        options = RunOptions(policies=(str(POLICIES),), resolve=False, out_dir=out, clock="flows",
                             serve="127.0.0.1:0" if serving else None, serve_capacity=spec["capacity"])
        full = spec["full"]
        source = (HubbleSource(spec["target"], None, follow=False, allowlist=(), field_mask=()) if full
                  else HubbleSource(spec["target"], None, follow=False))
        daemon = Daemon(options, source=source)
        observer = None
        clients: list[subprocess.Popen[str]] = []
        if serving:
            assert daemon.ring is not None
            observer = serve_module.serve_observer(daemon.ring, "127.0.0.1:0")
            address = f"127.0.0.1:{observer.port}"
            for _ in range(spec["clients"]):
                clients.append(subprocess.Popen(
                    [sys.executable, __file__, "--client", address] + (["--masked"] if spec["masked"] else [])
                    + (["--dropped"] if spec.get("dropped") else []),
                    stdout=subprocess.PIPE, text=True, env=os.environ))
            for client in clients:
                assert client.stdout is not None
                if client.stdout.readline().strip() != "ready":
                    raise SystemExit("a client did not start")
        profile = None
        pipeline = daemon._pipeline
        if spec["profile"]:
            import cProfile

            profile = cProfile.Profile()

        def measured() -> None:  # the pipeline thread's own CPU (it has ended when the run returns)
            counts["pipeline_tid"] = threading.get_native_id()
            start = time.thread_time()
            try:
                if profile is not None:
                    profile.runcall(pipeline)
                else:
                    pipeline()
            finally:
                counts["pipeline_cpu"] = time.thread_time() - start

        daemon._pipeline = measured  # type: ignore[method-assign]
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        before = thread_cpu()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = time.process_time()
        start = time.perf_counter()
        daemon.run()
        pipeline_seconds = time.perf_counter() - start
        pipeline_cpu = time.process_time() - cpu
        results = []
        for client in clients:
            assert client.stdout is not None
            results.append(json.loads(client.stdout.read().strip().splitlines()[-1]))
            client.wait()
        # The clients stop a second after their last message: the daemon's CPU from here on is
        # only idle polling; it is counted in (a few ms).
        cpu = time.process_time() - cpu
        after = thread_cpu()
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        groups: dict[str, float] = {"pipeline (source, enrichment, ring)": counts["pipeline_cpu"]}
        for tid, seconds in after.items():
            if tid == counts["pipeline_tid"]:  # ended; counted above
                continue
            group = thread_group(tid, names)
            groups[group] = groups.get(group, 0.0) + seconds - before.get(tid, 0.0)
        gone = cpu - sum(groups.values())
        if gone > 0.005:  # threads that ended before the end (a gRPC worker of a finished call)
            groups["threads ended during the run"] = gone
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ring_len = len(daemon.ring) if daemon.ring is not None else 0
        if observer is not None:
            observer.stop(0)
        if profile is not None:
            import pstats

            stats = pstats.Stats(profile, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(22)
    print(json.dumps({
        "encoded_flows": len(encoded_uuids), "flows": daemon.summary.flows, "seconds": pipeline_seconds,
        "pipeline_cpu": pipeline_cpu, "cpu": cpu,
        "threads": groups, "encodings": counts["encodings"], "masked": counts["masked"],
        "baseline_mb": baseline_kb / 1024, "peak_mb": peak_kb / 1024, "ring": ring_len, "clients": results,
        "voluntary_switches": usage_after.ru_nvcsw - usage.ru_nvcsw,
        "involuntary_switches": usage_after.ru_nivcsw - usage.ru_nivcsw,
    }))


def run_daemon(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--daemon", json.dumps(spec)], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(HERE)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{spec}: failed:\n{proc.stderr[-3000:]}")
    if spec["profile"]:
        print(proc.stderr)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- the report -------------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_stat() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:8]) - idle - steal) / _TICKS, steal / _TICKS


def scenario(label: str, target: str, server_pid: int, *, full: bool = True, serve: bool = False, clients: int = 0,
             masked: bool = False, capacity: int = 4095, repeat: int = 1, profile: bool = False,
             dropped: bool = False) -> dict[str, Any]:
    spec = {"target": target, "full": full, "serve": serve, "clients": clients, "masked": masked, "dropped": dropped,
            "capacity": capacity, "profile": profile}
    runs = []
    for _ in range(repeat):
        busy, steal = cpu_stat()
        server_cpu = process_cpu(server_pid)
        result = run_daemon(spec)
        busy_after, steal_after = cpu_stat()
        result["server_cpu"] = process_cpu(server_pid) - server_cpu
        clients_cpu = sum(c["cpu"] for c in result["clients"])
        # Whatever else ran on the machine meanwhile (the other agents, our processes' start-up):
        # busy time that is not the daemon's, its clients' or the replay server's while measured.
        result["others_cpu"] = max(0.0, busy_after - busy - result["cpu"] - clients_cpu - result["server_cpu"])
        result["steal"] = steal_after - steal
        runs.append(result)
    best = dict(min(runs, key=lambda r: r["cpu"] / max(1, r["flows"])))
    best["label"] = label
    best["spread"] = sorted(r["cpu"] / max(1, r["flows"]) * 1e6 for r in runs)
    return best


def calibration_ms() -> float:
    """CPU ms of a fixed pure-Python loop (best of 5): tells machines apart, and is steady under
    load on one (benchmarks/README.md: 128-136 ms on the 2-core AMD EPYC where the figures were taken)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        table: dict[int, str] = {}
        for i in range(1_500_000):
            table[i & 1023] = str(i)
        best = min(best, time.process_time() - start)
    return best * 1000


def received(result: dict[str, Any]) -> tuple[int, float, int]:
    """(flows all clients received, their rate together over first..last message, lost events)."""
    clients = [c for c in result["clients"] if c["flows"]]
    total = sum(c["flows"] for c in result["clients"])
    lost = sum(c["lost"] for c in result["clients"])
    if not clients:
        return total, 0.0, lost
    span = max(c["last"] for c in clients) - min(c["first"] for c in clients)
    return total, total / span if span > 0 else 0.0, lost


def print_table(results: list[dict[str, Any]], base: dict[str, Any]) -> None:
    base_us = base["cpu"] / base["flows"] * 1e6
    print(f"{'scenario':<34} {'flows':>8} {'flows/s':>8} {'µs CPU/flow':>12} {'vs base':>8} {'encoded':>8} "
          f"{'enc/flow':>8} {'received':>9} {'recv/s':>9} {'lost':>7} {'client µs/msg':>13} {'RSS MB':>7}")
    for r in results:
        us = r["cpu"] / r["flows"] * 1e6
        total, rate, lost = received(r)
        client_cpu = sum(c["cpu"] for c in r["clients"])
        per_message = f"{client_cpu / total * 1e6:.1f}" if total else "-"
        # encoded: distinct flows encoded; enc/flow: encodings per such flow (1.00: each once), masked ones apart
        encoded, per_flow = f"{r['encoded_flows']:,}", "-"
        if r["encoded_flows"]:
            per_flow = f"{r['encodings'] / r['encoded_flows']:.2f}"
            if r["masked"]:
                per_flow += f"+{r['masked'] / r['encoded_flows']:.2f}m"
        print(f"{r['label']:<34} {r['flows']:>8,} {r['flows'] / r['seconds']:>8,.0f} {us:>12.1f} "
              f"{us / base_us - 1:>+8.0%} {encoded:>8} {per_flow:>8} {total:>9,} {rate:>9,.0f} {lost:>7,} "
              f"{per_message:>13} "
              f"{r['peak_mb']:>7.0f}")
    print("\nspread of µs CPU/flow over the runs; replay server CPU; the machine's other load meanwhile (CPU-s not "
          "ours) and steal; the daemon's context switches:")
    for r in results:
        print(f"  {r['label']:<34} {', '.join(f'{x:.1f}' for x in r['spread'])}   server {r['server_cpu']:.1f} s, "
              f"others {r['others_cpu']:.1f} s, "
              f"steal {r['steal']:.2f} s, context switches {r['voluntary_switches']:,} voluntary "
              f"{r['involuntary_switches']:,} involuntary")
    print("\ndaemon CPU per flow by thread (µs):")
    for r in results:
        parts = sorted(r["threads"].items(), key=lambda kv: -kv[1])
        print(f"  {r['label']:<34} " + ", ".join(f"{name} {seconds / r['flows'] * 1e6:.1f}"
                                                for name, seconds in parts if seconds / r["flows"] * 1e6 >= 0.1))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        client_main(sys.argv[2], "--masked" in sys.argv[3:], "--dropped" in sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--daemon":
        daemon_main(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=100_000, help="corpus streamed once per scenario")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (the least CPU per flow is shown)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (~30 s on 2 cores): 10,000 flows, once each, no memory runs")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the pipeline thread (run, full stream; serve, 1 client)")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the ring-capacity runs")
    parser.add_argument("--only", metavar="TEXT", action="append", default=[],
                        help="run only the scenarios whose name contains TEXT (repeatable; the base always runs)")
    args = parser.parse_args()
    if args.quick:
        args.flows, args.repeat, args.skip_memory = 10_000, 1, True
    jsonl = ensure_corpus(args.flows, args.seed)
    pb = ensure_protobuf_corpus(jsonl)
    ctx = multiprocessing.get_context("spawn")
    parent, child_conn = ctx.Pipe()
    server = ctx.Process(target=replay, args=(pb, child_conn), daemon=True)
    server.start()
    target, sent = parent.recv()
    server_pid = server.pid
    assert server_pid is not None
    print(f"corpus {jsonl.name}: Hubble sends {sent['run']:,} events to `run`, {sent['full']:,} to `run --serve`; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, each run {args.repeat}x; "
          f"calibration loop {calibration_ms():.0f} ms CPU\n")
    try:
        if args.profile:
            scenario("run, full stream", target, server_pid, profile=True)
            scenario("serve, 1 client", target, server_pid, serve=True, clients=1, profile=True)
            return
        repeat = args.repeat
        base = scenario("run, full stream", target, server_pid, repeat=repeat)
        wanted: list[tuple[str, dict[str, Any]]] = [
            ("run", {"full": False}),
            ("serve, 0 clients", {"serve": True}),
            ("serve, 1 client", {"serve": True, "clients": 1}),
            ("serve, 1 client, hubble CLI mask", {"serve": True, "clients": 1, "masked": True}),
            ("serve, 10 clients", {"serve": True, "clients": 10}),
            ("serve, 10 clients --verdict DROPPED", {"serve": True, "clients": 10, "dropped": True}),
        ]
        if not args.skip_memory:
            wanted += [(f"serve, {clients} client{'s' * (clients != 1)}, ring {capacity}",
                        {"serve": True, "clients": clients, "capacity": capacity, "memory": True})
                       for capacity in (4095, 65535) for clients in (0, 1)]
        results = [base]
        for label, spec in wanted:
            if args.only and not any(text in label for text in args.only):
                continue
            runs = 1 if spec.pop("memory", False) else repeat
            results.append(scenario(label, target, server_pid, repeat=runs, **spec))
        print_table(results, base)
    finally:
        parent.send("stop")
        server.join(30)


if __name__ == "__main__":
    main()
