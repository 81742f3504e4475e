"""Writes of CIDR groups that must land: queued per group, retried with backoff until accepted.

The pipeline must never wait for the Kubernetes API server or a disk: it hands the groups whose
content changed to `GroupWrites.submit` and goes on. A worker thread writes them (files in the
`--out` directory, and/or server-side apply) and keeps each one pending until its write was
*accepted* (the file renamed into place, the API server's 2xx). A failed write (500, 429, a
timeout, a conflict, a refusal, a full disk) is retried, with a backoff doubling from
`min_backoff` to `max_backoff` while writes keep failing, until it lands.

The queue is bounded by construction: it holds at most one entry per group name, the newest
desired content (a group changed again while waiting is written once, with everything it has).
For the leak window, each entry keeps the monotonic time of the earliest DNS answer it carries
that has not landed yet; `on_landed` gets that time when the write is accepted, so the window
includes the queueing and every retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A deletion waiting in the queue (instead of the group's content).
DELETE = None


@dataclass(slots=True)
class WriteOutcome:
    """What one write round did: the group names accepted, and the others with a short reason
    (a metric label: `api-5xx`, `api-429`, `api-unreachable`, `refused`, `disk`, ...) and a message."""

    accepted: set[str] = field(default_factory=set)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message)


#: (groups to write as (object, rendered text), names to delete) -> outcome. It may raise: every
#: exception counts as a failure of the whole round (reason `error`), never ends the worker.
WriteFn = Callable[[Sequence[tuple[dict[str, Any], str]], Sequence[str]], WriteOutcome]


@dataclass(slots=True)
class _Entry:
    group: tuple[dict[str, Any], str] | None  # None: delete
    read_at: float | None  # earliest DNS answer carried and not landed (monotonic seconds)
    queued_at: float
    version: int = 0
    later_read_at: float | None = None  # answers submitted while this entry's write was in flight


@dataclass(slots=True)
class WriteStats:
    rounds: int = 0
    accepted: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> failed group writes


class GroupWrites:
    def __init__(
        self,
        write: WriteFn,
        *,
        on_landed: Callable[[float], None] = lambda _read_at: None,
        report: Callable[[str], None] = lambda _message: None,
        monotonic: Callable[[], float] = time.monotonic,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._write = write
        self._on_landed = on_landed
        self._report = report
        self._monotonic = monotonic
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stats = WriteStats()
        self._pending: dict[str, _Entry] = {}
        self._in_flight: dict[str, int] = {}  # name -> version being written
        self._cond = threading.Condition()
        self._stopping = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._failing_since: float | None = None
        self._last_report = -1e18
        self._thread: threading.Thread | None = None

    # -- the pipeline's side ------------------------------------------------------------------------

    def submit(self, changed: Sequence[tuple[dict[str, Any], str]], deleted: Sequence[str],
               read_at: float | None = None) -> None:
        """Queue the newest content of `changed` groups (object, rendered text) and the deletion of
        `deleted` names; returns at once."""
        now = self._monotonic()
        with self._cond:
            for group in changed:
                self._put(group[0]["metadata"]["name"], group, read_at, now)
            for name in deleted:
                self._put(name, DELETE, read_at, now)
            self._cond.notify_all()

    def _put(self, name: str, group: tuple[dict[str, Any], str] | None, read_at: float | None, now: float) -> None:
        entry = self._pending.get(name)
        if entry is None:
            self._pending[name] = _Entry(group, read_at, now)
            return
        entry.group = group
        entry.version += 1
        if name in self._in_flight:
            entry.later_read_at = _earliest(entry.later_read_at, read_at)
        else:
            entry.read_at = _earliest(entry.read_at, read_at)

    def depth(self) -> int:
        """Group writes waiting to be accepted."""
        with self._cond:
            return len(self._pending)

    def oldest_age(self) -> float:
        """Seconds the longest-waiting group write has waited (0 when none waits)."""
        with self._cond:
            if not self._pending:
                return 0.0
            return max(0.0, self._monotonic() - min(entry.queued_at for entry in self._pending.values()))

    # -- the worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="hushflow-group-writes", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Write until `close`: every pending group, as soon as there is one and no backoff holds."""
        while True:
            with self._cond:
                while not self._stopping and (not self._pending or self._monotonic() < self._retry_at):
                    wait = None if not self._pending else max(0.01, self._retry_at - self._monotonic())
                    self._cond.wait(wait)
                if self._stopping:
                    return
            self.write_round()

    def write_round(self) -> bool:
        """Write what is pending once; True when everything pending landed."""
        with self._cond:
            batch = {name: (entry.group, entry.version) for name, entry in self._pending.items()}
            self._in_flight = {name: version for name, (_group, version) in batch.items()}
        if not batch:
            return True
        writes = [group for group, _version in batch.values() if group is not DELETE]
        deletes = sorted(name for name, (group, _version) in batch.items() if group is DELETE)
        try:
            outcome = self._write(writes, deletes)
        except Exception as exc:  # a write function that fails in a way it did not foresee
            outcome = WriteOutcome(failed={name: ("error", f"{type(exc).__name__}: {exc}") for name in batch})
        self.stats.rounds += 1
        now = self._monotonic()
        landed: list[float] = []
        with self._cond:
            self._in_flight = {}
            for name, (_group, version) in batch.items():
                entry = self._pending.get(name)
                if entry is None:
                    continue
                if name in outcome.accepted:
                    self.stats.accepted += 1
                    if entry.read_at is not None:
                        landed.append(entry.read_at)
                    if entry.version == version:
                        del self._pending[name]
                    else:  # changed while in flight: the newer content is still to write
                        entry.read_at, entry.later_read_at = entry.later_read_at, None
                        entry.queued_at = now
                else:
                    reason = outcome.failed.get(name, ("unconfirmed", "the write was not confirmed"))[0]
                    self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
                    entry.read_at = _earliest(entry.read_at, entry.later_read_at)
                    entry.later_read_at = None
            failed = [name for name in batch if name not in outcome.accepted]
            if failed:
                self._backoff = min(self.max_backoff, max(self.min_backoff, self._backoff * 2))
                self._retry_at = now + self._backoff
                if self._failing_since is None:
                    self._failing_since = now
            else:
                self._backoff = 0.0
                self._retry_at = 0.0
            done = not self._pending
        for read_at in landed:
            self._on_landed(read_at)
        if failed:
            self._report_failure(failed, outcome, now)
        elif self._failing_since is not None:
            self._report(f"CIDR group writes land again (after {now - self._failing_since:.0f} s of failures)")
            self._failing_since = None
        return done

    def _report_failure(self, failed: list[str], outcome: WriteOutcome, now: float) -> None:
        """The first failure at once, then at most one line a minute while writes keep failing."""
        if now - self._last_report < 60.0:
            return
        self._last_report = now
        first = failed[0]
        reason, message = outcome.failed.get(first, ("unconfirmed", "the write was not confirmed"))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        self._report(f"CIDR group write failed, retrying in {self._backoff:.1f} s: {first}{more}: "
                     f"{message} [{reason}]; the groups stay queued until they land")

    # -- shutdown -----------------------------------------------------------------------------------

    def drain(self, timeout: float) -> int:
        """Keep writing until nothing is pending or `timeout` seconds passed (the worker stopped
        first); returns how many group writes did not land."""
        self.close()
        deadline = self._monotonic() + timeout
        while True:
            if self.write_round():
                return 0
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return self.depth()
            time.sleep(min(remaining, self._backoff or self.min_backoff))

    def close(self) -> None:
        """Stop the worker thread (what is pending stays pending)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
