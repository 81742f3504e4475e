"""CIDR group writes are queued per group and retried until the writer accepts them."""

from __future__ import annotations

import threading

from hushflow.enforce.group_writes import GroupWrites, WriteOutcome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def group(name: str, *ips: str) -> tuple[dict, str]:
    obj = {"kind": "CiliumCIDRGroup", "metadata": {"name": name}, "spec": {"externalCIDRs": list(ips)}}
    return obj, f"{name}: {ips}"


class FlakyWriter:
    """Fails the first `failures` rounds (as an API server answering 503 would), then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rounds: list[tuple[list[str], list[str]]] = []

    def __call__(self, groups, deleted) -> WriteOutcome:
        self.rounds.append(([text for _obj, text in groups], list(deleted)))
        names = [obj["metadata"]["name"] for obj, _text in groups] + list(deleted)
        if len(self.rounds) <= self.failures:
            return WriteOutcome(failed={name: ("api-5xx", "server error (HTTP 503)") for name in names})
        return WriteOutcome(accepted=set(names))


def test_a_failing_write_stays_queued_and_is_retried_with_backoff_until_it_lands():
    clock, writer, landed, reports = Clock(), FlakyWriter(failures=2), [], []
    writes = GroupWrites(writer, on_landed=landed.append, report=reports.append, monotonic=clock)
    writes.submit([group("g", "203.0.113.1/32")], [], read_at=99.0)
    assert not writes.write_round()
    assert writes.depth() == 1 and writes.stats.failures == {"api-5xx": 1}
    assert writes._backoff == 0.5
    assert not writes.write_round()
    assert writes._backoff == 1.0  # doubling while it keeps failing
    clock.now = 130.0
    assert writes.oldest_age() == 30.0
    assert writes.write_round()
    assert writes.depth() == 0 and landed == [99.0]  # the leak window runs to the accepted write
    assert len(reports) == 2  # the first failure, then "land again" (not one line per retry)
    assert "retrying" in reports[0] and "HTTP 503" in reports[0] and "land again" in reports[1]


def test_a_group_changed_while_waiting_is_written_once_with_its_newest_content():
    writer = FlakyWriter(failures=1)
    writes = GroupWrites(writer, monotonic=Clock())
    writes.submit([group("g", "a")], [], read_at=1.0)
    writes.write_round()
    writes.submit([group("g", "a", "b")], [], read_at=2.0)
    writes.submit([group("g", "a", "b", "c")], [], read_at=3.0)
    assert writes.depth() == 1  # bounded: one entry per group
    writes.write_round()
    assert writer.rounds[-1] == (["g: ('a', 'b', 'c')"], [])


def test_an_update_arriving_during_a_write_is_not_lost():
    landed: list[float] = []
    writes: GroupWrites

    def write(groups, deleted):
        if len(landed) == 0 and groups[0][1] == "g: ('a',)":
            writes.submit([group("g", "a", "b")], [], read_at=5.0)  # the pipeline learns meanwhile
        return WriteOutcome(accepted={obj["metadata"]["name"] for obj, _ in groups})

    writes = GroupWrites(write, on_landed=landed.append, monotonic=Clock())
    writes.submit([group("g", "a")], [], read_at=1.0)
    assert not writes.write_round()  # the first content landed, the newer one is still to write
    assert landed == [1.0] and writes.depth() == 1
    assert writes.write_round()
    assert landed == [1.0, 5.0]


def test_deletions_are_queued_like_writes():
    writer = FlakyWriter(failures=0)
    writes = GroupWrites(writer, monotonic=Clock())
    writes.submit([group("keep", "a")], ["gone"])
    writes.write_round()
    assert writer.rounds == [(["keep: ('a',)"], ["gone"])]


def test_a_writer_that_raises_is_a_failed_round_not_a_dead_thread():
    calls = []

    def write(groups, deleted):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return WriteOutcome(accepted={obj["metadata"]["name"] for obj, _ in groups})

    writes = GroupWrites(write, min_backoff=0.01, max_backoff=0.02)
    writes.start()
    writes.submit([group("g", "a")], [])
    done = threading.Event()
    for _ in range(500):
        if writes.depth() == 0:
            done.set()
            break
        threading.Event().wait(0.01)
    writes.close()
    assert done.is_set() and writes.stats.failures == {"error": 1}


def test_drain_gives_up_after_its_timeout_and_says_how_many_did_not_land():
    writes = GroupWrites(FlakyWriter(failures=10**6), min_backoff=0.01, max_backoff=0.01)
    writes.submit([group("a", "x"), group("b", "y")], [])
    assert writes.drain(0.05) == 2
