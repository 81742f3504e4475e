"""The Observer API served from the ring (app.serve), with a real grpcio client on loopback."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.serve import EventRing, ObserverServer, ServeError, serve_observer
from hushflow.flow.proto_dict import response_bytes_to_event
from hushflow.flow.reader import FlowEvent
from hushflow.proto import flow_pb2, observer_pb2, observer_pb2_grpc, relay_pb2
from hushflow.sinks.hubble_format import PrintOptions, make_printer


def event(i: int, verdict: str = "FORWARDED", namespace: str = "shop") -> dict:
    stamp = f"2026-12-01T10:00:{i:02d}.000000123Z"
    return {
        "flow": {
            "time": stamp, "verdict": verdict, "node_name": "kind-worker",
            "source": {"namespace": namespace, "pod_name": f"pod-{i}"},
            "destination": {"namespace": "db", "pod_name": "postgres-0"},
            "policy_log": ["tag-" + str(i)],
        },
        "node_name": "kind-worker",
        "time": stamp,
    }


@pytest.fixture
def served() -> Iterator[tuple[EventRing, ObserverServer, grpc.Channel]]:
    ring = EventRing(capacity=10)
    server = serve_observer(ring, "127.0.0.1:0", node_name="kind-worker", version="hushflow test")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ring, server, channel
    channel.close()
    server.stop(None)


def stub(channel: grpc.Channel) -> observer_pb2_grpc.ObserverStub:
    return observer_pb2_grpc.ObserverStub(channel)


def flows(responses: object) -> list[observer_pb2.GetFlowsResponse]:
    """The flow responses, after the node_status every call starts with (as Relay's do)."""
    responses = list(responses)  # type: ignore[call-overload]
    assert responses[0].WhichOneof("response_types") == "node_status"
    return [r for r in responses[1:] if r.HasField("flow")]


def pods(responses: object) -> list[str]:
    return [r.flow.source.pod_name for r in flows(responses)]


def test_get_flows_last_and_first_number(served):
    ring, _server, channel = served
    for i in range(5):
        ring.append(event(i))
    assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=2))) == ["pod-3", "pod-4"]
    assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=2, first=True))) == ["pod-0", "pod-1"]
    (first,) = flows(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=1)))
    assert first.node_name == "kind-worker"
    assert (first.time.seconds % 60, first.time.nanos) == (4, 123)
    assert list(first.flow.policy_log) == ["tag-4"]  # the enrichment reaches the client


def test_filters_are_evaluated_server_side(served):
    ring, _server, channel = served
    for i in range(6):
        ring.append(event(i, verdict="DROPPED" if i % 2 else "FORWARDED"))
    request = observer_pb2.GetFlowsRequest(number=10)
    request.whitelist.add().verdict.append(flow_pb2.DROPPED)
    assert pods(stub(channel).GetFlows(request)) == ["pod-1", "pod-3", "pod-5"]
    request = observer_pb2.GetFlowsRequest(number=10)
    request.blacklist.add().source_pod.append("shop/pod-1")
    assert pods(stub(channel).GetFlows(request)) == ["pod-0", "pod-2", "pod-3", "pod-4", "pod-5"]


def test_since_and_until(served):
    ring, _server, channel = served
    for i in range(5):
        ring.append(event(i))
    request = observer_pb2.GetFlowsRequest()
    request.since.FromJsonString("2026-12-01T10:00:01Z")
    request.until.FromJsonString("2026-12-01T10:00:03Z")
    assert pods(stub(channel).GetFlows(request)) == ["pod-1", "pod-2"]


def test_follow_receives_a_later_event_then_the_client_cancels(served):
    ring, _server, channel = served
    ring.append(event(0))
    call = stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=1, follow=True))
    assert next(call).HasField("node_status")
    received = [next(call).flow.source.pod_name]
    ring.append(event(1))
    received.append(next(call).flow.source.pod_name)
    assert received == ["pod-0", "pod-1"]
    call.cancel()
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    # the server is still there for the next client
    assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=1))) == ["pod-1"]


