"""The party a deny targets runs the DNS hushflow learns from: some addresses are never denied."""

from __future__ import annotations

import pytest

from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.protect import ProtectedAddresses
from hushflow.enforce.state import DenyState
from hushflow.flow.dns import dns_answer_of
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions
from tests.enforce.test_compile import dns_flow, write

DENY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: block, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
  egressDeny:
  - toFQDNs: [{matchPattern: "*.telemetry.example.com"}]
"""


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.1.2.3", "reserved"),
        ("::ffff:169.254.169.254", "ipv4-in-ipv6"),
        ("::ffff:203.0.113.9", "ipv4-in-ipv6"),
        ("10.96.0.1", "protected"),  # a service IP
        ("172.16.5.4", "protected"),
        ("192.168.1.1", "protected"),
        ("100.64.0.1", "protected"),  # shared address space (CGNAT), common for pods
        ("fd00::1", "protected"),
        ("192.0.2.1", None),  # the documentation ranges stay deniable: examples and tests use them
        ("198.51.100.7", None),
        ("203.0.113.50", None),
        ("2001:db8::1", None),
        ("8.8.8.8", None),
        ("172.32.0.1", None),  # just outside 172.16.0.0/12
    ],
)
def test_the_default_refusals(ip, reason):
    assert ProtectedAddresses().refusal(ip) == reason


def test_protect_cidr_replaces_the_private_defaults_but_never_the_special_purpose_ranges():
    cluster = ProtectedAddresses.from_cidrs(["10.0.0.0/16", "fd12::/64", "203.0.113.7"])
    assert cluster.refusal("10.0.1.1") == "protected"
    assert cluster.refusal("203.0.113.7") == "protected"  # a bare address is a /32
    assert cluster.refusal("10.1.0.1") is None  # outside the cluster's ranges: deniable now
    assert cluster.refusal("192.168.1.1") is None
    assert cluster.refusal("169.254.169.254") == "link-local"
    assert ProtectedAddresses.from_cidrs([]).refusal("10.0.0.1") is None
    assert ProtectedAddresses.from_cidrs(None).refusal("10.0.0.1") == "protected"


def test_a_bad_cidr_is_named():
    with pytest.raises(ValueError, match=r"not a CIDR: '10\.0\.0\.0/33'"):
        ProtectedAddresses.from_cidrs(["10.0.0.0/33"])


def test_the_answering_dns_server_is_never_denied():
    assert ProtectedAddresses.from_cidrs([]).refusal("198.51.100.53", server_ip="198.51.100.53") == "dns-server"


def learner_for(tmp_path) -> tuple[DenyLearner, DenyState, str]:
    loaded = load_policies([str(write(tmp_path, DENY))], BuildOptions())
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    return DenyLearner(loaded.policy_set, [deny], state), state, deny.id


def test_a_hostile_answer_cannot_turn_the_deny_against_the_cluster(tmp_path):
    learner, state, deny_id = learner_for(tmp_path)
    hostile = dns_flow("x.telemetry.example.com", [
        "169.254.169.254", "127.0.0.1", "10.96.0.10", "not-an-ip", "fe80::1%eth0", "203.0.113.9",
    ])["flow"]
    hostile["IP"] = {"source": "10.96.0.10", "destination": "10.0.1.5"}
    answer = dns_answer_of(hostile)
    assert answer is not None
    changes = learner.learn_answer(answer, 1.0)
    assert [change.ip for change in changes] == ["203.0.113.9"]
    assert state.ips(deny_id) == ["203.0.113.9"]
    assert learner.stats.refused == {"link-local": 1, "loopback": 1, "dns-server": 1}
    assert learner.stats.rejected == {"dns-ip-invalid": 1, "dns-ip-with-zone": 1}
    assert any("refused to deny 169.254.169.254 for x.telemetry.example.com" in note for note in learner.stats.notes)


def test_resolver_answers_are_validated_and_guarded_too(tmp_path):
    loaded = load_policies([str(write(tmp_path, DENY.replace('matchPattern: "*.telemetry.example.com"',
                                                            "matchName: beacon.telemetry.example.com")))],
                           BuildOptions())
    (deny,) = fqdn_denies(loaded.policy_set)
    state = DenyState()
    learner = DenyLearner(loaded.policy_set, [deny], state)
    changes = learner.learn_resolved("beacon.telemetry.example.com",
                                     ["192.0.2.10", "127.0.0.1", "bogus", "2001:DB8::1"], float("inf"), 1.0)
    assert sorted(change.ip for change in changes) == ["192.0.2.10", "2001:db8::1"]
    assert {change.ttl for change in changes} == {86_400.0}  # an infinite TTL is clamped
    assert learner.stats.refused == {"loopback": 1} and learner.stats.rejected == {"dns-ip-invalid": 1}
