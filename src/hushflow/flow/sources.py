"""Where the pipeline's flows come from: the `FlowSource` protocol and the file source.

A source yields `FlowEvent`s until it ends (a finite file) or is stopped (a followed file, a
live stream), and says whether it is connected (for /readyz). The live source that reads
Hubble's Observer API is `hushflow.flow.grpc_source.HubbleSource`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from hushflow.flow.reader import FlowEvent, FlowReader, ReadStats


class FlowSource(Protocol):
    """Anything that yields FlowEvents until stopped (files, Hubble's gRPC API)."""

    name: str

    def events(self) -> Iterator[FlowEvent]: ...

    def stop(self) -> None: ...

    def connected(self) -> bool: ...


class FileSource:
    """Recorded flows (or an exporter file with --follow), through the regular reader."""

    def __init__(self, paths: Sequence[str], follow: bool) -> None:
        self.paths = list(paths)
        self.follow = follow
        self.name = ",".join(self.paths)
        self.read_stats = ReadStats()
        self._stop = threading.Event()

    def events(self) -> Iterator[FlowEvent]:
        reader = FlowReader(
            self.paths,
            follow=self.follow,
            stats=self.read_stats,
            sleep=self._wait,
            stop=self._stop.is_set,
            poll_interval=0.1,
        )
        for event in reader:
            if self._stop.is_set():
                return
            yield event

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def stop(self) -> None:
        self._stop.set()

    def connected(self) -> bool:
        return True
