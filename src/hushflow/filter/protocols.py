"""L4 and L7 filters: ``protocol``, ports, ``tcp_flags``, ``dns_query`` and the HTTP fields.

- ``protocol`` (case-insensitive): icmp (v4 or v6), icmpv4, icmpv6, tcp, udp, sctp, vrrp, igmp
  (L4) and dns, http, kafka (L7); anything else is an error.
- ports: decimal, TCP/UDP/SCTP only.
- ``tcp_flags``: at least one entry must have all of its set flags on the flow.
- ``dns_query``: unanchored regular expressions on ``l7.dns.query`` (trailing dot included).
- ``http_status_code``: ``404`` or a prefix ``4+`` / ``40+``; requests (code 0) never match.
- ``http_method`` (case-insensitive), ``http_path`` and ``http_url`` (unanchored regexes on the
  URL's decoded path / the whole URL), ``http_header`` (an exact key and value pair).
  Every HTTP field is rejected when the filter's ``event_type`` list cannot match L7 events.

Hubble compiles regexes with Go's RE2; Python's ``re`` accepts a superset of that syntax and
its error messages differ (both are documented limitations of hushflow).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

import re2

from hushflow.filter.field_filter import (
    COST_LOOKUP,
    COST_REGEX,
    COST_SCAN,
    COST_URL,
    FieldFilter,
    FilterError,
    FlowDict,
    Needles,
    json_safe,
)
from hushflow.filter.pflag import go_quote, parse_go_uint

L7_EVENT_TYPE = 129  # monitor MessageTypeAccessLog

_L4_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "icmp": ("ICMPv4", "ICMPv6"),
    "icmpv4": ("ICMPv4",),
    "icmpv6": ("ICMPv6",),
    "tcp": ("TCP",),
    "udp": ("UDP",),
    "sctp": ("SCTP",),
    "vrrp": ("VRRP",),
    "igmp": ("IGMP",),
})
_L7_KEYS: Mapping[str, str] = MappingProxyType({"dns": "dns", "http": "http", "kafka": "kafka"})
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def compile_protocol_filter(field: str, protocols: Sequence[str]) -> FieldFilter:
    l4: list[str] = []
    l7: list[str] = []
    for proto in protocols:
        low = proto.lower()
        if low in _L4_KEYS:
            l4.extend(_L4_KEYS[low])
        elif low in _L7_KEYS:
            l7.append(_L7_KEYS[low])
        else:
            raise FilterError(f"invalid protocol filter: unknown protocol: {go_quote(proto)}")
    l4_keys = tuple(dict.fromkeys(l4))
    l7_keys = tuple(dict.fromkeys(l7))

    def match(flow: FlowDict) -> bool:
        if l4_keys:
            layer4 = flow.get("l4")
            if layer4 is not None:
                for key in l4_keys:
                    if key in layer4:
                        return True
        if l7_keys:
            layer7 = flow.get("l7")
            if layer7 is not None:
                for key in l7_keys:
                    if key in layer7:
                        return True
        return False

    needles = tuple(f'"{k}":{{'.encode() for k in (*l4_keys, *l7_keys))
    return FieldFilter(field, match, COST_LOOKUP, (needles,))


def compile_port_filter(field: str, ports: Sequence[str], port_key: str) -> FieldFilter:
    """``port_key``: source_port or destination_port."""
    wanted: set[int] = set()
    side = "source" if port_key == "source_port" else "destination"
    for text in ports:
        try:
            wanted.add(parse_go_uint(text, 10, 16))
        except ValueError as err:
            raise FilterError(f"invalid {side} port filter: invalid port {go_quote(text)}: {err}") from None
    wanted_set = frozenset(wanted)

    def match(flow: FlowDict) -> bool:
        layer4 = flow.get("l4")
        if layer4 is None:
            return False
        for proto in _PORT_PROTOCOLS:
            body = layer4.get(proto)
            if body is not None:
                return body.get(port_key, 0) in wanted_set
        return False

    needles: Needles = ()
    if 0 not in wanted_set:
        needles = (tuple(f'"{port_key}":{p}'.encode() for p in sorted(wanted_set)),)
    return FieldFilter(field, match, COST_LOOKUP, needles)


def compile_tcp_flags_filter(field: str, entries: Sequence[Mapping[str, Any]]) -> FieldFilter:
    wanted = tuple(tuple(name for name in TCP_FLAG_NAMES if entry.get(name)) for entry in entries)

    def match(flow: FlowDict) -> bool:
        layer4 = flow.get("l4")
        if layer4 is None:
            return False
        tcp = layer4.get("TCP")
        if tcp is None:
            return False
        flags = tcp.get("flags")
        if flags is None:
            return False
        for names in wanted:
            for name in names:
                if not flags.get(name):
                    break
            else:
                return True
        return False

    needles: Needles = ()
    if all(wanted):
        needles = (tuple(dict.fromkeys(f'"{names[0]}":true'.encode() for names in wanted)),)
        if len(wanted) == 1:
            needles = tuple((f'"{name}":true'.encode(),) for name in wanted[0])
    return FieldFilter(field, match, COST_SCAN, needles)


def _compile_regexes(patterns: Sequence[str], what: str) -> list[Any]:
    """Hubble compiles these with Go's regexp, which is RE2: so do we (same syntax, no lookaround,
    no backreferences, linear time)."""
    options = re2.Options()
    options.log_errors = False  # the error goes into our message, not to stderr
    out = []
    for pattern in patterns:
        try:
            out.append(re2.compile(pattern, options=options))
        except re2.error as err:
            reason = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
            code, _, expression = reason.partition(": ")
            # Go words it `error parsing regexp: <what>: `<expr>``; RE2's <what> is close to Go's.
            reason = f"error parsing regexp: {code}: `{expression}`" if expression else reason
            raise FilterError(f"invalid {what} filter: failed to compile regexp: {reason}") from None
    return out


def compile_dns_query_filter(field: str, patterns: Sequence[str]) -> FieldFilter:
    searches = tuple(r.search for r in _compile_regexes(patterns, "DNS query"))

    def match(flow: FlowDict) -> bool:
        layer7 = flow.get("l7")
        if layer7 is None:
            return False
        dns = layer7.get("dns")
        if dns is None:
            return False
        query = dns.get("query", "")
        for search in searches:
            if search(query):
                return True
        return False

    return FieldFilter(field, match, COST_REGEX, ((b'"dns":{',),))


def require_l7_event_type(event_types: Sequence[Mapping[str, Any]], what: str) -> None:
    """Hubble rejects HTTP filters combined with an event_type list that excludes L7 events."""
    if event_types and not any(et.get("type", 0) == L7_EVENT_TYPE for et in event_types):
        raise FilterError(f"filtering by {what} requires the event type filter to only match 'l7' events")


_STATUS_FULL = re.compile(r"[1-5][0-9]{2}")
_STATUS_PREFIX = re.compile(r"[1-5][0-9]?\+")


def _http_of(flow: FlowDict) -> Mapping[str, Any] | None:
    layer7 = flow.get("l7")
    if layer7 is None:
        return None
    http: Mapping[str, Any] | None = layer7.get("http")
    return http


def compile_http_status_filter(field: str, codes: Sequence[str]) -> FieldFilter:
    full: set[int] = set()
    prefixes: list[str] = []
    for code in codes:
        if _STATUS_FULL.fullmatch(code):
            full.add(int(code))
        elif _STATUS_PREFIX.fullmatch(code):
            prefixes.append(code[:-1])
        else:
            raise FilterError(
                f"invalid http status code filter: invalid status code prefix: {go_quote(code)}"
            )
    full_set = frozenset(full)
    prefix_tuple = tuple(prefixes)

    def match(flow: FlowDict) -> bool:
        http = _http_of(flow)
        if http is None:
            return False
        code = http.get("code", 0)
        if not code:
            return False
        if code in full_set:
            return True
        return bool(prefix_tuple) and f"{code:03d}".startswith(prefix_tuple)

    return FieldFilter(field, match, COST_LOOKUP, ((b'"code":',),))


def compile_http_method_filter(field: str, methods: Sequence[str]) -> FieldFilter:
    wanted = frozenset(m.lower() for m in methods)

    def match(flow: FlowDict) -> bool:
        http = _http_of(flow)
        return http is not None and http.get("method", "").lower() in wanted

    return FieldFilter(field, match, COST_LOOKUP, ((b'"http":{',),))


def compile_http_url_filter(field: str, patterns: Sequence[str]) -> FieldFilter:
    searches = tuple(r.search for r in _compile_regexes(patterns, "http url"))

    def match(flow: FlowDict) -> bool:
        http = _http_of(flow)
        if http is None:
            return False
        url = http.get("url", "")
        for search in searches:
            if search(url):
                return True
        return False

    return FieldFilter(field, match, COST_REGEX, ((b'"http":{',),))


def _url_path(url: str) -> str | None:
    """The decoded path of a URL, as Go's ``url.Parse(...).Path``; None if it does not parse."""
    try:
        return unquote(urlsplit(url).path, errors="strict")
    except ValueError:
        return None