class GatedRing(EventRing):
    """A ring whose readers wait for the test before looking for new events: a client that
    is slow to come back, made deterministic."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.gate = threading.Event()

    def wait_beyond(self, seen: int, timeout: float) -> None:
        self.gate.wait(10)
        super().wait_beyond(seen, timeout)


def test_a_client_that_falls_behind_the_ring_gets_lost_events():
    ring = GatedRing(capacity=3)
    server = serve_observer(ring, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        ring.append(event(0))
        call = stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=1, follow=True))
        assert next(call).node_status.node_names == ["hushflow"]
        assert next(call).flow.source.pod_name == "pod-0"
        # The daemon appends 39 more while the client's stream waits: appending never waits for
        # a reader, and the reader then finds only the ring's last 3, the rest counted as lost.
        for i in range(1, 40):
            ring.append(event(i))
        ring.gate.set()
        lost = 0
        names: list[str] = []
        while not names or names[-1] != "pod-39":
            response = next(call)
            if response.HasField("lost_events"):
                assert response.lost_events.source == flow_pb2.HUBBLE_RING_BUFFER
                assert response.node_name == "hushflow"
                lost += response.lost_events.num_events_lost
            else:
                names.append(response.flow.source.pod_name)
        assert lost + len(names) == 39
        assert lost >= 36
        assert ring.stats.lost_to_clients == lost
        assert ring.seen == 40
        call.cancel()
    finally:
        channel.close()
        server.stop(None)


def test_ring_overflow_drops_the_oldest():
    ring = EventRing(capacity=3)
    for i in range(5):
        ring.append(event(i))
    lost, slots, following = ring.read_from(1)
    assert (lost, [s.data["flow"]["source"]["pod_name"] for s in slots], following) == (2, ["pod-2", "pod-3", "pod-4"], 6)
    assert (len(ring), ring.seen) == (3, 5)


def test_server_status_counts(served):
    ring, _server, channel = served
    for i in range(12):
        ring.append(event(i))
    ring.append({"lost_events": {"num_events_lost": 3}})  # not a flow: not kept
    status = stub(channel).ServerStatus(observer_pb2.ServerStatusRequest())
    assert (status.num_flows, status.max_flows, status.seen_flows) == (10, 10, 12)
    assert status.num_connected_nodes.value == 1
    assert status.version == "hushflow test"
    assert status.uptime_ns > 0


def test_health_reports_the_observer_serving(served):
    _ring, _server, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="hubble.server.Observer"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("method", ["GetAgentEvents", "GetDebugEvents"])
def test_agent_and_debug_events_are_unimplemented(served, method):
    _ring, _server, channel = served
    call = channel.unary_stream(f"/observer.Observer/{method}", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        list(call(b""))
    # Relay's own answer, word for word (pkg/hubble/relay/observer/server.go)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNIMPLEMENTED, f"{method} not yet implemented")


def test_reflection_lists_the_observer(served):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _ring, _server, channel = served
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(answers).list_services_response.service}
    assert {"observer.Observer", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "unix://", "[::1:4245"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ServeError, match="--serve"):
        serve_observer(EventRing(), address)


def test_an_address_in_use_is_refused(served):
    _ring, server, _channel = served
    with pytest.raises(ServeError, match="cannot serve"):
        serve_observer(EventRing(), f"127.0.0.1:{server.port}")


def test_unix_socket(tmp_path):
    ring = EventRing()
    ring.append(event(7))
    server = serve_observer(ring, f"unix://{tmp_path}/observer.sock")
    channel = grpc.insecure_channel(f"unix://{tmp_path}/observer.sock")
    try:
        assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=5))) == ["pod-7"]
    finally:
        channel.close()
        server.stop(None)


def test_an_event_that_does_not_encode_is_skipped_not_fatal(served):
    ring, _server, channel = served
    ring.append(event(1))
    ring.append({"flow": {"time": "yesterday", "source": {"pod_name": 5}}, "time": "2026-12-01T10:00:02Z"})
    ring.append(event(3))
    assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=10))) == ["pod-1", "pod-3"]
    request = observer_pb2.GetFlowsRequest(number=10)
    request.whitelist.add().source_pod.append("shop/")
    assert pods(stub(channel).GetFlows(request)) == ["pod-1", "pod-3"]


#: The hubble CLI's defaults.FieldMask (1.19.4): sent with compact, dict and table output.
HUBBLE_DEFAULT_FIELD_MASK = (
    "time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
    "destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "l7",
    "event_type", "source_service", "destination_service", "is_reply", "Summary", "ip_trace_id",
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"


def test_the_daemon_fills_the_ring_with_enriched_flows_a_client_reads(tmp_path):
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),),
                               out_dir=str(tmp_path / "groups"), resolve=False, clock="flows",
                               serve="127.0.0.1:0", serve_capacity=20))
    assert daemon.ring is not None
    assert daemon.run() == 0
    assert (daemon.ring.seen, len(daemon.ring)) == (25, 20)  # every flow processed, the ring keeps 20
    server = serve_observer(daemon.ring, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        request = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
        request.whitelist.add().verdict.append(flow_pb2.DROPPED)
        drops = flows(stub(channel).GetFlows(request))
        tagged = [d for d in drops if list(d.flow.policy_log) == ["app-explicit-traffic-blocked"]]
        # The recorded flows carry no policy_log and no egress_denied_by: hushflow filled them.
        assert tagged and all(d.flow.egress_denied_by[0].name == "app-external-block-policy" for d in tagged)
        assert {d.flow.verdict for d in drops} == {flow_pb2.DROPPED}
    finally:
        channel.close()
        server.stop(None)


def hushflow_run(tmp_path: Path, *args: str) -> tuple[int, str]:
    from hushflow.cli.run import run

    result = CliRunner().invoke(run, ["--policies", str(EXAMPLE), "--input-file", str(EXAMPLE / "flows.jsonl"),
                                      "--no-resolve", "--clock", "flows", "--out", str(tmp_path / "groups"),
                                      "--metrics-address", "127.0.0.1:0", *args])
    return result.exit_code, result.output


def test_run_with_a_bad_serve_address_exits_2(tmp_path):
    code, output = hushflow_run(tmp_path, "--serve", "localhost")
    assert code == 2
    assert "--serve 'localhost': give HOST:PORT" in output
    assert "Traceback" not in output


def test_run_with_a_serve_address_in_use_exits_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = hushflow_run(tmp_path, "--serve", f"127.0.0.1:{port}")
    assert code == 2
    assert f"error: cannot serve the Observer API on 127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_get_nodes_names_this_hushflow(served):
    ring, _server, channel = served
    ring.append(event(1))
    (node,) = stub(channel).GetNodes(observer_pb2.GetNodesRequest()).nodes
    assert (node.name, node.version, node.state) == ("kind-worker", "hushflow test", relay_pb2.NODE_CONNECTED)
    assert (node.num_flows, node.max_flows, node.seen_flows) == (1, 10, 1)
    assert node.address == "127.0.0.1:0"


def test_get_namespaces_lists_those_of_the_flows_in_the_ring(served):
    ring, _server, channel = served
    for i, namespace in enumerate(["shop", "zoo", "shop"] + ["late"] * 9):
        ring.append(event(i, namespace=namespace))
    answer = stub(channel).GetNamespaces(observer_pb2.GetNamespacesRequest())
    # "zoo" left the ring (capacity 10); "db" is every flow's destination
    assert [(n.cluster, n.namespace) for n in answer.namespaces] == [("", "db"), ("", "late"), ("", "shop")]


def test_the_calls_of_hubble_status_observe_and_list_in_their_order(served):
    """What the hubble CLI 1.19.4 sends (read from its cmd/status, cmd/observe, cmd/list), in
    that order, and what it would print from the answers."""
    ring, _server, channel = served
    for i in range(4):
        flow_event = event(i, verdict="DROPPED" if i == 2 else "FORWARDED")
        if i == 2:  # a policy-verdict drop, enriched: the rule that denied it
            flow_event["flow"].update(event_type={"type": 5}, traffic_direction="EGRESS", Summary="TCP Flags: SYN",
                                      IP={"source": "10.0.1.7", "destination": "10.0.2.9", "ipVersion": "IPv4"},
                                      egress_denied_by=[{"name": "block-db", "namespace": "shop",
                                                         "kind": "CiliumNetworkPolicy"}])
        ring.append(flow_event)
    # `hubble status`: the health check of hubble.server.Observer first, ServerStatus only if SERVING
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="hubble.server.Observer"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # prints "Healthcheck (via ...): Ok"
    status = stub(channel).ServerStatus(observer_pb2.ServerStatusRequest())
    # its compact printer: the flows ratio, and the node count over connected + unavailable
    assert f"{status.num_flows}/{status.max_flows} ({status.num_flows / status.max_flows * 100:.2f}%)" == "4/10 (40.00%)"
    assert status.HasField("num_connected_nodes") and status.HasField("num_unavailable_nodes")
    assert (status.num_connected_nodes.value, status.num_connected_nodes.value
            + status.num_unavailable_nodes.value) == (1, 1)  # "Connected Nodes: 1/1"
    # `hubble observe --server ADDR --verdict DROPPED --print-policy-names`: no --last, no
    # --follow: number 20 (its default print count), the verdict as one whitelist FlowFilter,
    # and (compact output, --use-default-field-masks on by default) its default field mask,
    # which names neither traffic_direction nor egress_denied_by.
    request = observer_pb2.GetFlowsRequest(number=20)
    request.whitelist.add().verdict.append(flow_pb2.DROPPED)
    request.field_mask.paths.extend(HUBBLE_DEFAULT_FIELD_MASK)
    status_event, drop = stub(channel).GetFlows(request)
    # Like Relay's answer, it starts with the nodes it will hear from; the CLI prints nothing
    # for it in compact output.
    assert (relay_pb2.NodeState.Name(status_event.node_status.state_change),
            list(status_event.node_status.node_names)) == ("NODE_CONNECTED", ["kind-worker"])
    assert drop.flow.source.pod_name == "pod-2"
    assert drop.node_name == "kind-worker" and drop.HasField("time")
    # The mask is applied: policy_log is not in it, so it is cut, as Hubble cuts it ...
    assert list(drop.flow.policy_log) == [] and drop.flow.source.labels == []
    # ... but its printer names the policies of a policy-verdict event by the traffic
    # direction, which 1.19's default mask leaves out (cilium#41912): hushflow serves that
    # mask as Cilium fixed it (cilium#46672), so the rule reaches the printer.
    assert drop.flow.event_type.type == 5 and drop.flow.traffic_direction == flow_pb2.EGRESS
    assert [p.name for p in drop.flow.egress_denied_by] == ["block-db"]
    # What it prints: its compact printer (hushflow's, byte-identical to 1.19.4's) on the answer.
    out = io.BytesIO()
    printer = make_printer("compact", out, options=PrintOptions(policy_names=True, tz=UTC))
    for response in (status_event, drop):
        printer.write(FlowEvent(None, response_bytes_to_event(response.SerializeToString()), "grpc", 0))
    printer.close()
    assert out.getvalue().decode() == ("Dec  1 10:00:02.000: shop/pod-2 (unknown) <> db/postgres-0 (unknown) policy-verdict:none "
                                       "EGRESS DENIED BY block-db (CiliumNetworkPolicy) (TCP Flags: SYN)\n")
    # `hubble list nodes`, then `hubble list namespaces`
    (node,) = stub(channel).GetNodes(observer_pb2.GetNodesRequest()).nodes
    assert (node.name, relay_pb2.NodeState.Name(node.state)) == ("kind-worker", "NODE_CONNECTED")
    namespaces = stub(channel).GetNamespaces(observer_pb2.GetNamespacesRequest()).namespaces
    assert [n.namespace for n in namespaces] == ["db", "shop"]


def test_a_cel_filter_on_the_enriched_policy_log_is_honoured_server_side(served):
    ring, _server, channel = served
    for i in range(4):
        ring.append(event(i))
    request = observer_pb2.GetFlowsRequest(number=10)
    request.whitelist.add().experimental.cel_expression.append("'tag-2' in _flow.policy_log")
    assert pods(stub(channel).GetFlows(request)) == ["pod-2"]
    bad = observer_pb2.GetFlowsRequest(number=10)
    bad.whitelist.add().experimental.cel_expression.append("_flow.(")
    with pytest.raises(grpc.RpcError) as err:
        list(stub(channel).GetFlows(bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- field masks, Hubble's reading rules, flows_rate ----------------------------------------------


def masked_request(*paths: str, experimental: bool = False, **fields: object) -> observer_pb2.GetFlowsRequest:
    request = observer_pb2.GetFlowsRequest(**fields)  # type: ignore[arg-type]
    (request.experimental.field_mask if experimental else request.field_mask).paths.extend(paths)
    return request


@pytest.mark.parametrize("experimental", [False, True], ids=["field_mask", "experimental.field_mask"])
def test_a_field_mask_cuts_each_flow_server_side(served, experimental):
    ring, _server, channel = served
    ring.append(event(0))
    (response,) = flows(stub(channel).GetFlows(
        masked_request("source.pod_name", "verdict", "time", experimental=experimental, number=1)))
    flow = response.flow
    assert (flow.source.pod_name, flow.verdict) == ("pod-0", flow_pb2.FORWARDED)
    # What the mask does not name is not sent: the namespace beside the pod, the destination,
    # the node name (so the response's node_name, built from the masked flow, is empty too).
    assert (flow.source.namespace, flow.HasField("destination"), list(flow.policy_log)) == ("", False, [])
    assert response.node_name == "" and response.time == flow.time


def test_the_request_field_mask_wins_over_the_experimental_one(served):
    ring, _server, channel = served
    ring.append(event(0))
    request = masked_request("verdict", number=1)
    request.experimental.field_mask.paths.append("source")
    (response,) = flows(stub(channel).GetFlows(request))
    assert not response.flow.HasField("source") and response.flow.verdict == flow_pb2.FORWARDED


@pytest.mark.parametrize("path", ["nonsense", "source.nonsense", "policy_log.name", "verdict.x"])
def test_an_invalid_field_mask_is_invalid_argument(served, path):
    ring, _server, channel = served
    ring.append(event(0))
    with pytest.raises(grpc.RpcError) as err:
        list(stub(channel).GetFlows(masked_request(path, number=1)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "field mask" in err.value.details()


def test_only_the_hubble_cli_1_19_default_mask_gets_the_policy_fields_added(served):
    from hushflow.app.serve import HUBBLE_CLI_1_19_DEFAULT_MASK

    ring, _server, channel = served
    flow_event = event(0, verdict="DROPPED")
    flow_event["flow"].update(traffic_direction="EGRESS", egress_denied_by=[{"name": "block-db"}])
    ring.append(flow_event)
    (cli,) = flows(stub(channel).GetFlows(masked_request(*sorted(HUBBLE_CLI_1_19_DEFAULT_MASK), number=1)))
    assert [p.name for p in cli.flow.egress_denied_by] == ["block-db"]
    # one path fewer is another mask: applied exactly as sent
    fewer = sorted(HUBBLE_CLI_1_19_DEFAULT_MASK - {"ip_trace_id"})
    (other,) = flows(stub(channel).GetFlows(masked_request(*fewer, number=1)))
    assert list(other.flow.egress_denied_by) == [] and other.flow.traffic_direction == flow_pb2.TRAFFIC_DIRECTION_UNKNOWN


def test_each_flow_is_masked_once_however_many_clients_ask_with_that_mask(served, monkeypatch):
    from hushflow.app import serve

    ring, _server, channel = served
    for i in range(3):
        ring.append(event(i))
    calls = []
    real = serve.masked_response
    monkeypatch.setattr(serve, "masked_response", lambda *a: calls.append(1) or real(*a))
    for _client in range(4):
        assert pods(stub(channel).GetFlows(masked_request("source.pod_name", number=3))) == ["pod-0", "pod-1", "pod-2"]
    assert len(calls) == 3
    # and the unmasked bytes, encoded once, are the same object for every client
    _lost, slots, _next = ring.read_from(1)
    assert all(slot.response_bytes() is slot.response_bytes() for slot in slots)


def test_a_slot_keeps_the_bytes_of_a_few_masks_only(served):
    ring, _server, channel = served
    ring.append(event(0))
    fields = ["verdict", "time", "uuid", "node_name", "source", "destination", "IP", "l4"]
    for field in fields:  # a client asking with a new mask each call
        assert len(flows(stub(channel).GetFlows(masked_request(field, number=1)))) == 1
    _lost, (slot,), _next = ring.read_from(1)
    assert slot.masked is not None and len(slot.masked) == 4


def test_first_with_follow_is_refused_as_hubble_refuses_it(served):
    _ring, _server, channel = served
    with pytest.raises(grpc.RpcError) as err:
        list(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=1, first=True, follow=True)))
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                       "first cannot be specified with follow")


def test_no_number_without_follow_reads_the_whole_ring(served):
    """Hubble's eventsReader stops at `number` only when it is above 0."""
    ring, _server, channel = served
    for i in range(4):
        ring.append(event(i))
    assert pods(stub(channel).GetFlows(observer_pb2.GetFlowsRequest())) == ["pod-0", "pod-1", "pod-2", "pod-3"]


