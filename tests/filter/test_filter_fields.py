"""One row per FlowFilter behaviour: (name, filter, event, expected match)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hushflow.filter import compile_filters, compile_flow_filter


def flow(**fields: Any) -> dict[str, Any]:
    return {"flow": fields, "node_name": "prod/n1", "time": "2026-03-02T09:00:00Z"}


def ep(ns: str = "", pod: str = "", **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ns:
        out["namespace"] = ns
    if pod:
        out["pod_name"] = pod
    out.update(more)
    return out


TCP = {"TCP": {"source_port": 40000, "destination_port": 443, "flags": {"SYN": True, "ACK": True}}}
UDP = {"UDP": {"source_port": 53000, "destination_port": 53}}
ICMP = {"ICMPv4": {"type": 8}}
LOST = {"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "3"}}
AGENT = {"agent_event": {"type": "POLICY_UPDATED", "policy_update": {"revision": "2"}}}
DEBUG = {"debug_event": {"type": "DBG_CT_LOOKUP"}}
HTTP_REQ = {"type": "REQUEST", "http": {"method": "GET", "url": "http://cart.shop:8080/v1/items%2Fx?q=1",
                                         "headers": [{"key": "x-user", "value": "bob"}]}}
HTTP_RESP = {"type": "RESPONSE", "http": {"code": 404, "method": "GET", "url": "http://cart.shop/v1/items"}}
DNS = {"type": "REQUEST", "dns": {"query": "api.stripe.com.", "qtypes": ["A"]}}

ROWS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # --- empty filter / non-flow events
    ("empty filter matches flows", {}, flow(verdict="FORWARDED"), True),
    ("empty filter matches lost events", {}, LOST, True),
    ("flow field filter fails lost events", {"verdict": ["DROPPED"]}, LOST, False),
    # --- uuid
    ("uuid exact", {"uuid": ["u-1"]}, flow(uuid="u-1"), True),
    ("uuid other", {"uuid": ["u-1"]}, flow(uuid="u-2"), False),
    # --- IPs
    ("source_ip exact", {"source_ip": ["10.0.0.1"]}, flow(IP={"source": "10.0.0.1"}), True),
    ("source_ip exact other", {"source_ip": ["10.0.0.1"]}, flow(IP={"source": "10.0.0.11"}), False),
    ("source_ip compares strings", {"source_ip": ["0:0::1"]}, flow(IP={"source": "::1"}), False),
    ("source_ip cidr contains", {"source_ip": ["10.244.0.0/16"]}, flow(IP={"source": "10.244.3.9"}), True),
    ("source_ip cidr outside", {"source_ip": ["10.244.0.0/16"]}, flow(IP={"source": "10.245.0.1"}), False),
    ("source_ip cidr host bits allowed", {"source_ip": ["10.244.1.7/24"]}, flow(IP={"source": "10.244.1.200"}), True),
    ("source_ip v6 cidr", {"source_ip": ["fd00::/8"]}, flow(IP={"source": "fd00::1"}), True),
    ("source_ip v4 cidr vs v4-mapped v6", {"source_ip": ["1.2.3.0/24"]}, flow(IP={"source": "::ffff:1.2.3.4"}), False),
    ("source_ip flow without IP", {"source_ip": ["10.0.0.0/8"]}, flow(), False),
    ("source_ip ORed values", {"source_ip": ["10.0.0.1", "10.0.0.2"]}, flow(IP={"source": "10.0.0.2"}), True),
    ("destination_ip exact", {"destination_ip": ["1.1.1.1"]}, flow(IP={"destination": "1.1.1.1"}), True),
    ("destination_ip is not source", {"destination_ip": ["1.1.1.1"]}, flow(IP={"source": "1.1.1.1"}), False),
    ("source_ip_xlated", {"source_ip_xlated": ["192.0.2.1"]}, flow(IP={"source_xlated": "192.0.2.1"}), True),
    ("source_ip_xlated absent", {"source_ip_xlated": ["192.0.2.1"]}, flow(IP={"source": "192.0.2.1"}), False),
    # --- pods
    ("pod without namespace means default", {"source_pod": ["web"]}, flow(source=ep("default", "web-1")), True),
    ("pod without namespace not other ns", {"source_pod": ["web"]}, flow(source=ep("shop", "web-1")), False),
    ("pod ns/ any pod in ns", {"source_pod": ["shop/"]}, flow(source=ep("shop", "x")), True),
    ("pod ns/ other ns", {"source_pod": ["shop/"]}, flow(source=ep("shop2", "x")), False),
    ("pod ns/prefix", {"source_pod": ["shop/web-"]}, flow(source=ep("shop", "web-7")), True),
    ("pod prefix mismatch", {"source_pod": ["shop/web-"]}, flow(source=ep("shop", "api-7")), False),
    ("pod /prefix any namespace", {"source_pod": ["/web"]}, flow(source=ep("anything", "web-7")), True),
    ("pod / matches any endpoint", {"source_pod": ["/"]}, flow(source=ep("a", "")), True),
    ("pod / not an endpoint without ns and name", {"source_pod": ["/"]}, flow(source={"identity": 2}), False),
    ("destination_pod", {"destination_pod": ["db/"]}, flow(destination=ep("db", "pg-0")), True),
    ("destination_pod is not source", {"destination_pod": ["db/"]}, flow(source=ep("db", "pg-0")), False),
    # --- services
    ("source_service ns/name", {"source_service": ["shop/cart"]}, flow(source_service={"name": "cart", "namespace": "shop"}), True),
    ("source_service default ns", {"source_service": ["cart"]}, flow(source_service={"name": "cart", "namespace": "shop"}), False),
    ("destination_service prefix", {"destination_service": ["shop/ca"]}, flow(destination_service={"name": "cart", "namespace": "shop"}), True),
    ("destination_service absent", {"destination_service": ["shop/"]}, flow(), False),
    # --- FQDNs
    ("fqdn exact", {"destination_fqdn": ["api.stripe.com"]}, flow(destination_names=["api.stripe.com"]), True),
    ("fqdn trailing dot and case in pattern", {"destination_fqdn": [" API.Stripe.com. "]}, flow(destination_names=["api.stripe.com"]), True),
    ("fqdn flow names not lowercased", {"destination_fqdn": ["api.stripe.com"]}, flow(destination_names=["API.stripe.com"]), False),
    ("fqdn anchored", {"destination_fqdn": ["stripe.com"]}, flow(destination_names=["api.stripe.com"]), False),
    ("fqdn star crosses dots", {"destination_fqdn": ["*.example.com"]}, flow(destination_names=["a.b.example.com"]), True),
    ("fqdn star does not match underscore", {"destination_fqdn": ["*.example.com"]}, flow(destination_names=["a_b.example.com"]), False),
    ("fqdn any of several names", {"destination_fqdn": ["b.io"]}, flow(destination_names=["a.io", "b.io"]), True),
    ("source_fqdn uses source_names", {"source_fqdn": ["a.io"]}, flow(destination_names=["a.io"]), False),
    ("source_fqdn", {"source_fqdn": ["*.io"]}, flow(source_names=["a.io"]), True),
    # --- labels
    ("label k=v any source", {"source_label": ["app=cart"]}, flow(source=ep(labels=["k8s:app=cart"])), True),
    ("label k=v other value", {"source_label": ["app=cart"]}, flow(source=ep(labels=["k8s:app=web"])), False),
    ("label k==v", {"source_label": ["app==cart"]}, flow(source=ep(labels=["k8s:app=cart"])), True),
    ("label with source prefix", {"source_label": ["k8s:app=cart"]}, flow(source=ep(labels=["k8s:app=cart"])), True),
    ("label with other source prefix", {"source_label": ["container:app=cart"]}, flow(source=ep(labels=["k8s:app=cart"])), False),
    ("label reserved:world exists", {"destination_label": ["reserved:world"]}, flow(destination=ep(labels=["reserved:world"])), True),
    ("label != when absent", {"source_label": ["app!=cart"]}, flow(source=ep(labels=["k8s:tier=db"])), True),
    ("label != when equal", {"source_label": ["app!=cart"]}, flow(source=ep(labels=["k8s:app=cart"])), False),
    ("label in", {"source_label": ["tier in (db, cache)"]}, flow(source=ep(labels=["k8s:tier=cache"])), True),
    ("label in other", {"source_label": ["tier in (db, cache)"]}, flow(source=ep(labels=["k8s:tier=web"])), False),
    ("label notin absent key", {"source_label": ["tier notin (db)"]}, flow(source=ep(labels=[])), True),
    ("label notin present", {"source_label": ["tier notin (db)"]}, flow(source=ep(labels=["k8s:tier=db"])), False),
    ("label exists", {"source_label": ["pci"]}, flow(source=ep(labels=["k8s:pci=true"])), True),
    ("label !exists", {"source_label": ["!pci"]}, flow(source=ep(labels=["k8s:pci=true"])), False),
    ("label !exists on no labels", {"source_label": ["!pci"]}, flow(source=ep()), True),
    ("label comma is AND", {"source_label": ["app=cart,tier=db"]}, flow(source=ep(labels=["k8s:app=cart", "k8s:tier=web"])), False),
    ("label selectors ORed", {"source_label": ["app=x", "tier=web"]}, flow(source=ep(labels=["k8s:tier=web"])), True),
    ("label gt", {"source_label": ["rank>2"]}, flow(source=ep(labels=["k8s:rank=3"])), True),
    ("label lt", {"source_label": ["rank<2"]}, flow(source=ep(labels=["k8s:rank=3"])), False),
    ("label key with dots and slash", {"destination_label": ["io.kubernetes.pod.namespace=shop"]},
     flow(destination=ep(labels=["k8s:io.kubernetes.pod.namespace=shop"])), True),
    ("destination_label is not source", {"destination_label": ["app=cart"]}, flow(source=ep(labels=["k8s:app=cart"])), False),
    ("node_labels without source", {"node_labels": ["kubernetes.io/os=linux"]}, flow(node_labels=["kubernetes.io/os=linux"]), True),
    ("node_labels mismatch", {"node_labels": ["kubernetes.io/os=windows"]}, flow(node_labels=["kubernetes.io/os=linux"]), False),
    # --- workloads, clusters, identities
    ("workload name", {"source_workload": [{"name": "coredns"}]}, flow(source=ep(workloads=[{"name": "coredns", "kind": "Deployment"}])), True),
    ("workload kind only", {"source_workload": [{"kind": "StatefulSet"}]}, flow(source=ep(workloads=[{"name": "pg", "kind": "StatefulSet"}])), True),
    ("workload name and kind must both match", {"destination_workload": [{"name": "pg", "kind": "Deployment"}]},
     flow(destination=ep(workloads=[{"name": "pg", "kind": "StatefulSet"}])), False),
    ("workload none on endpoint", {"source_workload": [{"name": "pg"}]}, flow(source=ep("db", "pg-0")), False),
    ("destination workload kind", {"destination_workload": [{"name": "pg", "kind": "StatefulSet"}]},
     flow(destination=ep(workloads=[{"name": "pg", "kind": "StatefulSet"}])), True),
    ("cluster exact", {"source_cluster_name": ["prod"]}, flow(source=ep(cluster_name="prod")), True),
    ("cluster other", {"destination_cluster_name": ["prod"]}, flow(destination=ep(cluster_name="prod2")), False),
    ("destination cluster", {"destination_cluster_name": ["prod"]}, flow(destination=ep(cluster_name="prod")), True),
    ("source cluster is not destination", {"source_cluster_name": ["prod"]}, flow(destination=ep(cluster_name="prod")), False),
    ("identity", {"destination_identity": [2]}, flow(destination=ep(identity=2)), True),
    ("identity other", {"destination_identity": [2]}, flow(destination=ep(identity=16777217)), False),
    ("source_identity", {"source_identity": [1]}, flow(source=ep(identity=1)), True),
    ("source_identity other", {"source_identity": [1]}, flow(source=ep(identity=2), destination=ep(identity=1)), False),
    # --- verdict, direction, drop reason
    ("verdict", {"verdict": ["DROPPED"]}, flow(verdict="DROPPED"), True),
    ("verdict other", {"verdict": ["DROPPED"]}, flow(verdict="FORWARDED"), False),
    ("verdict by number", {"verdict": [4]}, flow(verdict="AUDIT"), True),
    ("verdict unknown is the default", {"verdict": ["VERDICT_UNKNOWN"]}, flow(), True),
    ("traffic_direction", {"traffic_direction": ["INGRESS"]}, flow(traffic_direction="INGRESS"), True),
    ("traffic_direction other", {"traffic_direction": ["INGRESS"]}, flow(traffic_direction="EGRESS"), False),
    ("drop_reason_desc on drop", {"drop_reason_desc": ["POLICY_DENIED"]}, flow(verdict="DROPPED", drop_reason_desc="POLICY_DENIED"), True),
    ("drop_reason_desc needs DROPPED", {"drop_reason_desc": ["POLICY_DENIED"]}, flow(verdict="AUDIT", drop_reason_desc="POLICY_DENIED"), False),
    ("drop_reason_desc other reason", {"drop_reason_desc": ["POLICY_DENY"]}, flow(verdict="DROPPED", drop_reason_desc="POLICY_DENIED"), False),
    # --- interface
    ("interface by name", {"interface": [{"name": "eth0"}]}, flow(interface={"index": 3, "name": "eth0"}), True),
    ("interface by index", {"interface": [{"index": 3}]}, flow(interface={"index": 4, "name": "eth0"}), False),
    ("interface absent", {"interface": [{"name": "eth0"}]}, flow(), False),
    # --- event type
    ("event_type type", {"event_type": [{"type": 5}]}, flow(event_type={"type": 5}), True),
    ("event_type other type", {"event_type": [{"type": 5}]}, flow(event_type={"type": 4, "sub_type": 3}), False),
    ("event_type sub_type ignored without match_sub_type", {"event_type": [{"type": 4, "sub_type": 9}]}, flow(event_type={"type": 4, "sub_type": 3}), True),
    ("event_type sub_type", {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 3}]}, flow(event_type={"type": 4, "sub_type": 3}), True),
    ("event_type sub_type 0 is a value", {"event_type": [{"type": 4, "match_sub_type": True}]}, flow(event_type={"type": 4, "sub_type": 3}), False),
    ("event_type type 0 is a wildcard", {"event_type": [{"match_sub_type": True, "sub_type": 3}]}, flow(event_type={"type": 4, "sub_type": 3}), True),
    ("event_type passes lost events", {"event_type": [{"type": 1}]}, LOST, True),
    ("event_type plus flow field fails lost events", {"event_type": [{"type": 1}], "verdict": ["DROPPED"]}, LOST, False),
    ("event_type agent events by type", {"event_type": [{"type": 130}]}, AGENT, True),
    ("event_type agent sub type", {"event_type": [{"type": 130, "match_sub_type": True, "sub_type": 3}]}, AGENT, True),
    ("event_type agent other sub type", {"event_type": [{"type": 130, "match_sub_type": True, "sub_type": 4}]}, AGENT, False),
    ("event_type flow type not agent", {"event_type": [{"type": 4}]}, AGENT, False),
    ("event_type wildcard type matches agent events", {"event_type": [{"match_sub_type": False}]}, AGENT, True),
    ("event_type debug events", {"event_type": [{"type": 2}]}, DEBUG, True),
    # --- reply
    ("reply true", {"reply": [True]}, flow(is_reply=True), True),
    ("reply false vs true", {"reply": [False]}, flow(is_reply=True), False),
    ("reply unknown fails", {"reply": [False]}, flow(verdict="FORWARDED"), False),
    ("reply unknown on drop counts as false", {"reply": [False]}, flow(verdict="DROPPED"), True),
    ("reply unknown on drop is not true", {"reply": [True]}, flow(verdict="DROPPED"), False),
    # --- http
    ("http status exact", {"http_status_code": ["404"]}, flow(l7=HTTP_RESP), True),
    ("http status prefix", {"http_status_code": ["4+"]}, flow(l7=HTTP_RESP), True),
    ("http status two digit prefix", {"http_status_code": ["40+"]}, flow(l7=HTTP_RESP), True),
    ("http status other", {"http_status_code": ["5+"]}, flow(l7=HTTP_RESP), False),
    ("http status request never matches", {"http_status_code": ["2+"]}, flow(l7=HTTP_REQ), False),
    ("http method case-insensitive", {"http_method": ["get"]}, flow(l7=HTTP_REQ), True),
    ("http method other", {"http_method": ["POST"]}, flow(l7=HTTP_REQ), False),
    ("http method needs http", {"http_method": ["GET"]}, flow(l7=DNS), False),
    ("http path regex on decoded path", {"http_path": ["^/v1/items/x$"]}, flow(l7=HTTP_REQ), True),
    ("http path excludes query", {"http_path": ["q=1"]}, flow(l7=HTTP_REQ), False),
    ("http url unanchored regex", {"http_url": ["cart\\.shop"]}, flow(l7=HTTP_REQ), True),
    ("http url no match", {"http_url": ["orders"]}, flow(l7=HTTP_REQ), False),
    ("http header pair", {"http_header": [{"key": "x-user", "value": "bob"}]}, flow(l7=HTTP_REQ), True),
    ("http header value differs", {"http_header": [{"key": "x-user", "value": "eve"}]}, flow(l7=HTTP_REQ), False),
    ("http with l7 event type allowed", {"http_method": ["GET"], "event_type": [{"type": 129}]}, flow(l7=HTTP_REQ, event_type={"type": 129}), True),
    # --- protocol
    ("protocol tcp", {"protocol": ["tcp"]}, flow(l4=TCP), True),
    ("protocol case-insensitive", {"protocol": ["TCP"]}, flow(l4=TCP), True),
    ("protocol udp vs tcp", {"protocol": ["udp"]}, flow(l4=TCP), False),
    ("protocol icmp covers v4", {"protocol": ["icmp"]}, flow(l4=ICMP), True),
    ("protocol icmpv6 not v4", {"protocol": ["icmpv6"]}, flow(l4=ICMP), False),
    ("protocol sctp", {"protocol": ["sctp"]}, flow(l4={"SCTP": {"destination_port": 9}}), True),
    ("protocol dns", {"protocol": ["dns"]}, flow(l4=UDP, l7=DNS), True),
    ("protocol http not dns", {"protocol": ["http"]}, flow(l4=UDP, l7=DNS), False),
    ("protocol kafka", {"protocol": ["kafka"]}, flow(l7={"kafka": {"topic": "t"}}), True),
    # --- ports
    ("destination_port tcp", {"destination_port": ["443"]}, flow(l4=TCP), True),
    ("destination_port udp", {"destination_port": ["53"]}, flow(l4=UDP), True),
    ("destination_port other", {"destination_port": ["80"]}, flow(l4=TCP), False),
    ("source_port", {"source_port": ["40000"]}, flow(l4=TCP), True),
    ("source_port is not destination", {"source_port": ["443"]}, flow(l4=TCP), False),
    ("port never matches icmp", {"destination_port": ["0"]}, flow(l4=ICMP), False),
    # --- dns query
    ("dns_query unanchored", {"dns_query": ["stripe"]}, flow(l7=DNS), True),
    ("dns_query sees trailing dot", {"dns_query": ["com\\.$"]}, flow(l7=DNS), True),
    ("dns_query no match", {"dns_query": ["^stripe"]}, flow(l7=DNS), False),
    ("dns_query needs dns", {"dns_query": [".*"]}, flow(l7=HTTP_REQ), False),
    # --- tcp flags
    ("tcp_flags all of entry", {"tcp_flags": [{"SYN": True, "ACK": True}]}, flow(l4=TCP), True),
    ("tcp_flags entry needs every flag", {"tcp_flags": [{"SYN": True, "FIN": True}]}, flow(l4=TCP), False),
    ("tcp_flags entries ORed", {"tcp_flags": [{"FIN": True}, {"SYN": True}]}, flow(l4=TCP), True),
    ("tcp_flags needs tcp", {"tcp_flags": [{"SYN": True}]}, flow(l4=UDP), False),
    # --- node name
    ("node_name node pattern any cluster", {"node_name": ["ip-10-*"]}, flow(node_name="prod/ip-10-1.ec2.internal"), True),
    ("node_name cluster/", {"node_name": ["prod/"]}, flow(node_name="prod/n1"), True),
    ("node_name other cluster", {"node_name": ["prod/"]}, flow(node_name="dev/n1"), False),
    ("node_name without cluster is default", {"node_name": ["default/n1"]}, flow(node_name="n1"), True),
    ("node_name anchored", {"node_name": ["n"]}, flow(node_name="prod/n1"), False),
    ("node_name absent", {"node_name": ["/"]}, flow(), False),
    # --- ip version, trace ids, encryption
    ("ip_version", {"ip_version": ["IPv6"]}, flow(IP={"source": "::1", "ipVersion": "IPv6"}), True),
    ("ip_version other", {"ip_version": ["IPv6"]}, flow(IP={"source": "1.1.1.1", "ipVersion": "IPv4"}), False),
    ("trace_id", {"trace_id": ["abc"]}, flow(trace_context={"parent": {"trace_id": "abc"}}), True),
    ("trace_id other", {"trace_id": ["abc"]}, flow(trace_context={"parent": {"trace_id": "abd"}}), False),
    ("ip_trace_id", {"ip_trace_id": [42]}, flow(ip_trace_id={"trace_id": "42"}), True),
    ("ip_trace_id as string", {"ip_trace_id": ["42"]}, flow(ip_trace_id={"trace_id": "42"}), True),
    ("ip_trace_id other", {"ip_trace_id": [42]}, flow(ip_trace_id={"trace_id": "43"}), False),
    ("ip_trace_id absent", {"ip_trace_id": [42]}, flow(), False),
    ("encrypted true", {"encrypted": [True]}, flow(IP={"source": "1.1.1.1", "encrypted": True}), True),
    ("encrypted true vs clear", {"encrypted": [True]}, flow(IP={"source": "1.1.1.1"}), False),
    ("encrypted false", {"encrypted": [False]}, flow(IP={"source": "1.1.1.1"}), True),
    # --- combining fields and spellings
    ("fields are ANDed", {"verdict": ["DROPPED"], "protocol": ["udp"]}, flow(verdict="DROPPED", l4=TCP), False),
    ("fields are ANDed, all match", {"verdict": ["DROPPED"], "protocol": ["tcp"]}, flow(verdict="DROPPED", l4=TCP), True),
    ("empty repeated field is ignored", {"verdict": [], "protocol": ["tcp"]}, flow(l4=TCP), True),
    ("lowerCamel names", {"sourcePod": ["shop/"], "eventType": [{"type": 5, "matchSubType": False}]},
     flow(source=ep("shop", "a"), event_type={"type": 5}), True),
    ("cel after cheap fields", {"verdict": ["DROPPED"], "experimental": {"cel_expression": ["true"]}}, flow(verdict="FORWARDED"), False),
    ("cel ORed expressions", {"experimental": {"cel_expression": ["false", "_flow.verdict == Verdict.AUDIT"]}}, flow(verdict="AUDIT"), True),
    ("cel fails non-flow events", {"experimental": {"cel_expression": ["true"]}}, LOST, False),
]


@pytest.mark.parametrize(("flt", "event", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_flow_filter_field(flt: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    compiled = compile_filters([flt], [])
    assert compiled(event) is expected
    # The bytes pre-check is a necessary condition: it never rejects a matching canonical line.
    if expected:
        assert compiled.line_may_match(orjson.dumps(event))


LIST_ROWS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], bool]] = [
    ("no filters pass everything", [], [], flow(), True),
    ("allowlist is ORed", [{"verdict": ["AUDIT"]}, {"verdict": ["DROPPED"]}], [], flow(verdict="DROPPED"), True),
    ("allowlist no match", [{"verdict": ["AUDIT"]}], [], flow(verdict="DROPPED"), False),
    ("denylist excludes", [], [{"verdict": ["DROPPED"]}], flow(verdict="DROPPED"), False),
    ("denylist keeps others", [], [{"verdict": ["DROPPED"]}], flow(verdict="FORWARDED"), True),
    ("denylist wins over allowlist", [{"verdict": ["DROPPED"]}], [{"protocol": ["tcp"]}], flow(verdict="DROPPED", l4=TCP), False),
    ("denylist of flow fields keeps lost events", [], [{"verdict": ["DROPPED"]}], LOST, True),
    ("empty denylist filter excludes all", [], [{}], flow(), False),
]


@pytest.mark.parametrize(("allow", "deny", "event", "expected"), [r[1:] for r in LIST_ROWS], ids=[r[0] for r in LIST_ROWS])
def test_allow_and_deny_lists(allow: list[dict[str, Any]], deny: list[dict[str, Any]], event: dict[str, Any], expected: bool) -> None:
    assert compile_filters(allow, deny)(event) is expected


def test_fields_are_evaluated_cheapest_first() -> None:
    compiled = compile_flow_filter(
        {"experimental": {"cel_expression": ["true"]}, "dns_query": ["x"], "verdict": ["DROPPED"]}
    )
    assert [f.field for f in compiled.fields] == ["verdict", "dns_query", "experimental.cel_expression"]


def test_every_flow_filter_field_has_a_builder() -> None:
    from hushflow.filter.flow_filter import _BUILDERS
    from hushflow.filter.protocols import HTTP_FIELDS
    from hushflow.proto import FLOW_FILTER_DESCRIPTOR

    handled = set(_BUILDERS) | set(HTTP_FIELDS) | {"event_type", "experimental"}
    assert {f.name for f in FLOW_FILTER_DESCRIPTOR.fields} == handled


def test_every_field_has_positive_and_negative_rows() -> None:
    from hushflow.proto import FLOW_FILTER_DESCRIPTOR

    for field in FLOW_FILTER_DESCRIPTOR.fields:
        outcomes = {expected for _, flt, _, expected in ROWS if field.name in flt}
        assert outcomes == {True, False}, field.name