def compile_http_path_filter(field: str, patterns: Sequence[str]) -> FieldFilter:
    searches = tuple(r.search for r in _compile_regexes(patterns, "http path"))

    def match(flow: FlowDict) -> bool:
        http = _http_of(flow)
        if http is None:
            return False
        path = _url_path(http.get("url", ""))
        if path is None:
            return False
        for search in searches:
            if search(path):
                return True
        return False

    return FieldFilter(field, match, COST_URL, ((b'"http":{',),))


def compile_http_header_filter(field: str, headers: Sequence[Mapping[str, Any]]) -> FieldFilter:
    wanted = frozenset((h.get("key", ""), h.get("value", "")) for h in headers)

    def match(flow: FlowDict) -> bool:
        http = _http_of(flow)
        if http is None:
            return False
        for header in http.get("headers", ()):
            if (header.get("key", ""), header.get("value", "")) in wanted:
                return True
        return False

    keys = [k for k, _ in wanted]
    needles: Needles = ()
    if keys and all(k and json_safe(k) for k in keys):
        needles = (tuple(dict.fromkeys(f'"key":"{k}"'.encode() for k in keys)),)
    return FieldFilter(field, match, COST_SCAN, needles)


HttpCompiler = Callable[[str, Sequence[Any]], FieldFilter]
HTTP_FIELDS: Mapping[str, tuple[str, HttpCompiler]] = MappingProxyType({
    "http_status_code": ("http status code", compile_http_status_filter),
    "http_method": ("http method", compile_http_method_filter),
    "http_path": ("http path", compile_http_path_filter),
    "http_url": ("http url", compile_http_url_filter),
    "http_header": ("http header", compile_http_header_filter),
})

