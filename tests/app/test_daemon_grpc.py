"""hushflow run against Hubble's Observer API: the real gRPC client and the test double server.

No Hubble runs here; `tests.doubles.observer_server` serves observer.Observer over real gRPC
on loopback, and the daemon reads it through the same `HubbleSource` as in production.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.flow.grpc_request import HUSHFLOW_UPSTREAM_FILTERS
from hushflow.flow.grpc_source import Backoff
from hushflow.flow.sources import HubbleSource
from tests.doubles.observer_server import ObserverTestServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
LINES = (EXAMPLE / "flows.jsonl").read_bytes().splitlines()


def wait(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_daemon_follows_hubble_and_survives_a_cut_stream(tmp_path):
    with ObserverTestServer() as server:
        source = HubbleSource(server.address, None, backoff=Backoff(initial=0.01, maximum=0.05))
        daemon = Daemon(
            RunOptions(policies=(str(EXAMPLE),), hubble_server=server.address, resolve=False,
                       out_dir=str(tmp_path / "groups"), clock="flows"),
            source=source,
        )
        worker = threading.Thread(target=daemon.run)
        worker.start()
        try:
            server.wait_for_streams(1)
            # What hushflow pushed upstream: only what it needs.
            request = server.requests[0]
            assert request.follow and len(request.whitelist) == len(HUSHFLOW_UPSTREAM_FILTERS)
            assert "flow.l7" not in request.field_mask.paths and "l7" in request.field_mask.paths
            server.add_events(LINES[:12])
            assert wait(lambda: daemon.summary.flows == 12)
            server.cut_streams_after(0)
            server.end_streams()  # the stream breaks; the client reconnects and resumes
            server.wait_for_streams(2)
            server.add_events(LINES[12:])
            assert wait(lambda: daemon.summary.flows == len(LINES)), daemon.summary.flows
            assert wait(lambda: (daemon.registry.get_sample_value(
                "hushflow_source_reconnects_total", {"source": server.address}) or 0) >= 1, 5)
        finally:
            daemon.stop()
            worker.join(20)
    assert not worker.is_alive()
    assert daemon.summary.learned_ips == 3 and daemon.summary.verdicts == 17
    assert daemon.summary.drops_by_tag[("app-explicit-traffic-blocked", True)] == 9
    group = tmp_path / "groups" / "ciliumcidrgroups" / "hushflow.cnp.my-namespace.app-external-block-policy.egressdeny-0.run.yaml"
    assert "198.51.100.11/32" in group.read_text()


def test_a_message_with_no_json_form_is_counted_and_reported_not_the_end_of_run(tmp_path):
    """A Timestamp out of range in a GetFlowsResponse: counted in hushflow_malformed_input_total."""
    import io

    from hushflow.proto import observer_pb2

    bad = observer_pb2.GetFlowsResponse(node_name="node-a")
    bad.flow.time.seconds = 253402300800  # 10000-01-01: no protojson form
    bad.time.seconds = 253402300800
    with ObserverTestServer() as server:
        stderr = io.StringIO()
        daemon = Daemon(
            RunOptions(policies=(str(EXAMPLE),), hubble_server=server.address, resolve=False, clock="flows"),
            source=HubbleSource(server.address, None), stderr=stderr,
        )
        worker = threading.Thread(target=daemon.run)
        worker.start()
        try:
            server.wait_for_streams(1)
            server.add_events([LINES[0], bad, *LINES[1:]])
            labels = {"source": server.address, "reason": "unconvertible-message"}
            assert wait(lambda: daemon.registry.get_sample_value("hushflow_malformed_input_total", labels) == 1)
            assert wait(lambda: daemon.summary.flows == len(LINES))
        finally:
            daemon.stop()
            worker.join(20)
        assert "1 message(s) skipped so far" in stderr.getvalue() and "out of range" in stderr.getvalue()
