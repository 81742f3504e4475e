"""Fuzz: `hubble observe` filter flags (filter/pflag.py, filter/flags.py, filter/rawfilters.py).

Property: any argument list gives FlowFilters or a `FlagError` (the message observe prints as a
usage error); the FlowFilters print (`--print-raw-filters`) and compile into a predicate or a
`FilterError`. The predicate answers a bool for recorded flows and for any valid flow (mutated
recorded flows protojson accepts, in their canonical form); on an odd flow the reader hands out
it answers or raises one of `FLOW_SHAPE_ERRORS` (what observe's FlowGuard counts as a bad line).
Its line pre-check is a necessary condition: it never rejects a canonical line the predicate
keeps.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from hypothesis import strategies as st

from hushflow.filter import FilterError, compile_filters
from hushflow.filter.flags import FILTER_FLAGS, RAW_FILTER_FLAGS, build_flow_filters
from hushflow.filter.pflag import FlagError
from hushflow.filter.rawfilters import format_raw_filters
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS, EventNormalizer, ProtoJSONError, encode_event
from hushflow.flow.reader import events_from_bytes
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import dumps, mutated_json, sample_golden_lines

_SPECS = FILTER_FLAGS + RAW_FILTER_FLAGS
_VALUES = (
    # addresses, ports, numbers
    "10.0.0.1", "10.0.0.0/8", "10.0.0.0/33", "2001:db8::1", "2001:db8::/129", "fe80::1%eth0", "::ffff:1.2.3.4",
    "300.1.1.1", "0.0.0.0/0", "1.2.3.4/-1", "53", "0", "65535", "65536", "-1", "0x35", "1_0", "99999999999999999999",
    # names, pods, workloads, labels
    "default/", "kube-system/coredns", "/", "a/b/c", "Deployment/api", "StatefulSet/", "/x", "k8s:app=web",
    "tier in (db,cache)", "!pci", "app notin ()", "a=b,c!=d", "=", "(", "k8s:", "reserved:world", "a" * 300,
    # enums
    "DROPPED", "dropped", "FORWARDED", "VERDICT_UNKNOWN", "POLICY_DENIED", "", "ingress", "EGRESS", "v4", "v6", "none",
    "drop", "trace:to-endpoint", "trace:bogus", "policy-verdict", "agent:agent-started", "1:2", "999:999", "l7",
    "tcp", "udp", "icmpv6", "dns", "kafka", "SYN,ACK", "SYN,", "syn", "world", "host", "99999999999", "-5",
    # patterns and HTTP
    "*.example.com", "**", "*", "a*b*c*d*e*f*g*h*i*j", "ip-10-*", "prod-eu1/", "5+", "40+", "404", "600", "+",
    "GET", "/api/.*", "[", "(?P<x>", "a{1000000}", "X-Key:value", "nocolon", ":",
    # CEL and raw filters
    "_flow.verdict == Verdict.DROPPED", "'tag' in _flow.policy_log", "_flow.verdict", "((", "1 / 0 == 1",
    '{"verdict":["DROPPED"]}', '{"source_pod":["default/"]}{"destination_ip":["10.0.0.0/8"]}', "{", "[]", "null",
    '{"bogus":1}', '{"sourcePod":["x"]}', '{"source_port":["99999"]}', '{"experimental":{"cel_expression":["x"]}}',
    '{"tcp_flags":[{"SYN":true}]}', '{"http_status_code":["abc"]}', '{"event_type":[{"type":"x"}]}',
    "true", "false", "t", "0", "1",
)
values = st.one_of(st.sampled_from(_VALUES), st.text(max_size=16))


@st.composite
def argument(draw: st.DrawFn) -> list[str]:
    spec = draw(st.sampled_from(_SPECS))
    form = draw(st.integers(0, 9))
    if form == 0 and spec.shorthand:
        return [f"-{spec.shorthand}", draw(values)]
    if form == 1 and spec.shorthand:
        return [f"-{spec.shorthand}{draw(values)}"]
    if form == 2 and spec.shorthand:
        return [f"-{spec.shorthand}={draw(values)}"]
    if form == 3:
        return [f"--{spec.name}={draw(values)}"]
    if form == 4:  # odd tokens
        return [draw(st.sampled_from(["--", "-", "---x", "--=x", "-46A", "-4A6", "-é", "--unknown", "positional",
                                      "-A=", "--not", "--not=false", "-n"]))]
    if spec.no_opt_default is not None:
        return [f"--{spec.name}"]
    return [f"--{spec.name}", draw(values)]


arguments = st.lists(argument(), max_size=6).map(lambda parts: [token for part in parts for token in part])


@cache
def _events() -> tuple[tuple[bytes, Any], ...]:
    return tuple((line, orjson.loads(line)) for line in sample_golden_lines(40))


@fuzz_target(arguments, st.lists(st.sampled_from(range(40)), max_size=2).flatmap(
    lambda picks: st.tuples(*(mutated_json(_events()[i][1]) for i in picks))), ci_examples=500)
def test_fuzz_filter_flags(argv: list[str], odd_events: tuple[Any, ...]) -> None:
    """Flags → FlowFilters or FlagError → predicate or FilterError → a bool per flow."""
    try:
        filters = build_flow_filters(argv)
    except FlagError as exc:
        assert str(exc), argv
        note("usage error")
        return
    format_raw_filters(filters)
    try:
        compiled = compile_filters(list(filters.allowlist), list(filters.denylist))
    except FilterError as exc:
        assert str(exc)
        note("filter error")
        return
    note("compiled")
    for line, event in _events():
        keep = compiled.matches(event)
        assert isinstance(keep, bool), (argv, keep)
        if keep:
            assert compiled.line_may_match(line), (argv, line[:300])
    for odd in odd_events:
        check_odd_event(compiled, odd, argv)


def check_odd_event(compiled: Any, odd: Any, context: Any) -> None:
    """An odd event as the reader hands it out: a bool or a shape error; in its canonical form
    (when it is valid protojson): a bool, and the line pre-check lets its line through."""
    for event in events_from_bytes(dumps(odd)):
        try:
            assert isinstance(compiled.matches(event.data), bool)
        except FLOW_SHAPE_ERRORS:
            note("odd flow: shape error")
        try:
            canonical = EventNormalizer().normalize(event.data).event
        except ProtoJSONError:
            continue
        keep = compiled.matches(canonical)
        assert isinstance(keep, bool)
        note("valid odd flow")
        if keep:
            line = encode_event(canonical)
            assert compiled.line_may_match(line), (context, line[:300])
