"""Invalid filters raise FilterError with Hubble's message (one row per rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hushflow.filter import FilterError, compile_filters

ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown protocol", {"protocol": ["quic"]}, 'invalid protocol filter: unknown protocol: "quic"'),
    ("ipv4 octet out of range", {"source_ip": ["10.0.0.300"]},
     'invalid IP address "10.0.0.300" in filter: ParseAddr("10.0.0.300"): IPv4 field has value >255'),
    ("ipv4 too short", {"destination_ip": ["10.0.0"]},
     'invalid IP address "10.0.0" in filter: ParseAddr("10.0.0"): IPv4 address too short'),
    ("ipv4 leading zero", {"source_ip": ["10.0.0.01"]},
     'invalid IP address "10.0.0.01" in filter: ParseAddr("10.0.0.01"): IPv4 field has octet with leading zero'),
    ("ipv4 empty field", {"source_ip": ["10..0.1"]},
     'invalid IP address "10..0.1" in filter: ParseAddr("10..0.1"): IPv4 field must have at least one digit (at ".0.1")'),
    ("not an address", {"source_ip": ["host"]}, 'invalid IP address "host" in filter: ParseAddr("host"): unable to parse IP'),
    ("ipv6 double ellipsis", {"source_ip": ["::1::"]},
     'invalid IP address "::1::" in filter: ParseAddr("::1::"): multiple :: in address (at ":")'),
    ("cidr bits out of range", {"source_ip": ["10.0.0.0/33"]},
     'invalid CIDR "10.0.0.0/33" in filter: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range'),
    ("node name with two slashes", {"node_name": ["a/b/c"]}, "too many slashes in pattern"),
    ("empty node name", {"node_name": [""]}, "empty pattern"),
    ("fqdn bad rune", {"destination_fqdn": ["a$b.com"]}, "'$': invalid rune in pattern"),
    ("fqdn two trailing dots", {"source_fqdn": ["a.com.."]}, "multiple trailing dots in pattern"),
    ("fqdn empty", {"source_fqdn": [" . "]}, "empty pattern"),
    ("bad dns regex", {"dns_query": ["("]}, "invalid DNS query filter: failed to compile regexp: error parsing regexp: missing ): `(`"),
    # Go's regexp is RE2: no lookaround, although Python's re would accept it.
    ("lookbehind is not RE2", {"dns_query": ["(?<=a)b"]},
     "invalid DNS query filter: failed to compile regexp: error parsing regexp: invalid perl operator: `(?<=`"),
    ("empty pod", {"source_pod": [""]}, 'invalid filter, must be [namespace/][<name>], got ""'),
    ("empty service", {"destination_service": [""]},
     'invalid destination service filter: invalid filter, must be [namespace/][<name>], got ""'),
    ("bad port", {"source_port": ["http"]},
     'invalid source port filter: invalid port "http": strconv.ParseUint: parsing "http": invalid syntax'),
    ("port out of range", {"destination_port": ["70000"]},
     'invalid destination port filter: invalid port "70000": strconv.ParseUint: parsing "70000": value out of range'),
    ("bad http status", {"http_status_code": ["600"]}, 'invalid http status code filter: invalid status code prefix: "600"'),
    ("http status needs l7 event type", {"http_status_code": ["200"], "event_type": [{"type": 4}]},
     "filtering by http status code requires the event type filter to only match 'l7' events"),
    ("http method needs l7 event type", {"http_method": ["GET"], "event_type": [{"type": 1}]},
     "filtering by http method requires the event type filter to only match 'l7' events"),
    ("empty cluster name", {"source_cluster_name": [""]}, "invalid filter, name must not be empty"),
    ("unknown field", {"source_pods": ["a"]}, 'invalid FlowFilter: proto: unknown field "source_pods"'),
    ("bad label selector", {"source_label": ["app=a b"]},
     "invalid source label filter: found 'b', expected: ',' or 'end of string'"),
    ("cel list method", {"experimental": {"cel_expression": ["_flow.policy_log.endsWith('x')"]}},
     "error compiling CEL expression: ERROR: <input>:1:26: found no matching overload for 'endsWith' applied to"
     " 'list(string).(string)'\n | _flow.policy_log.endsWith('x')\n | .........................^"),
    ("cel undefined field", {"experimental": {"cel_expression": ["_flow.nonexistent_field == 1"]}},
     "error compiling CEL expression: ERROR: <input>:1:6: undefined field 'nonexistent_field'\n"
     " | _flow.nonexistent_field == 1\n | .....^"),
]


@pytest.mark.parametrize(("flt", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_invalid_filter_message(flt: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters([flt], [])
    assert str(info.value) == message


def test_denylist_is_validated_too() -> None:
    with pytest.raises(FilterError):
        compile_filters([], [{"protocol": ["quic"]}])


GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden" / "cases.json"
# error_cases whose message comes from the filter package (the others are flag-parsing errors).
FILTER_ERRORS = {
    "--protocol": lambda v: {"protocol": [v]},
    "--from-ip": lambda v: {"source_ip": [v]},
    "--node-name": lambda v: {"node_name": [v]},
    "--cel-expression": lambda v: {"experimental": {"cel_expression": [v]}},
}


def test_hubble_recorded_filter_errors() -> None:
    cases = [c for c in json.loads(GOLDEN.read_text())["error_cases"]
             if len(c["args"]) == 2 and c["args"][0] in FILTER_ERRORS]
    assert len(cases) == 5
    for case in cases:
        flag, value = case["args"]
        with pytest.raises(FilterError) as info:
            compile_filters([FILTER_ERRORS[flag](value)], [])
        assert str(info.value) == case["stderr"]