def test_since_wins_over_number_which_then_counts_from_since(served):
    """Hubble's newRingReader: `since` takes precedence over number (--first and --last); the
    reader then stops after `number` flows: the first N from `since`, not the last N."""
    ring, _server, channel = served
    for i in range(6):
        ring.append(event(i))
    request = observer_pb2.GetFlowsRequest(number=2)
    request.since.FromJsonString("2026-12-01T10:00:02Z")
    assert pods(stub(channel).GetFlows(request)) == ["pod-2", "pod-3"]


def test_until_ends_a_following_call_at_the_first_later_flow(served):
    ring, _server, channel = served
    ring.append(event(0))
    request = observer_pb2.GetFlowsRequest(number=1, follow=True)
    request.until.FromJsonString("2026-12-01T10:00:02Z")
    call = stub(channel).GetFlows(request)
    assert next(call).HasField("node_status")
    assert next(call).flow.source.pod_name == "pod-0"
    ring.append(event(1))
    assert next(call).flow.source.pod_name == "pod-1"
    ring.append(event(5))  # after `until`: the call ends, though it follows
    with pytest.raises(StopIteration):
        next(call)


def test_last_n_counts_matching_flows_only(served):
    ring, _server, channel = served
    for i in range(8):
        ring.append(event(i, verdict="DROPPED" if i in (1, 4) else "FORWARDED"))
    request = observer_pb2.GetFlowsRequest(number=2)
    request.whitelist.add().verdict.append(flow_pb2.DROPPED)
    assert pods(stub(channel).GetFlows(request)) == ["pod-1", "pod-4"]


