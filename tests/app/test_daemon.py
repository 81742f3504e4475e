"""hushflow run: the daemon end to end on files, its HTTP endpoints, SIGTERM, and crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.http import serve_http

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
FLOWS = EXAMPLE / "flows.jsonl"
DENY_ID = "cnp.my-namespace.app-external-block-policy.egressdeny-0"


def options(tmp_path: Path, **extra) -> RunOptions:
    base = dict(policies=(str(EXAMPLE),), input_files=(str(FLOWS),), out_dir=str(tmp_path / "groups"),
                state_path=str(tmp_path / "state.json"), resolve=False, clock="flows",
                events=(f"file:{tmp_path / 'events.jsonl'}",))
    base.update(extra)
    return RunOptions(**base)


def sample(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.registry.get_sample_value(name, labels) or 0.0


def test_replay_of_the_example(tmp_path):
    daemon = Daemon(options(tmp_path))
    assert daemon.run() == 0
    summary = daemon.summary
    assert (summary.flows, summary.verdicts, summary.learned_ips) == (25, 17, 3)
    assert summary.drops_by_tag[("app-explicit-traffic-blocked", True)] == 9
    assert summary.drops_by_tag[("(none)", False)] == 3
    group = (tmp_path / "groups" / "ciliumcidrgroups" / f"hushflow.{DENY_ID}.run.yaml").read_text()
    assert "198.51.100.10/32" in group and "198.51.100.12/32" in group
    labels = dict(direction="egress", namespace="my-namespace", workload="my-app", verdict="DROPPED")
    assert sample(daemon, "hushflow_policy_verdicts_total", **labels, tag="app-explicit-traffic-blocked",
                  expected="true") == 9
    assert sample(daemon, "hushflow_policy_verdicts_total", **labels, tag="", expected="false") == 3
    assert sample(daemon, "hushflow_unexpected_drops_total", direction="egress", namespace="my-namespace",
                  workload="my-app", destination="world", reply="false") == 3
    assert sample(daemon, "hushflow_dns_answers_total") == 4
    assert sample(daemon, "hushflow_cidr_group_ips", group=f"hushflow.{DENY_ID}.run",
                  policy="my-namespace/app-external-block-policy") == 3
    assert sample(daemon, "hushflow_leak_window_seconds_count") >= 1
    # One event for the three drops of the same call (dedup window), with its explanation.
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert event["destination"] == "world" and event["port"] == 443 and event["repeats_since_last"] == 0
    assert "UNEXPECTED drop" in event["explain"] and "203.0.113.50" in event["explain"]
    assert json.loads((tmp_path / "state.json").read_text())["denies"][DENY_ID]


def test_follow_then_stop_drains_everything_and_saves(tmp_path):
    live = tmp_path / "live.jsonl"
    lines = FLOWS.read_bytes().splitlines(keepends=True)
    live.write_bytes(b"".join(lines[:8]))
    daemon = Daemon(options(tmp_path, input_files=(str(live),), follow=True))
    worker = threading.Thread(target=daemon.run)
    worker.start()
    with open(live, "ab") as handle:
        for line in lines[8:]:
            handle.write(line)
            handle.flush()
    deadline = time.monotonic() + 20
    while daemon.summary.flows < len(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.stop()
    worker.join(20)
    assert not worker.is_alive()
    assert daemon.summary.flows == len(lines)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert sorted(saved["denies"][DENY_ID]) == ["198.51.100.10", "198.51.100.11", "198.51.100.12"]


def test_http_endpoints(tmp_path):
    live = tmp_path / "live.jsonl"
    live.write_bytes(FLOWS.read_bytes())
    daemon = Daemon(options(tmp_path, input_files=(str(live),), follow=True))
    server = serve_http(daemon, "127.0.0.1:0")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    worker = threading.Thread(target=daemon.run)
    try:
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert not_ready.value.code == 503
        worker.start()
        daemon.ready.wait(10)
        assert urllib.request.urlopen(base + "/readyz", timeout=5).status == 200
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        deadline = time.monotonic() + 20
        while daemon.summary.flows < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert 'hushflow_build_info{version="' in body
        assert "hushflow_policy_verdicts_total{" in body
    finally:
        daemon.stop()
        worker.join(20)
        server.shutdown()


def test_policy_errors_stop_the_start(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec: {egres: []}\n")
    from hushflow.app.daemon import RunError

    with pytest.raises(RunError, match="run `hushflow lint` on them"):
        Daemon(options(tmp_path, policies=(str(bad),)))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"expected_cel": ("_flow.verdict ==",)}, "--expected-cel: error compiling CEL expression"),
        ({"protect_cidrs": ("10.0.0.0/33",)}, "--protect-cidr: not a CIDR: '10.0.0.0/33'"),
    ],
)
def test_option_mistakes_are_messages_not_tracebacks(tmp_path, extra, message):
    from hushflow.app.daemon import RunError

    with pytest.raises(RunError) as caught:
        Daemon(options(tmp_path, **extra))
    assert str(caught.value).startswith(message)


def test_metric_labels_are_bounded(tmp_path):
    daemon = Daemon(options(tmp_path, max_series=1, events=()))
    daemon.run()
    samples = [s for metric in daemon.registry.collect() if metric.name == "hushflow_policy_verdicts"
               for s in metric.samples if s.name.endswith("_total")]
    # One combination keeps its flow-derived values; later ones fold them into _other (direction,
    # verdict and expected have a fixed vocabulary and are kept).
    assert len([s for s in samples if s.labels["namespace"] != "_other"]) == 1
    assert any(s.labels["namespace"] == s.labels["workload"] == s.labels["tag"] == "_other" for s in samples)
    assert sum(s.value for s in samples) == 17


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_cli(tmp_path: Path, live: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hushflow", "run", "--policies", str(EXAMPLE), "--input-file", str(live), "--follow",
         "--out", str(tmp_path / "groups"), "--state", str(tmp_path / "state.json"), "--no-resolve",
         "--metrics-address", f"127.0.0.1:{free_port()}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def dns_line(index: int) -> bytes:
    """A DNS answer from my-app for a new telemetry name with a new IP, in Hubble's jsonpb form."""
    template = json.loads(FLOWS.read_bytes().splitlines()[5])  # the answer for ingest.telemetry.example.com
    flow = template["flow"]
    ip = f"198.18.{index // 250}.{index % 250 + 1}"
    flow["l7"]["dns"]["query"] = f"host{index}.telemetry.example.com."
    flow["l7"]["dns"]["ips"] = [ip]
    flow["Summary"] = f'DNS Answer "{ip}" TTL: 60 (Proxy host{index}.telemetry.example.com. A)'
    return json.dumps(template, separators=(",", ":")).encode() + b"\n"


