"""The pipeline's sources: HubbleSource against the Observer test double on loopback."""

from __future__ import annotations

from hushflow.flow.grpc_request import HUSHFLOW_FIELD_MASK
from hushflow.flow.sources import HubbleSource
from tests.doubles.observer_server import ObserverTestServer


def test_hubble_source_asks_for_what_hushflow_needs(server: ObserverTestServer) -> None:
    hubble = HubbleSource(server.address, {"tls": False, "tls_ca_cert_files": ()}, follow=False)
    assert hubble.name == server.address
    assert len(list(hubble.events())) == 300
    (request,) = server.requests
    assert len(request.whitelist) == 3 and list(request.field_mask.paths) == list(HUSHFLOW_FIELD_MASK)