def test_flows_rate_is_the_last_minutes_flows_per_second():
    clock = [1000.0]
    ring = EventRing(capacity=100, monotonic=lambda: clock[0])
    for _ in range(30):  # 30 flows a minute and a half ago
        ring.append(event(0))
    clock[0] += 90
    for _ in range(120):  # 120 in the last 30 s; the ring keeps 100 of them
        ring.append(event(1))
        clock[0] += 0.25
    # the ring wrapped within the minute: the rate is over the 25 s its 100 flows cover
    assert ring.flows_rate() == pytest.approx(100 / 25.0)
    clock[0] += 50  # now only the last 40 are within the minute
    assert ring.flows_rate() == pytest.approx(40 / 60.0)
    assert EventRing(capacity=5).flows_rate() == 0.0


def test_server_status_reports_the_flows_rate(served):
    ring, _server, channel = served
    ring.append(event(0))
    assert stub(channel).ServerStatus(observer_pb2.ServerStatusRequest()).flows_rate > 0


def test_an_instance_a_relay_aggregates_sends_no_node_status():
    ring = EventRing(capacity=5)
    ring.append(event(0))
    server = serve_observer(ring, "127.0.0.1:0", announce_nodes=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        (only,) = stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=5))
        assert only.flow.source.pod_name == "pod-0"
    finally:
        channel.close()
        server.stop(None)


