"""The one parse of a DNS answer in a flow: what teaches, what does not, and the one name form."""

from __future__ import annotations

import pytest

from hushflow.flow.dns import DnsAnswer, dns_answer_of, endpoint_key

CLIENT = {"namespace": "shop", "pod_name": "web-0", "labels": ["k8s:app=web"]}


def response(**dns) -> dict:
    return {
        "IP": {"source": "10.96.0.10", "destination": "10.0.0.5"},
        "destination": CLIENT,
        "node_name": "node-1",
        "l7": {"type": "RESPONSE", "dns": {"query": "Api.Example.COM.", "ips": ["192.0.2.1", "192.0.2.2"], "ttl": 30,
                                            **dns}},
    }


def test_a_successful_answer_names_the_client_and_takes_the_one_name_form():
    assert dns_answer_of(response()) == DnsAnswer(
        name="api.example.com", ips=("192.0.2.1", "192.0.2.2"), ttl=30, client=CLIENT, client_key="shop/web-0"
    )


@pytest.mark.parametrize(
    ("why", "flow"),
    [
        ("no l7", {"destination": CLIENT}),
        ("a request", {**response(), "l7": {"type": "REQUEST", "dns": {"query": "a.com."}}}),
        ("NXDOMAIN", response(rcode=3)),
        ("no IPs", response(ips=[])),
        ("no query", response(query="")),
        ("http, not dns", {"l7": {"type": "RESPONSE", "http": {"code": 200}}}),
    ],
)
def test_what_teaches_nothing(why, flow):
    assert dns_answer_of(flow) is None, why


@pytest.mark.parametrize(
    ("endpoint", "ip", "expected"),
    [
        ({"namespace": "shop", "pod_name": "web-0"}, "10.0.0.5", "shop/web-0"),
        ({"ID": 1234}, "10.0.0.5", "node-1#1234"),
        ({}, "10.0.0.5", "10.0.0.5"),
        (None, "10.0.0.5", "10.0.0.5"),
    ],
)
def test_endpoint_key(endpoint, ip, expected):
    assert endpoint_key(endpoint, ip, "node-1") == expected
