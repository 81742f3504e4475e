"""The benchmarks' fast Observer (benchmarks.replay_server), read by the real gRPC client.

Its numbers are only worth something if it sends what Hubble would: the same events as the
grpcio test double for the same request, with the allowlist applied (Hubble filters server-side;
the test double only records the filters) and the same field mask.
"""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest
from benchmarks.replay_server import ReplayObserverServer
from google.protobuf import json_format

from hushflow.filter.flow_filter import compile_filters
from hushflow.flow.grpc_request import HUSHFLOW_UPSTREAM_FILTERS
from hushflow.flow.grpc_source import Backoff, GrpcFlowSource, GrpcSourceError
from hushflow.flow.sources import HubbleSource
from hushflow.proto import observer_pb2
from tests.doubles.observer_server import ObserverTestServer

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


@pytest.fixture(scope="module")
def messages() -> list[observer_pb2.GetFlowsResponse]:
    lines = gzip.decompress(RECORDED.read_bytes()).splitlines()[:1500]
    return [json_format.Parse(line, observer_pb2.GetFlowsResponse()) for line in lines]


def test_sends_what_hubble_would_for_hushflows_request(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    with ObserverTestServer(messages) as double:
        masked = [e.data for e in HubbleSource(double.address, follow=False).events()]
    wanted = compile_filters(HUSHFLOW_UPSTREAM_FILTERS, [])
    expected = [data for data in masked if wanted(data)]
    assert 0 < len(expected) < len(masked)  # the allowlist really selects

    with ReplayObserverServer(messages) as server:
        source = HubbleSource(server.address, follow=False)
        assert server.prepare(source.source.request) == len(expected)
        got = [e.data for e in source.events()]
        assert server.requests[0] == source.source.request
    assert got == expected
    assert source.stats.server_version == "hushflow-replay-server"  # ServerStatus answered first


def test_without_filters_everything_is_sent_in_order(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    with ReplayObserverServer(messages) as server:
        got = [e.data for e in GrpcFlowSource(server.address, follow=False)]
    assert len(got) == len(messages)
    assert got[0]["flow"]["uuid"] == messages[0].flow.uuid
    assert got[-1]["flow"]["uuid"] == messages[-1].flow.uuid


def test_follow_keeps_the_stream_open_until_stopped(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    with ReplayObserverServer(messages[:50]) as server:
        source = GrpcFlowSource(server.address, follow=True)
        got: list[object] = []
        done = threading.Event()

        def read() -> None:
            for event in source:
                got.append(event)
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert not done.wait(1.0)  # all 50 sent, the stream stays open
        assert len(got) == 50
        source.stop()
        assert done.wait(5.0)


def test_requests_it_does_not_evaluate_are_refused(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    with ReplayObserverServer(messages[:10]) as server:
        source = GrpcFlowSource(server.address, follow=False, number=5, max_retries=0, backoff=Backoff(0.0, 0.0))
        with pytest.raises(GrpcSourceError, match="UNIMPLEMENTED"):
            list(source)


def test_repeat_sends_the_recording_again(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    with ReplayObserverServer(messages[:40], repeat=3) as server:
        got = [e.data["flow"]["uuid"] for e in GrpcFlowSource(server.address, follow=False)]
    assert got == [m.flow.uuid for m in messages[:40]] * 3