def test_the_daemon_exports_what_its_clients_did(tmp_path):
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),),
                               out_dir=str(tmp_path / "groups"), resolve=False, clock="flows",
                               serve="127.0.0.1:0", serve_capacity=20))
    assert daemon.run() == 0 and daemon.ring is not None
    server = serve_observer(daemon.ring, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        assert len(flows(stub(channel).GetFlows(observer_pb2.GetFlowsRequest(number=5)))) == 5
        stats = daemon.ring.stats
        for _ in range(500):  # the server ends the call just after the client has read it all
            if stats.calls == 1 and stats.clients == 0:
                break
            threading.Event().wait(0.01)
        stats.add(lost=7)  # as a slow follower would
        now = daemon.monotonic()
        daemon._periodic({"expire": now, "snapshot": now})  # what the main loop does every 0.5 s
        sample = daemon.registry.get_sample_value
        assert sample("hushflow_serve_responses_sent_total") == 6  # the node_status and 5 flows
        assert sample("hushflow_serve_lost_events_total") == 7
        assert sample("hushflow_serve_clients") == 0
    finally:
        channel.close()
        server.stop(None)


@pytest.mark.parametrize("serve", [None, "127.0.0.1:0"])
def test_serving_asks_hubble_for_every_flow_and_field(tmp_path, serve):
    """Without --serve the daemon pushes its allowlist and field mask upstream (it reads only DNS,
    verdicts and drops, a few fields); with --serve its clients must see every flow whole."""
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), hubble_server="127.0.0.1:1", resolve=False,
                               out_dir=str(tmp_path / "groups"), serve=serve))
    request = daemon._default_source().source.request  # type: ignore[attr-defined]
    if serve:
        assert (list(request.whitelist), list(request.field_mask.paths)) == ([], [])
    else:
        assert request.whitelist and request.field_mask.paths


