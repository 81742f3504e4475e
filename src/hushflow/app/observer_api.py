"""The wiring of `hushflow run --serve`: the Observer API over the daemon's ring, with TLS when
asked, and Hubble's Peer service beside it for the per-node deployment.

:func:`prepare_peers` builds the Peer service before the daemon starts (a mistake in its options
ends the run before anything is read); :func:`start_observer_api` binds the server once the
daemon, and so its ring, exists. Both raise :class:`ObserverApiError` worded for the user; the
CLI prints it and exits 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hushflow.app.daemon import Daemon, RunOptions
    from hushflow.app.peer import PeerService
    from hushflow.app.serve import ObserverServer
    from hushflow.app.serve_tls import ServeTLSOptions


class ObserverApiError(Exception):
    """A reason --serve (its TLS, its peers) cannot be served, worded for the user."""


class ObserverApi:
    """The started servers of --serve; `stop()` ends them (and the streams they hold)."""

    def __init__(self, observer: ObserverServer, peers: PeerService | None) -> None:
        self.observer = observer
        self.peers = peers

    def stop(self) -> None:
        self.observer.stop()
        if self.peers is not None:
            self.peers.stop()


def prepare_peers(options: RunOptions, tls: ServeTLSOptions,
                  report: Callable[[str], None]) -> PeerService | None:
    """The Peer service of --serve-peers-selector / --serve-peer (None without them), not
    started. `report`: where the pod watch's problems are told (one line each)."""
    if not options.serve_peers and options.serve_peers_selector is None:
        return None
    from hushflow.app.peer import PeerError, peer_service

    if options.serve is None:
        raise ObserverApiError("--serve-peers-selector and --serve-peer need --serve ADDRESS (the Peer service "
                               "is served beside the Observer)")
    try:
        return peer_service(serve=options.serve, static=options.serve_peers, selector=options.serve_peers_selector,
                            namespace=options.serve_peers_namespace, cluster=options.cluster_name,
                            kubeconfig=options.kubeconfig, report=report, tls=tls.given)
    except PeerError as exc:
        raise ObserverApiError(str(exc)) from None


def start_observer_api(daemon: Daemon, options: RunOptions, tls: ServeTLSOptions, peers: PeerService | None,
                       say: Callable[[str], None]) -> ObserverApi | None:
    """Serve the Observer on the daemon's ring (None without --serve), with TLS when asked, and
    start the Peer service beside it. `say`: one line for the user (what is served, warnings)."""
    if daemon.ring is None or options.serve is None:
        return None
    from hushflow import __version__
    from hushflow.app.serve import ServeError, serve_observer
    from hushflow.app.serve_tls import ServeTLS, ServeTLSError, plaintext_warning
    from hushflow.sinks import metric_names

    try:
        credentials = None
        if tls.given:
            reload_errors = daemon.metrics.child(metric_names.SERVE_TLS_RELOAD_ERRORS_TOTAL)
            credentials = ServeTLS(tls, say=say, on_reload_error=reload_errors.inc).credentials()
        # An instance a Relay aggregates answers as a node's Hubble does: no node_status of its own.
        services = () if peers is None else (("peer.Peer", peers.handler()),)
        observer = serve_observer(daemon.ring, options.serve, node_name=options.instance or "hushflow",
                                  credentials=credentials, announce_nodes=peers is None, services=services,
                                  version=f"hushflow {__version__}")
    except (ServeError, ServeTLSError) as exc:
        raise ObserverApiError(str(exc)) from None
    warning = plaintext_warning(options.serve) if not tls.given else None
    if warning:
        say(f"warning: {warning}")
    mode = " with mutual TLS" if tls.mutual else " with TLS" if tls.given else ""
    say(f"serving the Observer API on {options.serve}{mode}")
    if peers is not None:
        peers.start()
        which = (f"the pods {options.serve_peers_selector} in namespace {options.serve_peers_namespace}"
                 if options.serve_peers_selector else f"{len(options.serve_peers)} fixed peer(s)")
        say(f"serving Hubble's Peer service beside it: {which}")
    return ObserverApi(observer, peers)
