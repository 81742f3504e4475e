"""Where the pipeline's flows come from: the `FlowSource` protocol, the file source and the
live source.

A source yields `FlowEvent`s until it ends (a finite file) or is stopped (a followed file, a
live stream), and says whether it is connected (for /readyz). `HubbleSource`, the live source,
reads Hubble's Observer API through `hushflow.flow.grpc_source.GrpcFlowSource`, asking only for
what the pipeline needs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hushflow.flow.grpc_request import HUSHFLOW_FIELD_MASK, HUSHFLOW_UPSTREAM_FILTERS
from hushflow.flow.grpc_target import DEFAULT_SERVER, TLSOptions
from hushflow.flow.reader import FlowEvent, FlowReader, ReadStats

if TYPE_CHECKING:
    from hushflow.flow.grpc_source import GrpcSourceStats


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


class HubbleSource:
    """The hushflow pipeline's live source: a following :class:`GrpcFlowSource` that asks Hubble
    only for :data:`HUSHFLOW_UPSTREAM_FILTERS` with :data:`HUSHFLOW_FIELD_MASK`.

    ``tls``: :class:`TLSOptions`, or CLI options as :meth:`TLSOptions.from_options` reads them.
    Other keyword arguments go to :class:`GrpcFlowSource`.
    """

    def __init__(self, server: str = DEFAULT_SERVER, tls: TLSOptions | Mapping[str, Any] | None = None,
                 **options: Any) -> None:
        # grpcio is imported only when a live source is made: reading files does not need it.
        from hushflow.flow.grpc_source import GrpcFlowSource

        if tls is not None and not isinstance(tls, TLSOptions):
            tls = TLSOptions.from_options(tls)
        options.setdefault("follow", True)
        options.setdefault("allowlist", HUSHFLOW_UPSTREAM_FILTERS)
        options.setdefault("field_mask", HUSHFLOW_FIELD_MASK)
        self.name = server
        self.source = GrpcFlowSource(server, tls=tls, **options)

    @property
    def stats(self) -> GrpcSourceStats:
        return self.source.stats

    def events(self) -> Iterator[FlowEvent]:
        return iter(self.source)

    def stop(self) -> None:
        self.source.stop()

    def connected(self) -> bool:
        return self.source.connected