def published_ips(tmp_path: Path) -> set[str]:
    path = tmp_path / "groups" / "ciliumcidrgroups" / f"hushflow.{DENY_ID}.run.yaml"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set()
    return {line.strip()[2:].split("/")[0] for line in text.splitlines() if line.strip().startswith("- ")}


def test_sigterm_drains_saves_and_exits_0(tmp_path):
    live = tmp_path / "live.jsonl"
    live.write_bytes(FLOWS.read_bytes())
    proc = start_cli(tmp_path, live)
    try:
        deadline = time.monotonic() + 30
        while len(published_ips(tmp_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"received SIGTERM: draining and saving state" in err
    assert b"25 flows" in out
    saved = json.loads((tmp_path / "state.json").read_text())
    assert len(saved["denies"][DENY_ID]) == 3


def test_kill_at_a_random_point_loses_no_published_ip(tmp_path):
    """SIGKILL the daemon while it learns, restart it: every IP it had published is still denied."""
    rng = random.Random(int(os.environ.get("HUSHFLOW_KILL_SEED", "7")))
    live = tmp_path / "live.jsonl"
    live.write_bytes(FLOWS.read_bytes())
    proc = start_cli(tmp_path, live)
    kill_after = rng.randint(5, 60)
    try:
        deadline = time.monotonic() + 60
        while len(published_ips(tmp_path)) < 3 and time.monotonic() < deadline:  # started and caught up
            time.sleep(0.05)
        with open(live, "ab") as handle:
            for index in range(80):
                handle.write(dns_line(index))
                handle.flush()
                if index == kill_after:
                    time.sleep(rng.uniform(0, 0.3))
                    published = published_ips(tmp_path)
                    proc.kill()
                    break
                time.sleep(0.01)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert published, "nothing was published before the kill; the test needs a later kill point"
    # Restart on the original flows only: what it knows comes from the state it left behind.
    second = tmp_path / "second.jsonl"
    second.write_bytes(FLOWS.read_bytes())
    restart = subprocess.run(
        [sys.executable, "-m", "hushflow", "run", "--policies", str(EXAMPLE), "--input-file", str(second),
         "--out", str(tmp_path / "groups"), "--state", str(tmp_path / "state.json"), "--no-resolve",
         "--clock", "flows", "--metrics-address", "127.0.0.1:0"],
        capture_output=True, timeout=60, check=False,
    )
    assert restart.returncode == 0, restart.stderr.decode()
    assert published <= published_ips(tmp_path)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert published <= set(saved["denies"][DENY_ID])


def test_bad_lines_are_counted_reported_and_make_a_finite_run_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"not json\n" + FLOWS.read_bytes() + b'{"flow": 3}\n')
    import io

    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, input_files=(str(bad),), events=()), stderr=stderr)
    assert daemon.run() == 2
    assert daemon.summary.flows == 25 and daemon.summary.bad_lines == 2
    assert f"{bad}:1:" in stderr.getvalue()
    assert sample(daemon, "hushflow_malformed_input_total", source=str(bad), reason="unreadable-line") == 2


