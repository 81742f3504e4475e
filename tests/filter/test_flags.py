"""`hubble observe` flags → FlowFilters: every flag, every conflict, pflag syntax, raw filters."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from hushflow.filter.flags import CONFLICT_GROUPS, FILTER_FLAGS, FLOW_FILTER_FIELDS, build_flow_filters
from hushflow.filter.pflag import FlagError
from hushflow.filter.rawfilters import format_raw_filters

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden"
CASES = json.loads((GOLDEN / "cases.json").read_text())

# Request flags (not filters) that appear in the golden cases, with their value.
_REQUEST_FLAGS = {"--since", "--until", "--first", "--last"}


def _filter_args(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _REQUEST_FLAGS:
            skip = True
        else:
            out.append(arg)
    return out


def _filters(argv: list[str]) -> tuple[list[Any], list[Any]]:
    built = build_flow_filters(argv)
    return list(built.allowlist), list(built.denylist)


# --- golden: what hubble 1.19.4 --print-raw-filters printed -----------------------------------


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda case: " ".join(case["args"]))
def test_print_raw_filters_matches_hubble(case: dict[str, Any]) -> None:
    expected = case["print_raw_filters"]
    if expected["exit_code"] != 0:
        with pytest.raises(FlagError) as error:
            build_flow_filters(_filter_args(case["args"]))
        assert str(error.value) == expected["stderr_first_line"]
        return
    assert format_raw_filters(build_flow_filters(_filter_args(case["args"]))) == expected["stdout"]


# --- every flag -----------------------------------------------------------------------------

FLAG_ROWS: list[tuple[str, list[str], list[dict[str, Any]], list[dict[str, Any]]]] = [
    # (behaviour, argv, allowlist, denylist)
    ("verdict", ["--verdict", "DROPPED"], [{"verdict": ["DROPPED"]}], []),
    ("verdict repeated is OR", ["--verdict", "DROPPED", "--verdict", "AUDIT"], [{"verdict": ["DROPPED", "AUDIT"]}], []),
    ("verdict unknown name accepted by Hubble", ["--verdict", "VERDICT_UNKNOWN"], [{"verdict": ["VERDICT_UNKNOWN"]}], []),
    ("drop reason", ["--drop-reason-desc", "POLICY_DENIED"], [{"drop_reason_desc": ["POLICY_DENIED"]}], []),
    ("type by name", ["--type", "drop"], [{"event_type": [{"type": 1}]}], []),
    ("type short flag", ["-t", "policy-verdict"], [{"event_type": [{"type": 5}]}], []),
    ("type glued short", ["-tl7"], [{"event_type": [{"type": 129}]}], []),
    ("type number", ["--type", "129"], [{"event_type": [{"type": 129}]}], []),
    ("type zero prints empty", ["--type", "0"], [{"event_type": [{}]}], []),
    ("trace sub-type zero", ["--type", "trace:to-endpoint"], [{"event_type": [{"type": 4, "match_sub_type": True}]}], []),
    ("trace sub-type by name", ["-t", "trace:from-network"],
     [{"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 10}]}], []),
    ("trace sub-type number", ["-t", "trace:3"], [{"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 3}]}],
     []),
    ("numeric type takes numeric sub-type", ["-t", "4:3"],
     [{"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 3}]}], []),
    ("agent sub-type", ["-t", "agent:policy-updated"],
     [{"event_type": [{"type": 130, "match_sub_type": True, "sub_type": 3}]}], []),
    ("type repeated", ["-t", "drop", "-t", "l7"], [{"event_type": [{"type": 1}, {"type": 129}]}], []),
    ("protocol kept as typed", ["--protocol", "TCP"], [{"protocol": ["TCP"]}], []),
    ("tcp flags any case, proto order", ["--tcp-flags", "ack,syn"], [{"tcp_flags": [{"SYN": True, "ACK": True}]}], []),
    ("tcp flags repeated", ["--tcp-flags", "FIN", "--tcp-flags", "NS"], [{"tcp_flags": [{"FIN": True}, {"NS": True}]}],
     []),
    ("traffic direction any case", ["--traffic-direction", "Egress"], [{"traffic_direction": ["EGRESS"]}], []),
    ("uuid", ["--uuid", "u-1"], [{"uuid": ["u-1"]}], []),
    ("from-ip", ["--from-ip", "10.0.0.1"], [{"source_ip": ["10.0.0.1"]}], []),
    ("to-ip", ["--to-ip", "10.0.0.0/8"], [{"destination_ip": ["10.0.0.0/8"]}], []),
    ("ip is two-sided", ["--ip", "1.1.1.1"], [{"source_ip": ["1.1.1.1"]}, {"destination_ip": ["1.1.1.1"]}], []),
    ("snat-ip", ["--snat-ip", "192.0.2.1"], [{"source_ip_xlated": ["192.0.2.1"]}], []),
    ("-4", ["-4"], [{"ip_version": ["IPv4"]}], []),
    ("--ipv6", ["--ipv6"], [{"ip_version": ["IPv6"]}], []),
    ("-4 -6 grouped", ["-46"], [{"ip_version": ["IPv4", "IPv6"]}], []),
    ("ip-version v6", ["--ip-version", "v6"], [{"ip_version": ["IPv6"]}], []),
    ("ip-version anything else is non-IP", ["--ip-version", "none"], [{"ip_version": ["IP_NOT_USED"]}], []),
    ("from-pod", ["--from-pod", "frontend/web"], [{"source_pod": ["frontend/web"]}], []),
    ("to-pod", ["--to-pod", "web"], [{"destination_pod": ["web"]}], []),
    ("pod is two-sided", ["--pod", "a/b"], [{"source_pod": ["a/b"]}, {"destination_pod": ["a/b"]}], []),
    ("pod and verdict: both sides carry the verdict", ["--pod", "foo", "--verdict", "DROPPED"],
     [{"source_pod": ["foo"], "verdict": ["DROPPED"]}, {"destination_pod": ["foo"], "verdict": ["DROPPED"]}], []),
    ("namespace", ["-n", "kube-system"], [{"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}], []),
    ("namespace glued", ["-nkube-system"], [{"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}],
     []),
    ("namespace with =", ["-n=ns"], [{"source_pod": ["ns/"]}, {"destination_pod": ["ns/"]}], []),
    ("namespace prefixes a pod without one", ["-n", "ns", "--pod", "web"],
     [{"source_pod": ["ns/web"]}, {"destination_pod": ["ns/web"]}], []),
    ("namespace prefixes services", ["-n", "ns", "--service", "api"],
     [{"source_service": ["ns/api"]}, {"destination_service": ["ns/api"]}], []),
    ("namespaces repeated multiply pods", ["-n", "a", "-n", "b", "--pod", "web"],
     [{"source_pod": ["a/web", "b/web"]}, {"destination_pod": ["a/web", "b/web"]}], []),
    ("from-namespace", ["--from-namespace", "frontend"], [{"source_pod": ["frontend/"]}], []),
    ("to-namespace with from-pod", ["--to-namespace", "db", "--from-pod", "web"],
     [{"source_pod": ["web"], "destination_pod": ["db/"]}], []),
    ("all namespaces", ["-A"], [{"source_pod": ["/"]}, {"destination_pod": ["/"]}], []),
    ("from-all-namespaces", ["--from-all-namespaces"], [{"source_pod": ["/"]}], []),
    ("to-all-namespaces", ["--to-all-namespaces"], [{"destination_pod": ["/"]}], []),
    ("label -l", ["-l", "app=web"], [{"source_label": ["app=web"]}, {"destination_label": ["app=web"]}], []),
    ("from-label", ["--from-label", "k8s:app=web"], [{"source_label": ["k8s:app=web"]}], []),
    ("to-label", ["--to-label", "!pci"], [{"destination_label": ["!pci"]}], []),
    ("service", ["--service", "kube-system/kube-dns"],
     [{"source_service": ["kube-system/kube-dns"]}, {"destination_service": ["kube-system/kube-dns"]}], []),
    ("from-service", ["--from-service", "a/b"], [{"source_service": ["a/b"]}], []),
    ("to-service", ["--to-service", "a/b"], [{"destination_service": ["a/b"]}], []),
    ("fqdn", ["--fqdn", "*.example.com"],
     [{"source_fqdn": ["*.example.com"]}, {"destination_fqdn": ["*.example.com"]}], []),
    ("from-fqdn", ["--from-fqdn", "a.com"], [{"source_fqdn": ["a.com"]}], []),
    ("to-fqdn", ["--to-fqdn", "a.com"], [{"destination_fqdn": ["a.com"]}], []),
    ("port", ["--port", "53"], [{"source_port": ["53"]}, {"destination_port": ["53"]}], []),
    ("from-port", ["--from-port", "53"], [{"source_port": ["53"]}], []),
    ("to-port repeated", ["--to-port", "80", "--to-port", "443"], [{"destination_port": ["80", "443"]}], []),
    ("identity reserved name", ["--identity", "world"], [{"source_identity": [2]}, {"destination_identity": [2]}], []),
    ("from-identity number", ["--from-identity", "12345"], [{"source_identity": [12345]}], []),
    ("to-identity hex like Go", ["--to-identity", "0x10"], [{"destination_identity": [16]}], []),
    ("to-identity world-ipv6", ["--to-identity", "world-ipv6"], [{"destination_identity": [10]}], []),
    ("workload name", ["--workload", "coredns"],
     [{"source_workload": [{"name": "coredns"}]}, {"destination_workload": [{"name": "coredns"}]}], []),
    ("from-workload kind only", ["--from-workload", "StatefulSet/"], [{"source_workload": [{"kind": "StatefulSet"}]}],
     []),
    ("to-workload kind and name", ["--to-workload", "Deployment/api"],
     [{"destination_workload": [{"name": "api", "kind": "Deployment"}]}], []),
    ("cluster", ["--cluster", "c1"], [{"source_cluster_name": ["c1"]}, {"destination_cluster_name": ["c1"]}], []),
    ("from-cluster", ["--from-cluster", "c1"], [{"source_cluster_name": ["c1"]}], []),
    ("to-cluster", ["--to-cluster", "c1"], [{"destination_cluster_name": ["c1"]}], []),
    ("node-name", ["--node-name", "prod/ip-*"], [{"node_name": ["prod/ip-*"]}], []),
    ("node-label", ["--node-label", "zone=a"], [{"node_labels": ["zone=a"]}], []),
    ("http-status", ["--http-status", "5+"], [{"http_status_code": ["5+"]}], []),
    ("http-method", ["--http-method", "get"], [{"http_method": ["get"]}], []),
    ("http-path", ["--http-path", "/api/.*"], [{"http_path": ["/api/.*"]}], []),
    ("http-url", ["--http-url", "https://x"], [{"http_url": ["https://x"]}], []),
    ("http-header splits at first colon", ["--http-header", "x-a:b:c"],
     [{"http_header": [{"key": "x-a", "value": "b:c"}]}], []),
    ("trace-id", ["--trace-id", "abc"], [{"trace_id": ["abc"]}], []),
    ("ip-trace-id is a uint64 string", ["--ip-trace-id", "007"], [{"ip_trace_id": ["7"]}], []),
    ("interface", ["--interface", "eth0"], [{"interface": [{"name": "eth0"}]}], []),
    ("encrypted", ["--encrypted"], [{"encrypted": [True]}], []),
    ("unencrypted", ["--unencrypted"], [{"encrypted": [False]}], []),
    ("cel", ["--cel-expression", "true"], [{"experimental": {"cel_expression": ["true"]}}], []),
    # --not
    ("not sends the next flag to the denylist", ["--not", "--verdict", "DROPPED"], [], [{"verdict": ["DROPPED"]}]),
    ("not applies to one flag only", ["--not", "--verdict", "DROPPED", "--verdict", "AUDIT"],
     [{"verdict": ["AUDIT"]}], [{"verdict": ["DROPPED"]}]),
    ("all negated flags share one filter", ["--not", "--http-method", "put", "--not", "--to-namespace", "foo"],
     [], [{"destination_pod": ["foo/"], "http_method": ["put"]}]),
    ("negated repeats OR inside the filter", ["--not", "--verdict", "DROPPED", "--not", "--verdict", "AUDIT"],
     [], [{"verdict": ["DROPPED", "AUDIT"]}]),
    ("negated two-sided flag gives two deny filters", ["--not", "--pod", "foo"],
     [], [{"source_pod": ["foo"]}, {"destination_pod": ["foo"]}]),
    ("--not=anything still negates", ["--not=false", "--verdict", "DROPPED"], [], [{"verdict": ["DROPPED"]}]),
    ("conflicts are per tracker", ["--from-ip", "1.1.1.1", "--not", "-n", "x"],
     [{"source_ip": ["1.1.1.1"]}], [{"source_pod": ["x/"]}, {"destination_pod": ["x/"]}]),
    # pflag syntax
    ("--flag=value", ["--verdict=DROPPED"], [{"verdict": ["DROPPED"]}], []),
    ("a value may start with a dash", ["--http-path", "-x"], [{"http_path": ["-x"]}], []),
    ("value with =", ["--label=app=web"], [{"source_label": ["app=web"]}, {"destination_label": ["app=web"]}], []),
    # raw filters come after the flag-built ones
    ("raw allowlist appended", ["--allowlist", '{"verdict":["AUDIT"]}', "--verdict", "DROPPED"],
     [{"verdict": ["DROPPED"]}, {"verdict": ["AUDIT"]}], []),
    ("raw JSON stream", ["--denylist", '{"uuid":["a"]} {"uuid":["b"]}\n'], [], [{"uuid": ["a"]}, {"uuid": ["b"]}]),
    ("raw JSON names and enum numbers", ["--allowlist", '{"eventType":[{"type":5}],"verdict":[2],"ipTraceId":[9]}'],
     [{"verdict": ["DROPPED"], "event_type": [{"type": 5}], "ip_trace_id": ["9"]}], []),
    ("empty raw value adds nothing", ["--allowlist", ""], [], []),
]


@pytest.mark.parametrize(("argv", "allow", "deny"), [row[1:] for row in FLAG_ROWS], ids=[row[0] for row in FLAG_ROWS])
def test_flag_builds_flow_filters(argv: list[str], allow: list[Any], deny: list[Any]) -> None:
    assert _filters(argv) == (allow, deny)


def test_key_order_is_flow_proto_declaration_order() -> None:
    built = build_flow_filters(["--cel-expression", "x", "-4", "--verdict", "AUDIT", "--traffic-direction", "ingress",
                                "--uuid", "u"])
    assert list(built.allowlist[0]) == ["uuid", "traffic_direction", "verdict", "ip_version", "experimental"]


def test_field_order_table_matches_hushflow_proto() -> None:
    flow_pb2 = pytest.importorskip("hushflow.proto.flow_pb2")
    assert tuple(f.name for f in flow_pb2.FlowFilter.DESCRIPTOR.fields) == FLOW_FILTER_FIELDS


def test_every_filter_flag_is_handled() -> None:
    for spec in FILTER_FLAGS:
        if spec.name == "not":
            continue
        value = spec.no_opt_default or {
            "verdict": "DROPPED", "drop-reason-desc": "POLICY_DENIED", "type": "drop", "tcp-flags": "SYN",
            "traffic-direction": "ingress", "ip-trace-id": "1", "http-header": "a:b",
        }.get(spec.name, "1")
        allow, _deny = _filters([f"--{spec.name}={value}"])
        assert allow, spec.name


# --- errors, word for word -------------------------------------------------------------------

ERROR_ROWS: list[tuple[str, list[str], str]] = [
    ("verdict must be upper case", ["--verdict", "dropped"],
     'invalid argument "dropped" for "--verdict" flag: invalid --verdict value: dropped'),
    ("drop reason unknown", ["--drop-reason-desc", "NOPE"],
     'invalid argument "NOPE" for "--drop-reason-desc" flag: invalid --drop-reason-desc value: NOPE'),
    ("drop reason empty", ["--drop-reason-desc", ""],
     'invalid argument "" for "--drop-reason-desc" flag: empty --drop-reason-desc value'),
    ("type unknown", ["-t", "bogus"],
     'invalid argument "bogus" for "-t, --type" flag: unable to parse type \'bogus\', not a known type name and '
     'unable to parse as numeric value: strconv.ParseUint: parsing "bogus": invalid syntax'),
    ("numeric type has no sub-type names", ["-t", "4:to-stack"],
     'invalid argument "4:to-stack" for "-t, --type" flag: unable to parse event sub-type \'to-stack\', not a known '
     'sub-type name and unable to parse as numeric value: strconv.ParseUint: parsing "to-stack": invalid syntax'),
    ("type out of range", ["-t", "4294967296"],
     'invalid argument "4294967296" for "-t, --type" flag: unable to parse type \'4294967296\', not a known type name '
     'and unable to parse as numeric value: strconv.ParseUint: parsing "4294967296": value out of range'),
    ("tcp flag unknown", ["--tcp-flags", "SYN,syns"],
     'invalid argument "SYN,syns" for "--tcp-flags" flag: unknown tcp flag: syns'),
    ("traffic direction", ["--traffic-direction", "Sideways"],
     'invalid argument "Sideways" for "--traffic-direction" flag: sideways: invalid traffic direction, expected '
     "ingress or egress"),
    ("identity", ["--to-identity", "moon"],
     'invalid argument "moon" for "--to-identity" flag: invalid security identity, expected one of [host world '
     "unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6] or a numeric value"),
    ("http header without colon", ["--http-header", "x"],
     'invalid argument "x" for "--http-header" flag: invalid http-header value "x", expected name:value'),
    ("ip trace id zero", ["--ip-trace-id", "0"],
     'invalid argument "0" for "--ip-trace-id" flag: invalid --ip-trace-id value; must be greater than 0'),
    ("ip trace id not a number", ["--ip-trace-id", "x"],
     'invalid argument "x" for "--ip-trace-id" flag: invalid --ip-trace-id value: strconv.ParseUint: parsing "x": '
     "invalid syntax"),
    ("consecutive --not", ["--not", "--not", "--verdict", "DROPPED"],
     'invalid argument "true" for "--not" flag: consecutive --not statements'),
    ("trailing --not", ["--verdict", "DROPPED", "--not"], "trailing --not found in the arguments"),
    ("namespace vs pod namespace", ["--pod", "x/y", "-n", "foo"],
     'invalid argument "foo" for "-n, --namespace" flag: namespace conflict: "foo" does not contain "x/y"'),
    ("from-namespace vs from-pod namespace", ["--from-namespace", "foo", "--from-pod", "bar/x"],
     'invalid argument "bar/x" for "--from-pod" flag: namespace conflict: "foo" does not contain "bar/x"'),
    ("service namespace vs pod namespace", ["--from-pod", "a/b", "--from-service", "c"],
     'invalid argument "c" for "--from-service" flag: namespace of service "c" conflict with pod "a"'),
    # pflag
    ("unknown flag", ["--reply"], "unknown flag: --reply"),
    ("unknown flag with value", ["--reply=true"], "unknown flag: --reply"),
    ("unknown shorthand", ["-x"], "unknown shorthand flag: 'x' in -x"),
    ("unknown shorthand after a known one", ["-4x"], "unknown shorthand flag: 'x' in -x"),
    ("non-ASCII shorthand quoted like pflag", ["-é"], "unknown shorthand flag: 'Ã' in -é"),
    ("missing value", ["--verdict"], "flag needs an argument: --verdict"),
    ("missing short value", ["-n"], "flag needs an argument: 'n' in -n"),
    ("bad syntax", ["---x"], "bad flag syntax: ---x"),
    ("positional argument", ["flows.json"], 'unexpected argument "flows.json"'),
    ("everything after -- is positional", ["--", "--verdict", "DROPPED"], 'unexpected argument "--verdict"'),
    ("raw filter not JSON", ["--allowlist", "{"], "invalid --allowlist flag: failed to decode '{': "),
    ("raw filter unknown field", ["--denylist", '{"nope":1}'], "invalid --denylist flag: failed to decode "),
]


@pytest.mark.parametrize(("argv", "message"), [row[1:] for row in ERROR_ROWS], ids=[row[0] for row in ERROR_ROWS])
def test_flag_errors_read_like_hubble(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as error:
        build_flow_filters(argv)
    if message.endswith(": ") or message.endswith("decode "):
        assert str(error.value).startswith(message)
    else:
        assert str(error.value) == message


CONFLICT_ROWS = [
    (["--from-ip", "1.1.1.1", "-n", "x"], 'invalid argument "x" for "-n, --namespace" flag: '
     "filters --from-ip and --namespace cannot be combined"),
    (["-n", "x", "--from-namespace", "y"], 'invalid argument "y" for "--from-namespace" flag: '
     "filters --from-namespace and --namespace cannot be combined"),
    (["--fqdn", "a", "--to-pod", "b"], 'invalid argument "b" for "--to-pod" flag: '
     "filters --fqdn and --to-pod cannot be combined"),
    (["-A", "--from-pod", "x"], 'invalid argument "x" for "--from-pod" flag: '
     "filters --from-pod and --all-namespaces cannot be combined"),
    (["-n", "a", "--to-service", "s"], 'invalid argument "s" for "--to-service" flag: '
     "filters --to-service and --namespace cannot be combined"),
    (["--label", "a", "--to-label", "b"], 'invalid argument "b" for "--to-label" flag: '
     "filters --label and --to-label cannot be combined"),
    (["--port", "1", "--from-port", "2"], 'invalid argument "2" for "--from-port" flag: '
     "filters --port and --from-port cannot be combined"),
    (["--identity", "1", "--to-identity", "2"], 'invalid argument "2" for "--to-identity" flag: '
     "filters --identity and --to-identity cannot be combined"),
    (["--workload", "a", "--from-workload", "b"], 'invalid argument "b" for "--from-workload" flag: '
     "filters --workload and --from-workload cannot be combined"),
    (["--service", "a", "--from-service", "b"], 'invalid argument "b" for "--from-service" flag: '
     "filters --service and --from-service cannot be combined"),
    (["--encrypted", "--unencrypted"], 'invalid argument "true" for "--unencrypted" flag: '
     "filters --encrypted and --unencrypted cannot be combined"),
    (["--not", "--to-ip", "1.1.1.1", "--not", "--to-fqdn", "x"], 'invalid argument "x" for "--to-fqdn" flag: '
     "filters --to-fqdn and --to-ip cannot be combined"),
]


@pytest.mark.parametrize(("argv", "message"), CONFLICT_ROWS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_conflicting_flags(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as error:
        build_flow_filters(argv)
    assert str(error.value) == message


@pytest.mark.parametrize("group", CONFLICT_GROUPS, ids=lambda group: ",".join(group))
def test_every_pair_of_a_conflict_group_is_rejected(group: tuple[str, ...]) -> None:
    values = {"from-all-namespaces": None, "to-all-namespaces": None, "all-namespaces": None,
              "encrypted": None, "unencrypted": None}
    for first, second in itertools.combinations(group, 2):
        argv = []
        for name in (first, second):
            argv += [f"--{name}"] if name in values else [f"--{name}", "1"]
        with pytest.raises(FlagError, match="cannot be combined"):
            build_flow_filters(argv)


def test_the_same_flag_twice_is_not_a_conflict() -> None:
    assert _filters(["-n", "a", "-n", "b"])[0] == [{"source_pod": ["a/", "b/"]}, {"destination_pod": ["a/", "b/"]}]
