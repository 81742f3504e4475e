"""Validation against the bundled Cilium 1.18 CRD schemas, with Go (RE2) pattern semantics."""

from __future__ import annotations

import pytest

from hushflow.policy.schema import validate_object


def cnp(spec):
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p"}, "spec": spec}


def problems(spec):
    return [(".".join(map(str, p.path)), p.message) for p in validate_object(cnp(spec), "cilium.io/v2",
                                                                               "CiliumNetworkPolicy")]


def test_valid_policy_has_no_problems():
    assert problems({"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]}) == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("plain-text 123", True),
        ("ünïcödé ✓", True),  # \PC: printable in any script
        ("tab\there", False),  # Cc
        ("zero\u200bwidth", False),  # Cf
        ("bell\x07", False),
    ],
)
def test_log_value_uses_go_printable_class(value, valid):
    spec = {"endpointSelector": {}, "egress": [{"toEntities": ["world"]}], "log": {"value": value}}
    assert (problems(spec) == []) is valid


def test_unknown_field_is_named_with_allowed_fields():
    (problem,) = validate_object(
        cnp({"endpointSelector": {}, "egressDeny": [{"toFQDNs": [{"matchName": "a.com"}]}]}),
        "cilium.io/v2",
        "CiliumNetworkPolicy",
    )
    assert problem.path == ("spec", "egressDeny", 0, "toFQDNs")
    assert problem.message == 'unknown field "toFQDNs"'
    assert "toCIDRSet" in problem.hint


def test_integer_port_gets_a_quoting_hint():
    (problem,) = validate_object(
        cnp({"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [{"port": 443}]}]}]}),
        "cilium.io/v2",
        "CiliumNetworkPolicy",
    )
    assert problem.message == "must be a string, not an integer"
    assert problem.hint == 'quote it: "443"'


def test_both_selectors_are_rejected():
    found = problems({"endpointSelector": {}, "nodeSelector": {}, "ingress": [{}]})
    assert found == [("spec", "endpointSelector and nodeSelector cannot be used together")]


def test_cidr_format_requires_a_prefix():
    found = problems({"endpointSelector": {}, "egress": [{"toCIDRSet": [{"cidr": "10.0.0.1"}]}]})
    assert found == [("spec.egress.0.toCIDRSet.0.cidr", "'10.0.0.1' is not a valid cidr")]


def test_pathological_pattern_input_is_fast():
    # RE2 never backtracks: Python's re would take exponential time on this matchName.
    name = "a" * 5000 + "!"
    found = problems({"endpointSelector": {}, "egress": [{"toFQDNs": [{"matchName": name}]}]})
    assert len(found) == 2  # the pattern and the 255-character limit


def test_cidr_group_schema():
    group = {"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": {"name": "g"},
             "spec": {"externalCIDRs": ["192.0.2.0/24", "2001:db8::/32"]}}
    assert validate_object(group, "cilium.io/v2", "CiliumCIDRGroup") == []
    group["spec"] = {}
    (problem,) = validate_object(group, "cilium.io/v2", "CiliumCIDRGroup")
    assert problem.message == 'missing required field "externalCIDRs"'
