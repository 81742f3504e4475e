"""What the sinks take: one `VerdictRecord` per attributed policy verdict, built once.

Metrics, events (and later other sinks) all need the same few facts of a verdict: the
connection and who enforced it, the verdict, the tags, whether the drop was planned, whether
hushflow and Cilium agree. The wiring builds a record once from the engine's attribution and
hands it to every sink, so no sink re-derives the connection or knows the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hushflow.flow.connection import Connection, destination_of, workload_of


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    flow: Mapping[str, Any]  # the Hubble flow, enriched (policy_log and *_by filled)
    time: float  # flow time, seconds since the epoch
    connection: Connection
    namespace: str  # of the endpoint that enforced the verdict
    workload: str
    destination: str  # the peer: DNS name, namespace/workload or "world"
    verdict: str  # FORWARDED, DROPPED, AUDIT, ...
    tags: tuple[str, ...]  # the rules' log values (policy_log)
    expected: bool | None  # for DROPPED/AUDIT: planned (a known tag) or not; None otherwise
    disagreement: str = ""  # "observed/decided" when hushflow's decision and Cilium's verdict differ

    @classmethod
    def of(
        cls,
        flow: Mapping[str, Any],
        connection: Connection,
        *,
        tags: tuple[str, ...],
        expected: bool | None,
        disagreement: str = "",
    ) -> VerdictRecord:
        local = connection.local
        return cls(
            flow=flow,
            time=connection.time,
            connection=connection,
            namespace=str(local.get("namespace", "")),
            workload=workload_of(local),
            destination=destination_of(flow, connection.direction),
            verdict=str(flow.get("verdict", "")),
            tags=tags,
            expected=expected,
            disagreement=disagreement,
        )
