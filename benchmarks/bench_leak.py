#!/usr/bin/env python3
"""The leak window: from reading a DNS answer to its IPs being written in their CIDR group.

Usage: .venv/bin/python benchmarks/bench_leak.py [--learned 100000] [--answers 2000] [--dir DIR] [--dnstap]

Directory mode, as `hushflow run --out DIR --state FILE` does it: the state already holds
`--learned` IPs for the example's FQDN deny (sharded over CiliumCIDRGroups of at most 1,000),
then `--answers` new DNS answers arrive one by one; each goes through the deny learner, the
fsync'ed state journal and the atomic (fsync + rename) write of its one group file. Prints
p50/p90/p99/max of the window and the answers/s. Target (issue 5): p99 under 50 ms with
100,000 learned IPs.

`--dnstap`: the answers come as dnstap instead of Hubble DNS flows (`run --dnstap`): a DNS
server (a thread of this process) writes each CLIENT_RESPONSE frame to the real listener
(`DnstapServer`, a unix socket, Frame Streams), which parses it and hands it to the same learner
and publisher. The window then runs from the DNS server's write to the group file written, so
it includes the socket and the dnstap parse; printed next to the Hubble figure of the same run.
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
    # public addresses: the private and shared ranges (100.64.0.0/10) are never denied from DNS
    ip = f"11.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
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
    parser.add_argument("--dnstap", action="store_true", help="also the answers sent as dnstap")
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
        learner = DenyLearner(loaded.policy_set, denies, state, max_total=args.learned + 2 * args.answers + 1)
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
        if args.dnstap:
            dnstap_windows = by_dnstap(learner, publisher, args.answers)
        journal.close()
    windows.sort()

    def pct(p: float) -> float:
        return windows[min(len(windows) - 1, int(len(windows) * p))] * 1000

    print(f"learned IPs before: {args.learned:,} in {groups} CiliumCIDRGroups (first publish {first:.1f} s)")
    print(f"new answers: {len(windows):,} at {len(windows) / elapsed:,.0f}/s")
    print(f"leak window: p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f} ms, p99 {pct(0.99):.2f} ms, "
          f"max {windows[-1] * 1000:.2f} ms (target p99 < 50 ms)")
    if args.dnstap:
        windows = sorted(dnstap_windows)
        print(f"leak window by dnstap (DNS server's write -> group file written): p50 {pct(0.5):.2f} ms, "
              f"p90 {pct(0.9):.2f} ms, p99 {pct(0.99):.2f} ms, max {windows[-1] * 1000:.2f} ms")
    print(f"peak memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def by_dnstap(learner: DenyLearner, publisher: GroupPublisher, answers: int) -> list[float]:
    """The same kind of answers (new names and IPs after the Hubble ones), one at a time through a
    unix socket, Frame Streams and the dnstap parse: the window from each write to its group written."""
    import ipaddress
    import socket
    import threading

    import dns.message
    import dns.rrset
    from dnstap_pb import dnstap_pb2

    from hushflow.app.dnstap_server import DnstapServer
    from hushflow.flow.dnstap import CONTENT_TYPE, CONTROL_READY, CONTROL_START, control_frame, data_frame

    done = threading.Event()
    ends: list[float] = []

    def deliver(messages, read_at):  # what the daemon's _dnstap_answers does, without its lock
        for message in messages:
            publisher.publish_changes(learner.learn_answer(message.dns_answer({}, ""), 1.0, any_client=True), read_at)
        ends.append(time.monotonic())
        done.set()
        return 0

    def frame(index: int) -> bytes:
        name = f"d{index}.telemetry.example.com."
        reply = dns.message.make_response(dns.message.make_query(name, "A"))
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", f"12.{(index >> 16) & 255}."
                                                f"{(index >> 8) & 255}.{index & 255}"))
        tap = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE)
        tap.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
        tap.message.query_address = ipaddress.ip_address("10.0.1.10").packed
        tap.message.response_message = reply.to_wire()
        return data_frame(tap.SerializeToString())

    windows = []
    with tempfile.TemporaryDirectory(prefix="hf-leak-", dir="/tmp") as tmp:
        path = f"{tmp}/dnstap.sock"
        server = DnstapServer([f"unix://{path}"], deliver)
        server.bind()
        server.start()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sender.connect(path)
        sender.sendall(control_frame(CONTROL_READY, (CONTENT_TYPE,)))
        sender.recv(4096)
        sender.sendall(control_frame(CONTROL_START, (CONTENT_TYPE,)))
        frames = [frame(index) for index in range(answers)]
        for data in frames:
            done.clear()
            sent = time.monotonic()
            sender.sendall(data)
            done.wait(10)
            windows.append(ends[-1] - sent)
        sender.close()
        server.close()
    return windows


if __name__ == "__main__":
    main()
