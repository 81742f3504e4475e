"""The one parse of a DNS answer in a flow: what teaches, what does not, and the one name form."""

from __future__ import annotations

import pytest

from hushflow.flow.dns import MAX_TTL, DnsAnswer, dns_answer_of, endpoint_key

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
        name="api.example.com", ips=("192.0.2.1", "192.0.2.2"), ttl=30, client=CLIENT, client_key="shop/web-0",
        server_ip="10.96.0.10",
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


# -- the answer is hostile input: its DNS server is run by the party the deny targets -------------


@pytest.mark.parametrize(
    ("ips", "kept", "rejected"),
    [
        (["192.0.2.1", "not-an-ip"], ("192.0.2.1",), [("dns-ip-invalid", "not-an-ip")]),
        (["fe80::1%eth0", "2001:db8::1"], ("2001:db8::1",), [("dns-ip-with-zone", "fe80::1%eth0")]),
        (["2001:DB8:0::1", "2001:db8::1"], ("2001:db8::1",), []),  # one address, one spelling
        ([None, 7, {"ip": "192.0.2.1"}, ["192.0.2.1"]], (),
         [("dns-ip-not-a-string", "None"), ("dns-ip-not-a-string", "7"),
          ("dns-ip-not-a-string", "{'ip': '192.0.2.1'}"), ("dns-ip-not-a-string", "['192.0.2.1']")]),
        (["192.0.2.01"], (), [("dns-ip-invalid", "192.0.2.01")]),  # leading zeros: octal to some readers
        (["192.0.2.1/32"], (), [("dns-ip-invalid", "192.0.2.1/32")]),  # a network is no answer
        (["x" * 500], (), [("dns-ip-invalid", "x" * 80)]),  # reported, but not whole
        ("192.0.2.1", (), [("dns-ips-not-a-list", "'192.0.2.1'")]),
        ({"a": "192.0.2.1"}, (), [("dns-ips-not-a-list", "{'a': '192.0.2.1'}")]),
    ],
)
def test_every_ip_is_validated_before_anyone_stores_it(ips, kept, rejected):
    answer = dns_answer_of(response(ips=ips))
    assert answer is not None
    assert answer.ips == kept
    assert list(answer.rejected) == rejected


@pytest.mark.parametrize(
    ("ttl", "kept", "clamped"),
    [
        (30, 30, False),
        (0, 0, False),
        (MAX_TTL, MAX_TTL, False),
        (MAX_TTL + 1, MAX_TTL, True),
        (2**32 - 1, MAX_TTL, True),
        (-5, 0, True),
        (float("nan"), 0, True),
        (float("inf"), MAX_TTL, True),
        (float("-inf"), 0, True),
        ("30", 0, True),
        (None, 0, True),
        (True, 0, True),
        (12.9, 12, False),
    ],
)
def test_ttls_are_clamped_to_a_documented_range(ttl, kept, clamped):
    answer = dns_answer_of(response(ttl=ttl))
    assert answer is not None
    assert answer.ttl == kept
    assert any(reason == "dns-ttl-out-of-range" for reason, _ in answer.rejected) is clamped


@pytest.mark.parametrize("query", [None, 7, ["a.com."], {"q": 1}])
def test_a_query_that_is_no_name_teaches_nothing(query):
    assert dns_answer_of(response(query=query)) is None