def test_what_hubble_reflect_asks_resolves_to_the_whole_api(served):
    """`hubble reflect` (1.19.4 cmd/reflect, a client written from it): one reflection stream;
    list the services; for each but reflection and health, the file containing the service,
    then every dependency by file name, each file printed once."""
    import queue

    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _ring, _server, channel = served
    requests: queue.Queue = queue.Queue()
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(requests.get, None))

    def ask(**fields: str) -> reflection_pb2.ServerReflectionResponse:
        requests.put(reflection_pb2.ServerReflectionRequest(**fields))
        return next(answers)

    printed: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def take(response: reflection_pb2.ServerReflectionResponse) -> None:
        assert response.WhichOneof("message_response") == "file_descriptor_response", response
        for raw in response.file_descriptor_response.file_descriptor_proto:
            desc = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if desc.name not in printed:
                printed[desc.name] = desc
            for dependency in desc.dependency:
                if dependency not in printed:
                    take(ask(file_by_filename=dependency))

    services = [s.name for s in ask(list_services="").list_services_response.service]
    for name in services:
        if name not in ("grpc.reflection.v1alpha.ServerReflection", "grpc.health.v1.Health"):
            take(ask(file_containing_symbol=name))
    requests.put(None)
    observer = next(d for d in printed.values() if d.package == "observer")
    (service,) = [s for s in observer.service if s.name == "Observer"]
    # the methods served (GetAgentEvents/GetDebugEvents answer UNIMPLEMENTED and are not described)
    assert {m.name for m in service.method} == {"GetFlows", "ServerStatus", "GetNodes", "GetNamespaces"}
    assert {d.package for d in printed.values()} >= {"observer", "flow", "relay", "google.protobuf"}


