#!/usr/bin/env python3
"""dnstap messages/s into the learner: `hushflow run --dnstap` fed by a sender at full speed.

Usage: .venv/bin/python benchmarks/bench_dnstap.py [--messages 200000] [--senders 1] [--denied 0.01]

The daemon is the real one (`Daemon` with the example's policies, CIDR groups written to a
temporary --out directory), listening on a unix socket; it reads the example's first flow, so
my-app's address is known. Each sender is its own process (as CoreDNS is), connects, does the
Frame Streams handshake and writes pre-built CLIENT_RESPONSE frames as fast as the socket takes
them: answers for 5,000 names and `--denied` of them for denied names (over `--denied-ips`
addresses: each new one a CIDR group write, then refreshes), from 100 client addresses of
which one is my-app's (the others are unattributed).
Reported: messages/s from the first frame sent to the last one learned, and the daemon's CPU
per message (all its threads; the senders are other processes). Target (issue 16): >= 20,000/s,
a busy node's DNS rate.
"""

from __future__ import annotations

import argparse
import ipaddress
import multiprocessing
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.rrset
from dnstap_pb import dnstap_pb2

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.flow.dnstap import CONTENT_TYPE, CONTROL_ACCEPT, CONTROL_READY, CONTROL_START, control_frame, data_frame

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "telemetry-block"
MY_APP_IP = "10.0.1.10"


def frames(count: int, denied: float, seed: int, denied_ips: int = 50) -> list[bytes]:
    """`count` data frames, built once (the sender only writes)."""
    out = []
    every = max(1, round(1 / denied)) if denied > 0 else 0
    for index in range(count):
        if every and index % every == 0:
            # a denied name: one of `denied_ips` addresses (the first answer of each is a new IP
            # for the deny, a CIDR group write; later ones refresh it)
            which = (index // every) % denied_ips
            name, ip = f"h{which}.telemetry.example.com.", _public(which)
        else:
            name, ip = f"svc{(index * 7 + seed) % 5000}.example.org.", _public(index % 5000 + 1_000_000)
        client = MY_APP_IP if index % 100 == 0 else f"10.1.{(index % 100) >> 8}.{index % 100}"
        query = dns.message.make_query(name, "A")
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", ip))
        frame = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE, identity=b"coredns-bench")
        message = frame.message
        message.type = dnstap_pb2.Message.CLIENT_RESPONSE
        message.socket_family = dnstap_pb2.INET
        message.socket_protocol = dnstap_pb2.UDP
        message.query_address = ipaddress.ip_address(client).packed
        message.response_address = ipaddress.ip_address("10.96.0.10").packed
        message.query_port = 40000 + index % 20000
        message.response_time_sec = 1_764_000_000 + index // 1000
        message.response_message = reply.to_wire()
        out.append(data_frame(frame.SerializeToString()))
    return out


def _public(index: int) -> str:
    # 100.64.0.0/10 and the private ranges are never denied from DNS: use 11.0.0.0/8 onwards.
    return str(ipaddress.IPv4Address((11 << 24) + index))


def send(path: str, payload: bytes, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(control_frame(CONTROL_READY, (CONTENT_TYPE,)))
    accept = sock.recv(4096)
    assert accept == control_frame(CONTROL_ACCEPT, (CONTENT_TYPE,)), accept
    sock.sendall(control_frame(CONTROL_START, (CONTENT_TYPE,)))
    ready.wait()
    sock.sendall(payload)
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--denied", type=float, default=0.01, help="share of answers for denied names")
    parser.add_argument("--denied-ips", type=int, default=50,
                        help="distinct addresses of the denied names (each new one is a CIDR group write)")
    args = parser.parse_args()
    per_sender = args.messages // args.senders
    payloads = [b"".join(frames(per_sender, args.denied, seed, args.denied_ips)) for seed in range(args.senders)]
    total = per_sender * args.senders
    with tempfile.TemporaryDirectory(prefix="hf-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        flows = root / "flows.jsonl"
        flows.write_bytes((EXAMPLE / "flows.jsonl").read_bytes().splitlines(keepends=True)[0])
        sock = root / "dnstap.sock"
        daemon = Daemon(RunOptions(
            policies=(str(EXAMPLE),), input_files=(str(flows),), follow=True, out_dir=str(root / "groups"),
            resolve=False, max_total=total + 10, dnstap=(f"unix://{sock}",)), stderr=sys.stderr)
        worker = threading.Thread(target=daemon.run)
        worker.start()
        while daemon.summary.flows < 1:
            time.sleep(0.01)
        go = multiprocessing.Event()
        senders = [multiprocessing.Process(target=send, args=(str(sock), payload, go)) for payload in payloads]
        for process in senders:
            process.start()
        while daemon.dnstap is not None and daemon.dnstap.stats.connections < args.senders:
            time.sleep(0.01)
        stats = daemon.dnstap.stats if daemon.dnstap is not None else None
        assert stats is not None
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        go.set()
        while sum(stats.messages.values()) < total:
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        for process in senders:
            process.join()
        daemon.stop()
        worker.join()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    counts = dict(stats.messages)
    print(f"dnstap messages: {total:,} from {args.senders} sender(s), {args.denied:.0%} for denied names "
          f"({args.denied_ips} addresses)")
    print(f"into the learner: {total / elapsed:,.0f} messages/s (target >= 20,000/s); kinds {counts}")
    print(f"daemon CPU: {cpu / total * 1e6:.1f} us per message ({cpu:.2f} s for {elapsed:.2f} s wall)")
    print(f"IPs learned for the deny: {daemon.summary.learned_ips:,}; malformed: {dict(stats.malformed) or 0}")


if __name__ == "__main__":
    main()
