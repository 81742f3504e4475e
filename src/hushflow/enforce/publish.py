"""Keep CiliumCIDRGroups in step with what the learner learns, as it learns it.

Order matters for the guarantees: a learned IP is first written to the state journal (fsync),
then published in its CIDR group. A crash at any point therefore loses nothing already
published; at worst an IP in the journal is published again after the restart.

Only the groups whose content changed are written (one file in directory mode, one object
with --apply), and the time from reading the DNS answer to the write is the leak window.

With a `GroupWrites` queue (what `hushflow run` uses), the writes happen on its thread and are
retried until they land; the leak window is then measured up to the accepted write. A journal
that cannot be written (a full disk) does not stop publishing: denying is the safe side. The
lines wait (bounded) and are written with the next ones; the failure is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hushflow.enforce.compile import (
    DEFAULT_GROUP_CAP,
    group_name,
    group_object,
    shard_bits,
    shard_members,
    shard_of,
)
from hushflow.enforce.denies import FqdnDeny
from hushflow.enforce.group_writes import GroupWrites
from hushflow.enforce.learner import Change
from hushflow.enforce.state import AllowedEntry, DenyState, Journal, JournalEntry
from hushflow.enforce.writer import object_path, render_object, write_file_atomic

ApplyFn = Callable[[Sequence[dict[str, Any]], Sequence[dict[str, Any]]], None]  # (changed, deleted)
#: Journal lines kept while the journal cannot be written; beyond it the next snapshot holds them.
_MAX_UNJOURNALED = 100_000


@dataclass(slots=True)
class PublishStats:
    writes: int = 0
    deletes: int = 0
    leak_windows: list[float] = field(default_factory=list)  # seconds, most recent last (bounded)


def policy_label(deny: FqdnDeny) -> str:
    """`namespace/name` of a deny's policy (`name` for a clusterwide one), for metric labels."""
    ref = deny.rule.policy
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


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
        instance: str = "",
        monotonic: Callable[[], float] = time.monotonic,
        writes: GroupWrites | None = None,
        on_journal_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.denies = {deny.id: deny for deny in denies}
        self.state = state
        self.out_dir = out_dir
        self.apply = apply
        self.journal = journal
        self.group_cap = group_cap
        self.instance = instance
        self.monotonic = monotonic
        self.writes = writes
        self.on_journal_error = on_journal_error
        self._unjournaled: list[JournalEntry | AllowedEntry] = []
        self.stats = PublishStats()
        self._written: dict[str, str] = {}  # group name -> rendered text last published
        # deny id -> (shard bits, shard -> IPs): kept in step so one new IP touches one group
        self._shards: dict[str, tuple[int, dict[int, set[str]]]] = {}

    def groups(self) -> list[dict[str, Any]]:
        return [
            group_object(self.denies[deny_id], shard, bits, members, self.instance)
            for deny_id, (bits, shards) in sorted(self._shards.items())
            for shard, members in sorted(shards.items())
        ]

    def group_sizes(self) -> list[tuple[str, str, int]]:
        """(group name, policy name, IPs) of every group, cheaply (for gauges)."""
        return [
            (group_name(deny_id, shard, bits, self.instance), policy_label(self.denies[deny_id]), len(members))
            for deny_id, (bits, shards) in sorted(self._shards.items())
            for shard, members in sorted(shards.items())
        ]

    def publish_all(self) -> None:
        """Re-shard and publish every deny from the state (start-up, and after expiry)."""
        changed: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for deny_id in sorted(self.denies):
            self._reshard(deny_id, changed, deleted)
        self._emit(changed, deleted)

    def publish_changes(self, changes: Sequence[Change], read_at: float | None = None) -> float | None:
        """Journal then publish `changes`; returns the leak window in seconds when `read_at` is given."""
        if not changes:
            return None
        if self.journal is not None:
            self._journal([
                *self.state.take_pending_allowed(),
                *(JournalEntry(c.deny_id, c.ip, c.name, c.ttl, c.at, c.source) for c in changes if c.added),
            ])
        dirty: dict[str, set[int]] = {}
        for change in changes:
            if change.deny_id not in self.denies:
                continue
            if change.deny_id not in self._shards:
                self._shards[change.deny_id] = (0, {0: set()})
            bits, shards = self._shards[change.deny_id]
            shard = shard_of(change.ip, bits)
            if change.added:
                shards[shard].add(change.ip)
            else:
                shards[shard].discard(change.ip)
            dirty.setdefault(change.deny_id, set()).add(shard)
        changed: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for deny_id, shard_ids in sorted(dirty.items()):
            bits, shards = self._shards[deny_id]
            if any(len(shards[s]) > self.group_cap for s in shard_ids):
                self._reshard(deny_id, changed, deleted)  # a shard overflowed: split them all
                continue
            for shard in sorted(shard_ids):
                group = group_object(self.denies[deny_id], shard, bits, shards[shard], self.instance)
                self._render(group, changed)
        self._emit(changed, deleted, read_at)
        if read_at is None or self.writes is not None:  # queued: the window ends when the write lands
            return None
        window = self.monotonic() - read_at
        self.stats.leak_windows.append(window)
        if len(self.stats.leak_windows) > 100_000:
            del self.stats.leak_windows[:50_000]
        return window

    def _journal(self, entries: list[JournalEntry | AllowedEntry]) -> None:
        """Journal `entries` (and any that could not be written before); on failure keep them."""
        assert self.journal is not None
        if self._unjournaled:
            entries = [*self._unjournaled, *entries]
        try:
            self.journal.append(entries)
        except OSError as exc:
            self._unjournaled = entries[-_MAX_UNJOURNALED:]
            if self.on_journal_error is None:
                raise
            self.on_journal_error(exc)
            return
        self._unjournaled = []

    def journal_ok(self) -> bool:
        """False while journal lines wait for a journal write that failed."""
        return not self._unjournaled

    def _reshard(self, deny_id: str, changed: list[dict[str, Any]], deleted: list[dict[str, Any]]) -> None:
        deny = self.denies[deny_id]
        ips = self.state.ips(deny_id)
        old_names = set()
        if deny_id in self._shards:
            old_bits, old = self._shards[deny_id]
            old_names = {group_name(deny_id, shard, old_bits, self.instance) for shard in old}
        bits = shard_bits(ips, self.group_cap)
        shards = shard_members(ips, bits)
        self._shards[deny_id] = (bits, shards)
        names = set()
        for shard, members in sorted(shards.items()):
            group = group_object(deny, shard, bits, members, self.instance)
            names.add(group["metadata"]["name"])
            self._render(group, changed)
        for name in sorted(old_names - names):
            deleted.append({"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": {"name": name}})
            self._written.pop(name, None)

    def _render(self, group: dict[str, Any], changed: list[dict[str, Any]]) -> None:
        name = group["metadata"]["name"]
        text = render_object(group)
        if self._written.get(name) != text:
            self._written[name] = text
            changed.append(group)

    def _emit(self, changed: list[dict[str, Any]], deleted: list[dict[str, Any]], read_at: float | None = None) -> None:
        if self.writes is not None:
            self.stats.writes += len(changed)
            self.stats.deletes += len(deleted)
            self.writes.submit(
                [(group, self._written[group["metadata"]["name"]]) for group in changed],
                [gone["metadata"]["name"] for gone in deleted], read_at,
            )
            return
        if self.out_dir:
            for group in changed:
                write_file_atomic(
                    os.path.join(self.out_dir, object_path(group)), self._written[group["metadata"]["name"]]
                )
            for gone in deleted:
                path = os.path.join(self.out_dir, object_path(gone))
                if os.path.exists(path):
                    os.unlink(path)
        self.stats.writes += len(changed)
        self.stats.deletes += len(deleted)
        if self.apply is not None and (changed or deleted):
            self.apply(changed, deleted)