def test_a_flow_processed_in_its_canonical_spelling_is_served_enriched(tmp_path):
    """A flow the pipeline chokes on in the spelling it was read in (a null below the first level,
    which a source trusting one level hands on) is processed again in its canonical form
    (Daemon._again): that form, enriched, is what the ring (and the export) gets, not the
    spelling as read, without its tag. The choke is simulated: no spelling is known to reach it."""
    lines = (EXAMPLE / "flows.jsonl").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"DROPPED"' in line and "198.51.100.10" in line)
    events = [json.loads(line) for line in lines]
    events[index]["flow"]["IP"]["ipVersion"] = None  # protojson: the default; canonical: left out

    class OneLevelSource:
        name = "one-level"

        def events(self) -> Iterator[FlowEvent]:
            for number, data in enumerate(events, 1):
                yield FlowEvent(json.dumps(data).encode(), data, "one-level", number)

        def stop(self) -> None:
            pass

        def connected(self) -> bool:
            return True

    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), resolve=False, out_dir=str(tmp_path / "groups"),
                               clock="flows", serve="127.0.0.1:0"), source=OneLevelSource())
    process = daemon._process
    choked: list[int] = []

    def choke_on_a_null(event: FlowEvent, read_at: float, counted: bool = False) -> None:
        if "ipVersion" in event.data["flow"].get("IP", {}) and event.data["flow"]["IP"]["ipVersion"] is None:
            choked.append(event.line)
            raise TypeError("a null where a string was expected")
        process(event, read_at, counted=counted)

    daemon._process = choke_on_a_null  # type: ignore[method-assign]
    assert daemon.run() == 0 and daemon.ring is not None and choked == [index + 1]
    _lost, slots, _next = daemon.ring.read_from(1)
    served = slots[index].data["flow"]
    assert served["policy_log"] == ["app-explicit-traffic-blocked"] and "ipVersion" not in served["IP"]


def test_a_follower_reads_only_the_newest_slots():
    ring = EventRing(capacity=100)
    for i in range(150):
        ring.append(event(i % 60))
    lost, slots, following = ring.read_from(148)  # events 148-150, taken from the right end
    assert (lost, [s.data["flow"]["source"]["pod_name"] for s in slots], following) == (
        0, ["pod-27", "pod-28", "pod-29"], 151)
    lost, slots, _following = ring.read_from(10)  # fell behind: the whole ring, events 10-50 lost
    assert (lost, len(slots), slots[0].data["flow"]["source"]["pod_name"]) == (41, 100, "pod-50")
