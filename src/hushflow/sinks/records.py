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

from hushflow.flow.connection import Connection, destination_of, looks_like_reply, workload_of


@dataclass(slots=True)
class VerdictRecord:
    """One attributed verdict as every sink sees it (built once per verdict, then only read)."""

    flow: Mapping[str, Any]  # the Hubble flow, enriched (policy_log and *_by filled)
    connection: Connection  # the connection decided on, seen from the enforcing endpoint
    namespace: str  # of the endpoint that enforced the verdict
    workload: str
    tags: tuple[str, ...]  # the rules' log values (policy_log)
    expected: bool | None  # for DROPPED/AUDIT: planned (a known tag) or not; None otherwise
    # each way Cilium's own verdict or fields differ from hushflow's attribution, by kind
    disagreements: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        flow: Mapping[str, Any],
        connection: Connection,
        *,
        tags: tuple[str, ...],
        expected: bool | None,
        disagreements: tuple[str, ...] = (),
    ) -> VerdictRecord:
        local = connection.local
        return cls(flow, connection, str(local.get("namespace", "")), workload_of(local), tags, expected,
                   disagreements)

    @property
    def time(self) -> float:
        """Flow time, seconds since the epoch."""
        return self.connection.time

    @property
    def verdict(self) -> str:
        """FORWARDED, DROPPED, AUDIT, ..."""
        return str(self.flow.get("verdict", ""))

    @property
    def destination(self) -> str:
        """The peer as people name it: its DNS name, else namespace/workload, else "world" (read
        only for unexpected drops, so it is not worked out for every verdict)."""
        return destination_of(self.flow, self.connection.direction)

    @property
    def reply(self) -> bool:
        """Whether the dropped packet continues a connection instead of opening one (read only for
        unexpected drops). Cilium drops replies as if they opened a connection when it has lost the
        connection's conntrack entry (cilium#41045), which says nothing about what the workload tried
        to reach. Hubble leaves `is_reply` out of drops, so the packet tells: a TCP segment with ACK,
        RST or FIN (a connection opens with a lone SYN), or UDP from a port below 1024 to an
        ephemeral one (a server's answer)."""
        return looks_like_reply(self.flow)
