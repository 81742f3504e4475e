"""The blindness alarm: planted connections no DNS answer explains, from an endpoint an FQDN deny selects."""

from __future__ import annotations

from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from hushflow.engine.blindness import UnexplainedDestinations, opens_connection
from hushflow.flow.connection import connection_of
from hushflow.flow.times import flow_time
from tests.engine.conftest import WORLD, dns_answer, flow, pod
from tests.engine.test_decision import FQDN_ALLOW, FQDN_DENY, WEB, cnp

APP = pod("shop", "web", 1001)
OTHER_APP = pod("shop", "batch", 1003)
DB = pod("shop", "db", 1002)
HIDDEN = "203.0.113.50"  # a telemetry IP the pod reached without any DNS answer hushflow saw
ALL_PORTS_DENY = cnp("block-all-ports", WEB + '  egressDeny:\n  - toFQDNs: [{matchName: tracker.example.net}]\n')


def _at(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"2026-01-01T00:{minutes:02d}:{rest:02d}Z"


def conn_at(event: dict[str, Any]) -> Any:
    conn = connection_of(event["flow"], flow_time(event["flow"], event))
    assert conn is not None
    return conn


def syn(src: dict[str, Any] = APP, dst: dict[str, Any] = WORLD, *, ip: str = HIDDEN, port: int = 443,
        second: int = 10, proto: str = "TCP", **extra: Any) -> dict[str, Any]:
    event = flow(src, dst, dst_ip=ip, port=port, proto=proto, verdict="FORWARDED", time=_at(second), **extra)
    if proto == "TCP":
        event["flow"]["l4"]["TCP"]["flags"] = {"SYN": True}
    return event


@pytest.fixture
def alarm(policies):
    """An attributor (it learns the DNS answers) and the alarm reading the same knowledge."""
    def build(*docs: str, **options: Any) -> tuple[Attributor, UnexplainedDestinations]:
        policy_set = policies(*docs)
        attributor = Attributor(policy_set)
        return attributor, UnexplainedDestinations(policy_set, attributor.dns, **options)

    return build


def _observe(attributor: Attributor, check: UnexplainedDestinations, event: dict[str, Any]) -> bool:
    """What the daemon does: learn or attribute the event, then check the policy outcome."""
    attribution = attributor.observe(event)
    if attribution is None or attribution.connection is None:
        return False
    return check.observe(attribution.connection, event["flow"]) is not None


# (id, events before, the connection, counted?)
CASES = [
    ("denied-port-to-an-ip-no-answer-names", [], syn(), True),
    ("udp-where-the-deny-covers-only-tcp", [], syn(proto="UDP"), False),
    ("after-an-answer-for-an-allowed-name", [dns_answer(APP, "api.stripe.com", [HIDDEN], time=_at(5))], syn(), False),
    ("after-an-answer-for-the-denied-name", [dns_answer(APP, "x.telemetry.example.com", [HIDDEN], time=_at(5))],
     syn(), False),
    ("an-answer-another-pod-received-explains-it", [dns_answer(DB, "cdn.example.org", [HIDDEN], time=_at(5))],
     syn(), False),
    ("an-answer-for-another-ip-does-not", [dns_answer(APP, "api.stripe.com", ["198.51.100.7"], time=_at(5))],
     syn(), True),
    ("other-port-not-denied", [], syn(port=8443), False),
    ("cluster-peer-not-world", [], syn(dst=DB, ip="10.0.0.9"), False),
    ("host-peer-not-world", [], syn(dst={"identity": 1, "labels": ["reserved:host"]}, ip="10.0.0.254"), False),
    ("endpoint-no-deny-selects", [], syn(src=OTHER_APP), False),
    ("hubble-named-the-peer", [], syn(names=["sdk.telemetry.example.com"]), False),
    ("cilium-fqdn-identity", [], syn(dst={"identity": 16777300, "labels": ["fqdn:*.telemetry.example.com",
                                                                         "reserved:world"]}), False),
    ("cidr-identity-is-world", [], syn(dst={"identity": 16777301, "labels": ["cidr:203.0.113.50/32"]}), True),
    ("a-reply-opens-nothing", [], syn(is_reply=True), False),
    ("an-ack-opens-nothing", [], flow(APP, WORLD, dst_ip=HIDDEN, verdict="FORWARDED", time=_at(10),
                                      l4={"TCP": {"destination_port": 443, "flags": {"ACK": True}}}), False),
    ("a-drop-of-the-syn-counts", [], flow(APP, WORLD, dst_ip=HIDDEN, verdict="DROPPED", drop="POLICY_DENIED",
                                          event_type=1, time=_at(10)), True),
    ("ingress-never-counts", [], flow(WORLD, APP, src_ip=HIDDEN, dst_ip="10.0.0.1", direction="INGRESS",
                                      time=_at(10)), False),
]


@pytest.mark.parametrize(("before", "event", "counted"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_unexplained_destinations(alarm, before, event, counted):
    attributor, check = alarm(FQDN_DENY, FQDN_ALLOW)
    for earlier in before:
        attributor.observe(earlier)
    assert _observe(attributor, check, event) is counted


def test_a_deny_without_to_ports_covers_every_port(alarm):
    attributor, check = alarm(ALL_PORTS_DENY)
    assert _observe(attributor, check, syn(port=22))
    assert _observe(attributor, check, syn(port=53, proto="UDP", ip="198.51.100.9"))


def test_the_finding_names_the_deny_that_cannot_see(alarm):
    _attributor, check = alarm(FQDN_DENY)
    found = check.unexplained(conn_at(syn()))
    assert found is not None
    assert (found.rule.policy.name, found.ip, found.protocol, found.port) == ("block", HIDDEN, "TCP", 443)
    assert found.where.endswith("spec.egressDeny[0]")


def test_packets_of_one_connection_are_counted_once(alarm):
    attributor, check = alarm(FQDN_DENY)
    verdict = syn(second=10)
    retransmits = [flow(APP, WORLD, dst_ip=HIDDEN, verdict="DROPPED", drop="POLICY_DENIED", event_type=1,
                        time=_at(second)) for second in (11, 13, 17)]
    counts = [_observe(attributor, check, event) for event in [verdict, *retransmits]]
    assert counts == [True, False, False, False]
    assert check.counted == 1
    # After the window it is counted again: the pod is still going there.
    assert _observe(attributor, check, syn(second=10 + 61))
    # Another IP, or another port, is another connection.
    assert _observe(attributor, check, syn(second=72, ip="203.0.113.51"))


def test_ttl_expiry_makes_the_ip_unexplained_again(alarm):
    attributor, check = alarm(FQDN_DENY, window=1.0)
    attributor.observe(dns_answer(APP, "api.stripe.com", [HIDDEN], ttl=30, time=_at(0)))
    assert not _observe(attributor, check, syn(second=20))  # within the TTL
    assert _observe(attributor, check, syn(second=40))  # the answer expired at 30


def test_min_ttl_and_grace_keep_an_answer_explaining_as_long_as_the_deny_keeps_it(alarm):
    attributor, check = alarm(FQDN_DENY, window=1.0, min_ttl=60.0, grace=10.0)
    attributor.observe(dns_answer(APP, "api.stripe.com", [HIDDEN], ttl=5, time=_at(0)))
    assert not _observe(attributor, check, syn(second=69))  # 5 s TTL raised to 60, plus 10 s grace
    assert _observe(attributor, check, syn(second=71))


def test_the_resolvers_answers_explain_their_ips(alarm):
    attributor, check = alarm(FQDN_DENY, window=1.0)
    check.learn_resolved([HIDDEN], ttl=30, now=flow_time(syn(second=0)["flow"], {}))
    assert not _observe(attributor, check, syn(second=25))
    assert _observe(attributor, check, syn(second=31))


def test_memory_is_bounded(alarm):
    attributor, check = alarm(FQDN_DENY, max_tracked=3, max_resolved=2)
    for last in range(10):
        assert _observe(attributor, check, syn(ip=f"203.0.113.{last}"))
    assert len(check._counted) == 3 and check.forgotten == 7
    now = flow_time(syn()["flow"], {})
    for last in range(5):
        check.learn_resolved([f"198.51.100.{last}"], ttl=60, now=now)
    assert list(check._resolved) == ["198.51.100.3", "198.51.100.4"]  # the most recent ones


def test_no_fqdn_deny_no_alarm(alarm):
    attributor, check = alarm(FQDN_ALLOW)
    assert not check
    assert not _observe(attributor, check, syn())


@pytest.mark.parametrize(("flags", "opens"), [
    ({"SYN": True}, True), ({"SYN": True, "ACK": True}, False), ({"ACK": True}, False),
    ({"FIN": True, "ACK": True}, False), ({}, True), (None, True),
])
def test_which_tcp_packets_open_a_connection(flags, opens):
    tcp: dict[str, Any] = {"destination_port": 443}
    if flags is not None:
        tcp["flags"] = flags
    assert opens_connection({"l4": {"TCP": tcp}}) is opens


@pytest.mark.parametrize(("source", "destination", "opens"), [
    (40000, 53, True), (40000, 443, True), (53, 40000, False), (443, 50000, False), (1024, 40000, True),
    (53, 8080, True),
])
def test_which_udp_packets_open_a_connection(source, destination, opens):
    assert opens_connection({"l4": {"UDP": {"source_port": source, "destination_port": destination}}}) is opens


def _explain(attributor: Attributor, event: dict[str, Any]) -> str:
    from hushflow.engine.explain import explain_flow

    text = explain_flow(attributor, event, "flows.jsonl:1")
    assert text is not None
    return text


def test_explain_says_the_deny_cannot_see_the_name(alarm):
    attributor, _check = alarm(FQDN_DENY, FQDN_ALLOW)
    text = _explain(attributor, flow(APP, WORLD, dst_ip=HIDDEN, verdict="DROPPED", drop="POLICY_DENIED",
                                     time=_at(10)))
    assert "  no DNS answer seen for 203.0.113.50: the FQDN deny cnp shop/block (" in text
    assert text.count("no DNS answer seen") == 1  # instead of the plain line, not beside it
    assert "spec.egressDeny[0]) cannot know its name (NodeLocal DNS, DoH or a hard-coded IP?); see " \
        "docs/runbooks.md#hushflowunexplaineddestinations" in text


def test_explain_says_it_for_an_allowed_connection_too(alarm):
    # Allowed to the world on 443 by a toCIDR allow, which the deny should have stopped were it a telemetry name.
    world_allow = cnp("to-world", WEB + '  egress:\n  - toCIDR: [0.0.0.0/0]\n')
    attributor, _check = alarm(FQDN_DENY, world_allow)
    text = _explain(attributor, syn())
    assert "decision: allowed" in text and "the FQDN deny cnp shop/block" in text


@pytest.mark.parametrize("event", [
    pytest.param(syn(port=8443), id="another-port"),
    pytest.param(syn(names=["api.stripe.com"]), id="hubble-named-it"),
    pytest.param(syn(is_reply=True), id="a-reply"),
    pytest.param(syn(src=OTHER_APP), id="not-selected"),
])
def test_explain_says_nothing_of_it_otherwise(alarm, event):
    attributor, _check = alarm(FQDN_DENY, FQDN_ALLOW)
    assert "cannot know its name" not in _explain(attributor, event)


def test_explain_after_a_dns_answer_shows_the_answer(alarm):
    attributor, _check = alarm(FQDN_DENY, FQDN_ALLOW)
    attributor.observe(dns_answer(APP, "api.stripe.com", [HIDDEN], time=_at(5)))
    text = _explain(attributor, syn())
    assert "cannot know its name" not in text and "resolved api.stripe.com" in text