def test_missing_input_and_bad_event_sink_are_start_up_errors(tmp_path):
    from hushflow.app.daemon import RunError

    with pytest.raises(RunError, match="no such input file"):
        Daemon(options(tmp_path, input_files=(str(tmp_path / "nope.jsonl"),)))
    with pytest.raises(RunError, match="unknown event sink 'bogus'"):
        Daemon(options(tmp_path, events=("bogus",)))


def test_metric_context_labels_can_be_left_empty(tmp_path):
    daemon = Daemon(options(tmp_path, events=(), metric_context=frozenset({"namespace"})))
    daemon.run()
    assert sample(daemon, "hushflow_policy_verdicts_total", direction="egress", namespace="my-namespace",
                  workload="", verdict="DROPPED", tag="", expected="true") == 9
    assert sample(daemon, "hushflow_unexpected_drops_total", direction="egress", namespace="my-namespace",
                  workload="", destination="", reply="false") == 3


def test_a_flow_that_cannot_be_processed_is_counted_reported_and_skipped(tmp_path):
    """Valid JSON of an unexpected shape (a port that is not a number) must not stop the daemon."""
    import io

    lines = FLOWS.read_bytes().splitlines()
    broken = json.loads(next(line for line in lines if b'"event_type":{"type":5}' in line))
    for proto in broken["flow"]["l4"].values():
        proto["destination_port"] = "https"
    bad = tmp_path / "odd.jsonl"
    bad.write_bytes(lines[0] + b"\n" + json.dumps(broken, separators=(",", ":")).encode() + b"\n"
                    + b"\n".join(lines[1:]) + b"\n")
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, input_files=(str(bad),), events=()), stderr=stderr)
    assert daemon.run() == 2  # a finite run that lost input says so
    # The reader validates every level of a line the C proof does not vouch for, so the flow
    # never reaches a stage: it is a bad line, named with its file:line.
    assert daemon.summary.bad_lines == 1 and daemon.summary.flows_skipped == 0
    assert daemon.summary.flows == len(lines)  # every other flow went through
    assert f"{bad}:2: flow.l4.TCP.destination_port: expected an integer, got 'https'" in stderr.getvalue()
    assert sample(daemon, "hushflow_malformed_input_total", source=str(bad), reason="unreadable-line") == 1
