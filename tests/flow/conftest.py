"""Shared by the gRPC tests (source, target, request, sources): the recorded flows, the Observer
test double serving them, and builders of numbered flows."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hushflow.flow.reader import FlowEvent
from hushflow.flow.times import format_timestamp
from tests.doubles.observer_server import ObserverTestServer

RECORDED = Path(__file__).parents[1] / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return gzip.decompress(RECORDED.read_bytes()).splitlines()[:300]


@pytest.fixture
def server(lines: list[bytes]) -> Iterator[ObserverTestServer]:
    with ObserverTestServer(lines) as srv:
        yield srv


def flow_line(n: int, time_: str, uuid: str | None = None) -> bytes:
    flow: dict[str, Any] = {"time": time_}
    if uuid is not None:
        flow["uuid"] = uuid
    flow.update({"verdict": "FORWARDED", "Summary": f"#{n}"})
    return orjson.dumps({"flow": flow, "node_name": "node-a", "time": time_})


def numbered(count: int, start: int = 0) -> list[bytes]:
    """Flows #start.. at 2026-03-02T09:00:00Z + 100 ms each."""
    return [flow_line(i, format_timestamp(1772442000 + i // 10, i % 10 * 100_000_000), f"uuid-{i}")
            for i in range(start, start + count)]


def summaries(events: list[FlowEvent]) -> list[str]:
    return [e.data["flow"]["Summary"] for e in events]
