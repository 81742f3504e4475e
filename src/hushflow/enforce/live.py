"""Keep CiliumCIDRGroups in step with what the learner learns, as it learns it.

Order matters for the guarantees: a learned IP is first written to the state journal (fsync),
then published in its CIDR group. A crash at any point therefore loses nothing already
published; at worst an IP in the journal is published again after the restart.

Only the groups whose content changed are written (one file in directory mode, one object
with --apply), and the time from reading the DNS answer to the write is the leak window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hushflow.enforce.compile import DEFAULT_GROUP_CAP, cidr_groups
from hushflow.enforce.denies import FqdnDeny
from hushflow.enforce.learner import Change
from hushflow.enforce.state import DenyState, Journal, JournalEntry
from hushflow.enforce.writer import object_path, render_object, write_file_atomic

ApplyFn = Callable[[Sequence[dict[str, Any]], Sequence[dict[str, Any]]], None]  # (changed, deleted)


@dataclass(slots=True)
class PublishStats:
    writes: int = 0
    deletes: int = 0
    leak_windows: list[float] = field(default_factory=list)  # seconds, most recent last (bounded)


class GroupPublisher:
    def __init__(
        self,
        denies: Sequence[FqdnDeny],
        state: DenyState,
        *,
        out_dir: str | None = None,
        apply: ApplyFn | None = None,
        journal: Journal | None = None,
        group_cap: int = DEFAULT_GROUP_CAP,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.denies = {deny.id: deny for deny in denies}
        self.state = state
        self.out_dir = out_dir
        self.apply = apply
        self.journal = journal
        self.group_cap = group_cap
        self.monotonic = monotonic
        self.stats = PublishStats()
        self._written: dict[str, str] = {}  # group name -> rendered text last published
        self._names: dict[str, set[str]] = {}  # deny id -> group names last published

    def groups(self) -> list[dict[str, Any]]:
        return [g for deny in self.denies.values() for g in cidr_groups(deny, self.state.ips(deny.id), self.group_cap)]

    def publish_all(self) -> None:
        """Publish every group (at start-up, and after expiry removed IPs)."""
        self._publish(set(self.denies))

    def publish_changes(self, changes: Sequence[Change], read_at: float | None = None) -> float | None:
        """Journal then publish `changes`; returns the leak window in seconds when `read_at` is given."""
        if not changes:
            return None
        if self.journal is not None:
            self.journal.append(
                JournalEntry(c.deny_id, c.ip, c.name, c.ttl, c.at, c.source) for c in changes if c.added
            )
        self._publish({c.deny_id for c in changes if c.deny_id in self.denies})
        if read_at is None:
            return None
        window = self.monotonic() - read_at
        self.stats.leak_windows.append(window)
        if len(self.stats.leak_windows) > 100_000:
            del self.stats.leak_windows[:50_000]
        return window

    def _publish(self, deny_ids: set[str]) -> None:
        changed: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for deny_id in sorted(deny_ids):
            deny = self.denies[deny_id]
            groups = cidr_groups(deny, self.state.ips(deny_id), self.group_cap)
            names = {g["metadata"]["name"] for g in groups}
            for group in groups:
                name = group["metadata"]["name"]
                text = render_object(group)
                if self._written.get(name) == text:
                    continue
                self._written[name] = text
                changed.append(group)
                if self.out_dir:
                    write_file_atomic(os.path.join(self.out_dir, object_path(group)), text)
                self.stats.writes += 1
            for name in sorted(self._names.get(deny_id, set()) - names):
                gone = {"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": {"name": name}}
                deleted.append(gone)
                self._written.pop(name, None)
                if self.out_dir:
                    path = os.path.join(self.out_dir, object_path(gone))
                    if os.path.exists(path):
                        os.unlink(path)
                self.stats.deletes += 1
            self._names[deny_id] = names
        if self.apply is not None and (changed or deleted):
            self.apply(changed, deleted)
