"""`hubble observe` filter flags → FlowFilters, exactly as Hubble 1.19.4 builds them.

- `FlowFilterFlags`: an order-sensitive builder fed one filter flag at a time (what Hubble's
  `flowFilter.Set` does): the allow/deny trackers, `--not` for the next flag only, left/right
  filters for two-sided flags, namespaces, the conflicts table and Hubble's error messages.
- `FILTER_FLAGS` / `RAW_FILTER_FLAGS`: the flag specs, for the scanner
  (`hushflow.filter.pflag`) and the help text.
- `FilterFlagCollector` / `build_flow_filters`: the flags of an argv, together with the raw
  `--allowlist/--denylist` filters (`hushflow.filter.rawfilters`), as one `FlowFilters`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hushflow.filter.pflag import FlagError, FlagSpec, go_quote, parse_flags, parse_go_uint
from hushflow.filter.rawfilters import FlowFilterDict, FlowFilters, parse_raw_filters
from hushflow.flow.identities import RESERVED_IDENTITY_NUMBERS

# FlowFilter fields in flow.proto declaration order: protojson (and so Hubble) prints them in
# this order, not in field-number order. Cross-checked against hushflow.proto in the tests.
FLOW_FILTER_FIELDS: tuple[str, ...] = (
    "uuid",
    "source_ip",
    "source_ip_xlated",
    "source_pod",
    "source_fqdn",
    "source_label",
    "source_service",
    "source_workload",
    "source_cluster_name",
    "destination_ip",
    "destination_pod",
    "destination_fqdn",
    "destination_label",
    "destination_service",
    "destination_workload",
    "destination_cluster_name",
    "traffic_direction",
    "verdict",
    "drop_reason_desc",
    "interface",
    "event_type",
    "http_status_code",
    "protocol",
    "source_port",
    "destination_port",
    "reply",
    "dns_query",
    "source_identity",
    "destination_identity",
    "http_method",
    "http_path",
    "http_url",
    "http_header",
    "tcp_flags",
    "node_name",
    "node_labels",
    "ip_version",
    "trace_id",
    "ip_trace_id",
    "encrypted",
    "experimental",
)


# --------------------------------------------------------------------------------------------
# Values of the filter flags (facts from Cilium's flow.proto and monitor API).

VERDICTS: tuple[str, ...] = (
    "VERDICT_UNKNOWN", "FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED",
)
EVENT_TYPES: dict[str, int] = {
    "drop": 1,
    "debug": 2,
    "capture": 3,
    "trace": 4,
    "policy-verdict": 5,
    "recorder": 6,
    "trace-sock": 7,
    "l7": 129,
    "agent": 130,
}
TRACE_OBSERVATION_POINTS: dict[str, int] = {
    "to-endpoint": 0,
    "to-proxy": 1,
    "to-host": 2,
    "to-stack": 3,
    "to-overlay": 4,
    "from-endpoint": 5,
    "from-proxy": 6,
    "from-host": 7,
    "from-stack": 8,
    "from-overlay": 9,
    "from-network": 10,
    "to-network": 11,
    "from-crypto": 12,
    "to-crypto": 13,
}
AGENT_EVENT_SUBTYPES: dict[str, int] = {
    "unspecified": 0,
    "message": 1,
    "agent-started": 2,
    "policy-updated": 3,
    "policy-deleted": 4,
    "endpoint-regenerate-success": 5,
    "endpoint-regenerate-failure": 6,
    "endpoint-created": 7,
    "endpoint-deleted": 8,
    "ipcache-upserted": 9,
    "ipcache-deleted": 10,
}
TCP_FLAGS: tuple[str, ...] = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")

# Hubble's `conflicts` table: two flags of one group cannot be used in the same (allow or deny)
# tracker. Single-flag groups of the original are omitted: they can never fire.
CONFLICT_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "from-fqdn", "from-ip", "ip", "fqdn",
        "from-namespace", "namespace", "from-all-namespaces", "all-namespaces",
    ),
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    (
        "to-fqdn", "to-ip", "ip", "fqdn",
        "to-namespace", "namespace", "to-all-namespaces", "all-namespaces",
    ),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    ("to-pod", "namespace", "all-namespaces"),
    ("from-pod", "namespace", "all-namespaces"),
    ("to-service", "namespace", "all-namespaces"),
    ("from-service", "namespace", "all-namespaces"),
    ("label", "from-label"),
    ("label", "to-label"),
    ("service", "from-service"),
    ("service", "to-service"),
    ("port", "to-port"),
    ("port", "from-port"),
    ("identity", "to-identity"),
    ("identity", "from-identity"),
    ("workload", "to-workload"),
    ("workload", "from-workload"),
    ("encrypted", "unencrypted"),
)


def _drop_reason_names() -> frozenset[str]:
    from hushflow.proto import flow_pb2  # the enum has ~80 names; keep one source of truth

    return frozenset(flow_pb2.DropReason.keys())


def _identity(value: str) -> int:
    reserved = RESERVED_IDENTITY_NUMBERS.get(value)
    if reserved is not None:
        return reserved
    try:
        return parse_go_uint(value, 0, 32)
    except ValueError:
        names = " ".join(RESERVED_IDENTITY_NUMBERS)  # Hubble lists them by number
        raise ValueError(f"invalid security identity, expected one of [{names}] or a numeric value") from None


def _workload(value: str) -> dict[str, str]:
    kind, slash, name = value.partition("/")
    if not slash:
        kind, name = "", value
    return _without_defaults({"name": name, "kind": kind})


def _tcp_flags(value: str) -> dict[str, bool]:
    seen: set[str] = set()
    for part in value.split(","):
        upper = part.upper()
        if upper not in TCP_FLAGS:
            raise ValueError(f"unknown tcp flag: {part}")
        seen.add(upper)
    return {flag: True for flag in TCP_FLAGS if flag in seen}


def _http_header(value: str) -> dict[str, str]:
    key, colon, header_value = value.partition(":")
    if not colon:
        raise ValueError(f"invalid http-header value {go_quote(value)}, expected name:value")
    return _without_defaults({"key": key, "value": header_value})


def _int32(value: int) -> int:
    # Hubble converts the parsed uint32 with int32(...): large numbers wrap around.
    return value - (1 << 32) if value >= 1 << 31 else value


def _event_type(value: str) -> dict[str, Any]:
    name, colon, sub = value.partition(":")
    known = EVENT_TYPES.get(name)
    type_number = known if known is not None else _numeric_event_type(name, "type", "type")
    result: dict[str, Any] = {"type": _int32(type_number), "match_sub_type": False, "sub_type": 0}
    if colon:
        # Hubble looks sub-type names up only when the type was given by name (a numeric type
        # leaves its lookup variable at zero), so `4:to-stack` must be `4:3`.
        lookup_type = known if known is not None else 0
        named = {4: TRACE_OBSERVATION_POINTS, 130: AGENT_EVENT_SUBTYPES}.get(lookup_type)
        if named is not None and sub in named:
            result.update(match_sub_type=True, sub_type=named[sub])
        else:
            sub_number = _numeric_event_type(sub, "event sub-type", "sub-type")
            result.update(match_sub_type=True, sub_type=_int32(sub_number))
    return _without_defaults(result)


def _numeric_event_type(text: str, what: str, name_kind: str) -> int:
    try:
        return parse_go_uint(text, 10, 32)
    except ValueError as err:
        raise ValueError(
            f"unable to parse {what} '{text}', not a known {name_kind} name and unable to parse as numeric "
            f"value: {err}"
        ) from None


def _verdict(value: str) -> str:
    if value not in VERDICTS:
        raise ValueError(f"invalid --verdict value: {value}")
    return value


def _drop_reason(value: str) -> str:
    if value == "":
        raise ValueError("empty --drop-reason-desc value")
    if value not in _drop_reason_names():
        raise ValueError(f"invalid --drop-reason-desc value: {value}")
    return value


def _traffic_direction(value: str) -> str:
    lowered = value.lower()
    if lowered == "ingress":
        return "INGRESS"
    if lowered == "egress":
        return "EGRESS"
    raise ValueError(f"{lowered}: invalid traffic direction, expected ingress or egress")


def _ip_version(value: str) -> str:
    lowered = value.lower()
    if lowered in ("4", "v4", "ipv4", "ip4"):
        return "IPv4"
    if lowered in ("6", "v6", "ipv6", "ip6"):
        return "IPv6"
    return "IP_NOT_USED"  # Hubble: anything else silently means "non-IP flows"


def _ip_trace_id(value: str) -> str:
    if value == "0":
        raise ValueError("invalid --ip-trace-id value; must be greater than 0")
    try:
        return str(parse_go_uint(value, 10, 64))  # uint64: a string in protojson
    except ValueError as err:
        raise ValueError(f"invalid --ip-trace-id value: {err}") from None


def _without_defaults(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if value not in ("", 0, False)}


def _same(value: str) -> str:
    return value


# flag -> (field for the left filter, field for the right filter, value converter).
# Two-sided flags put source_* left and destination_* right; one-sided flags write the same
# field into both, so `[left]` is printed when nothing else differs.
_FIELD_FLAGS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "uuid": ("uuid", "uuid", _same),
    "fqdn": ("source_fqdn", "destination_fqdn", _same),
    "from-fqdn": ("source_fqdn", "source_fqdn", _same),
    "to-fqdn": ("destination_fqdn", "destination_fqdn", _same),
    "pod": ("source_pod", "destination_pod", _same),
    "from-pod": ("source_pod", "source_pod", _same),
    "to-pod": ("destination_pod", "destination_pod", _same),
    "ip": ("source_ip", "destination_ip", _same),
    "from-ip": ("source_ip", "source_ip", _same),
    "to-ip": ("destination_ip", "destination_ip", _same),
    "snat-ip": ("source_ip_xlated", "source_ip_xlated", _same),
    "ipv4": ("ip_version", "ip_version", lambda _value: "IPv4"),
    "ipv6": ("ip_version", "ip_version", lambda _value: "IPv6"),
    "ip-version": ("ip_version", "ip_version", _ip_version),
    "label": ("source_label", "destination_label", _same),
    "from-label": ("source_label", "source_label", _same),
    "to-label": ("destination_label", "destination_label", _same),
    "service": ("source_service", "destination_service", _same),
    "from-service": ("source_service", "source_service", _same),
    "to-service": ("destination_service", "destination_service", _same),
    "port": ("source_port", "destination_port", _same),
    "from-port": ("source_port", "source_port", _same),
    "to-port": ("destination_port", "destination_port", _same),
    "trace-id": ("trace_id", "trace_id", _same),
    "ip-trace-id": ("ip_trace_id", "ip_trace_id", _ip_trace_id),
    "verdict": ("verdict", "verdict", _verdict),
    "drop-reason-desc": ("drop_reason_desc", "drop_reason_desc", _drop_reason),
    "http-status": ("http_status_code", "http_status_code", _same),
    "http-method": ("http_method", "http_method", _same),
    "http-path": ("http_path", "http_path", _same),
    "http-url": ("http_url", "http_url", _same),
    "http-header": ("http_header", "http_header", _http_header),
    "type": ("event_type", "event_type", _event_type),
    "protocol": ("protocol", "protocol", _same),
    "workload": ("source_workload", "destination_workload", _workload),
    "from-workload": ("source_workload", "source_workload", _workload),
    "to-workload": ("destination_workload", "destination_workload", _workload),
    "identity": ("source_identity", "destination_identity", _identity),
    "from-identity": ("source_identity", "source_identity", _identity),
    "to-identity": ("destination_identity", "destination_identity", _identity),
    "node-name": ("node_name", "node_name", _same),
    "node-label": ("node_labels", "node_labels", _same),
    "cluster": ("source_cluster_name", "destination_cluster_name", _same),
    "from-cluster": ("source_cluster_name", "source_cluster_name", _same),
    "to-cluster": ("destination_cluster_name", "destination_cluster_name", _same),
    "tcp-flags": ("tcp_flags", "tcp_flags", _tcp_flags),
    "traffic-direction": ("traffic_direction", "traffic_direction", _traffic_direction),
    "cel-expression": ("experimental", "experimental", _same),
    "interface": ("interface", "interface", lambda value: _without_defaults({"name": value})),
    "encrypted": ("encrypted", "encrypted", lambda _value: True),
    "unencrypted": ("encrypted", "encrypted", lambda _value: False),
}
_NAMESPACE_FLAGS: dict[str, tuple[str, bool]] = {
    # flag -> (which namespace list, whether the value is the namespace or "any namespace")
    "namespace": ("both", True),
    "from-namespace": ("source", True),
    "to-namespace": ("destination", True),
    "all-namespaces": ("both", False),
    "from-all-namespaces": ("source", False),
    "to-all-namespaces": ("destination", False),
}
FILTER_FLAG_NAMES: frozenset[str] = frozenset(_FIELD_FLAGS) | frozenset(_NAMESPACE_FLAGS) | {"not"}


def _namespace_of(name: str) -> str:
    first, slash, _rest = name.partition("/")
    return first if slash else ""


def _add_namespaces(values: list[str], namespaces: list[str]) -> list[str]:
    if not namespaces or not values:
        return values
    result: list[str] = []
    for value in values:
        if "/" in value:
            result.append(value)
        else:
            result.extend(f"{namespace}/{value}" for namespace in namespaces)
    return result


def _namespace_conflict(namespaces: list[str], names: list[str]) -> str | None:
    for namespace in namespaces:
        for name in names:
            own = _namespace_of(name)
            if own and own != namespace:
                return f"namespace conflict: {go_quote(namespace)} does not contain {go_quote(name)}"
    return None


def _service_pod_conflict(pods: list[str], services: list[str]) -> str | None:
    for pod in pods:
        pod_namespace = _namespace_of(pod)
        if not pod_namespace:
            continue
        for service in services:
            if _namespace_of(service) != pod_namespace:
                return f"namespace of service {go_quote(service)} conflict with pod {go_quote(pod_namespace)}"
    return None


@dataclass
class _Tracker:
    """One side of the request (allow or deny): the filter pair `left OR right`."""

    left: dict[str, list[Any]] | None = None
    right: dict[str, list[Any]] | None = None
    namespaces: list[str] = field(default_factory=list)
    source_namespaces: list[str] = field(default_factory=list)
    destination_namespaces: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def add(self, left_field: str, right_field: str, value: Any) -> None:
        if self.left is None:
            self.left = {}
        if self.right is None:
            self.right = {}
        self.left.setdefault(left_field, []).append(value)
        self.right.setdefault(right_field, []).append(value)

    def conflict(self) -> str | None:
        for group in CONFLICT_GROUPS:
            for flag in group:
                if flag not in self.changed:
                    continue
                for other in group:
                    if other != flag and other in self.changed:
                        return f"filters --{flag} and --{other} cannot be combined"
        return None

    def namespace_conflicts(self) -> str | None:
        for side in (self.left, self.right):
            if side is None:
                continue
            get = side.get
            problems = [
                _namespace_conflict(self.namespaces, get("source_pod", [])),
                _namespace_conflict(self.namespaces, get("source_service", [])),
                _namespace_conflict(self.namespaces, get("destination_pod", [])),
                _namespace_conflict(self.namespaces, get("destination_service", [])),
                _namespace_conflict(self.source_namespaces, get("source_pod", [])),
                _namespace_conflict(self.source_namespaces, get("source_service", [])),
                _namespace_conflict(self.destination_namespaces, get("destination_pod", [])),
                _namespace_conflict(self.destination_namespaces, get("destination_service", [])),
                _service_pod_conflict(get("source_pod", []), get("source_service", [])),
                _service_pod_conflict(get("destination_pod", []), get("destination_service", [])),
            ]
            joined = "\n".join(problem for problem in problems if problem)  # Go's errors.Join
            if joined:
                return joined
        return None

    def flow_filters(self) -> list[FlowFilterDict]:
        if (
            self.left is None
            and self.right is None
            and not (self.namespaces or self.source_namespaces or self.destination_namespaces)
        ):
            return []
        left = {key: list(values) for key, values in (self.left or {}).items()}
        right = {key: list(values) for key, values in (self.right or {}).items()}
        for side in (left, right):
            if self.destination_namespaces:
                _apply_namespaces(side, "destination", self.destination_namespaces)
            if self.source_namespaces:
                _apply_namespaces(side, "source", self.source_namespaces)
        if self.namespaces:
            _apply_namespaces(left, "source", self.namespaces)
            _apply_namespaces(right, "destination", self.namespaces)
        rendered_left, rendered_right = _render(left), _render(right)
        if rendered_left == rendered_right:
            return [rendered_left]
        return [rendered_left, rendered_right]


def _apply_namespaces(side: dict[str, list[Any]], prefix: str, namespaces: list[str]) -> None:
    pods, services = side.get(f"{prefix}_pod", []), side.get(f"{prefix}_service", [])
    if not pods and not services:
        pods = [""]  # a namespace alone means "any pod in it"
    side[f"{prefix}_pod"] = _add_namespaces(pods, namespaces)
    side[f"{prefix}_service"] = _add_namespaces(services, namespaces)


def _render(side: Mapping[str, list[Any]]) -> FlowFilterDict:
    result: FlowFilterDict = {}
    for name in FLOW_FILTER_FIELDS:
        values = side.get(name)
        if not values:
            continue
        result[name] = {"cel_expression": list(values)} if name == "experimental" else list(values)
    return result


class FlowFilterFlags:
    """Builds the allow and deny FlowFilters from filter flags given one at a time, in order.

    `set` raises `ValueError` with Hubble's message (the caller adds pflag's
    `invalid argument ... for ... flag:` prefix); `flow_filters` raises `FlagError` for a
    trailing `--not`.
    """

    def __init__(self) -> None:
        self._allow: _Tracker | None = None
        self._deny: _Tracker | None = None
        self._negate_next = False

    def set(self, name: str, value: str) -> None:
        if name == "not":
            if self._negate_next:
                raise ValueError("consecutive --not statements")
            self._negate_next = True
            return
        if self._negate_next:
            # Hubble: --not applies to the next filter flag only.
            self._negate_next = False
            if self._deny is None:
                self._deny = _Tracker()
            tracker = self._deny
        else:
            if self._allow is None:
                self._allow = _Tracker()
            tracker = self._allow
        if name not in tracker.changed:
            tracker.changed.append(name)
        conflict = tracker.conflict()
        if conflict:
            raise ValueError(conflict)

        if name in _NAMESPACE_FLAGS:
            which, uses_value = _NAMESPACE_FLAGS[name]
            namespace = value if uses_value else ""
            {
                "both": tracker.namespaces,
                "source": tracker.source_namespaces,
                "destination": tracker.destination_namespaces,
            }[which].append(namespace)
        else:
            spec = _FIELD_FLAGS.get(name)
            if spec is None:
                raise KeyError(f"not a filter flag: {name}")
            left_field, right_field, convert = spec
            tracker.add(left_field, right_field, convert(value))

        problem = tracker.namespace_conflicts()
        if problem:
            raise ValueError(problem)

    def flow_filters(self) -> tuple[list[FlowFilterDict], list[FlowFilterDict]]:
        """(allowlist, denylist) built from the flags so far."""
        if self._negate_next:
            raise FlagError("trailing --not found in the arguments")
        allow = self._allow.flow_filters() if self._allow else []
        deny = self._deny.flow_filters() if self._deny else []
        return allow, deny


def _filter(
    name: str, help: str, metavar: str = "filter", shorthand: str = "", no_opt: str | None = None
) -> FlagSpec:
    return FlagSpec(name, shorthand, no_opt, metavar, help, "Filters", repeatable=no_opt is None)


# Every `hubble observe` filter flag, in the order `--help` lists them.
FILTER_FLAGS: tuple[FlagSpec, ...] = (
    _filter("not", "Negate the next filter flag only: it goes to the denylist. All negated flags form ONE "
            "denylist filter, so they exclude flows matching all of them", no_opt="true"),
    _filter("verdict", "Verdict, upper case exactly: FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, "
            "TRACED, TRANSLATED"),
    _filter("drop-reason-desc", "Drop reason name, e.g. POLICY_DENIED"),
    _filter("type", "Event type TYPE[:SUBTYPE], by name or number: drop, capture, trace[:to-endpoint|"
            "to-stack|from-network|...], l7, policy-verdict, trace-sock, debug, agent", shorthand="t"),
    _filter("protocol", "L4 or L7 protocol: tcp, udp, sctp, icmp, icmpv4, icmpv6, dns, http, kafka"),
    _filter("tcp-flags", "TCP flags that must all be set, comma separated, e.g. SYN,ACK"),
    _filter("traffic-direction", "ingress or egress"),
    _filter("uuid", "The flow with this UUID"),
    _filter("from-ip", "Source IP, or a CIDR when it contains '/'"),
    _filter("to-ip", "Destination IP or CIDR"),
    _filter("ip", "Source or destination IP or CIDR"),
    _filter("snat-ip", "Source IP after SNAT (exact or CIDR)"),
    _filter("ipv4", "Only IPv4 flows", shorthand="4", no_opt="v4"),
    _filter("ipv6", "Only IPv6 flows", shorthand="6", no_opt="v6"),
    _filter("ip-version", "IP version: v4, v6, or none (non-IP flows)"),
    _filter("from-pod", "Source pod name prefix, [namespace/]name; no namespace means 'default'"),
    _filter("to-pod", "Destination pod name prefix, [namespace/]name"),
    _filter("pod", "Source or destination pod name prefix, [namespace/]name"),
    _filter("from-namespace", "Source namespace"),
    _filter("to-namespace", "Destination namespace"),
    _filter("namespace", "Source or destination namespace (prefixed to pod and service filters)",
            shorthand="n"),
    _filter("from-all-namespaces", "Source in any namespace", no_opt="true"),
    _filter("to-all-namespaces", "Destination in any namespace", no_opt="true"),
    _filter("all-namespaces", "Source or destination in any namespace", shorthand="A", no_opt="true"),
    _filter("from-label", "Source endpoint label selector, e.g. k8s:app=web, 'tier in (db,cache)', !pci"),
    _filter("to-label", "Destination endpoint label selector"),
    _filter("label", "Source or destination endpoint label selector", shorthand="l"),
    _filter("from-service", "Source service name prefix, [namespace/]name"),
    _filter("to-service", "Destination service name prefix, [namespace/]name"),
    _filter("service", "Source or destination service name prefix"),
    _filter("from-fqdn", "Source DNS name pattern, e.g. *.example.com ('*' also crosses dots)"),
    _filter("to-fqdn", "Destination DNS name pattern"),
    _filter("fqdn", "Source or destination DNS name pattern"),
    _filter("from-port", "Source L4 port"),
    _filter("to-port", "Destination L4 port"),
    _filter("port", "Source or destination L4 port"),
    _filter("from-identity", "Source security identity: a number or host, world, unmanaged, health, init, "
            "remote-node, kube-apiserver, ingress, world-ipv4, world-ipv6"),
    _filter("to-identity", "Destination security identity"),
    _filter("identity", "Source or destination security identity"),
    _filter("from-workload", "Source workload, [kind/]name, e.g. Deployment/api or StatefulSet/"),
    _filter("to-workload", "Destination workload, [kind/]name"),
    _filter("workload", "Source or destination workload, [kind/]name"),
    _filter("from-cluster", "Source cluster name"),
    _filter("to-cluster", "Destination cluster name"),
    _filter("cluster", "Source or destination cluster name"),
    _filter("node-name", "Node name pattern [cluster/]node, e.g. 'ip-10-*', 'prod-eu1/'"),
    _filter("node-label", "Node label selector, e.g. topology.kubernetes.io/zone=eu-west-1a"),
    _filter("http-status", "HTTP status code or prefix, e.g. 404, 5+, 40+"),
    _filter("http-method", "HTTP method (any case)"),
    _filter("http-path", "HTTP path regular expression (unanchored)"),
    _filter("http-url", "HTTP URL regular expression (unanchored)"),
    _filter("http-header", "HTTP header key:value"),
    _filter("trace-id", "Trace ID of the flow's trace context"),
    _filter("ip-trace-id", "IP trace ID (a number > 0)"),
    _filter("interface", "Interface name the flow was observed at, e.g. eth0"),
    _filter("encrypted", "Only encrypted flows", no_opt="true"),
    _filter("unencrypted", "Only unencrypted flows", no_opt="true"),
    _filter("cel-expression", "CEL expression over _flow (type flow.Flow), e.g. "
            "\"'app-blocked' in _flow.policy_log\"", metavar="expr"),
)
RAW_FILTER_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("allowlist", metavar="json", group="Raw filters", repeatable=True,
             help="FlowFilters as JSON (a stream of objects), ORed with the flag-built allowlist"),
    FlagSpec("denylist", metavar="json", group="Raw filters", repeatable=True,
             help="FlowFilters as JSON (a stream of objects), appended to the denylist"),
)


class FilterFlagCollector:
    """Feeds filter and raw-filter flags to `FlowFilterFlags`; `on_flag` for `parse_flags`."""

    def __init__(self) -> None:
        self.flags = FlowFilterFlags()
        self.raw_allowlist: list[str] = []
        self.raw_denylist: list[str] = []

    def handles(self, spec: FlagSpec) -> bool:
        return spec.name in FILTER_FLAG_NAMES or spec.name in ("allowlist", "denylist")

    def on_flag(self, spec: FlagSpec, value: str) -> None:
        if spec.name == "allowlist":
            self.raw_allowlist.append(value)
        elif spec.name == "denylist":
            self.raw_denylist.append(value)
        else:
            self.flags.set(spec.name, value)

    def flow_filters(self) -> FlowFilters:
        """Flag-built filters followed by the raw ones. Raises `FlagError`."""
        allow, deny = self.flags.flow_filters()
        allow += parse_raw_filters(self.raw_allowlist, "allowlist")
        deny += parse_raw_filters(self.raw_denylist, "denylist")
        return FlowFilters(tuple(allow), tuple(deny))


def build_flow_filters(argv: Sequence[str]) -> FlowFilters:
    """`hubble observe` filter flags (and `--allowlist/--denylist`) → FlowFilters.

    >>> build_flow_filters(["--pod", "foo", "--verdict", "DROPPED"]).allowlist
    ({'source_pod': ['foo'], 'verdict': ['DROPPED']}, {'destination_pod': ['foo'], 'verdict': ['DROPPED']})
    """
    collector = FilterFlagCollector()
    positional = parse_flags(argv, FILTER_FLAGS + RAW_FILTER_FLAGS, collector.on_flag)
    if positional:
        raise FlagError(f"unexpected argument {go_quote(positional[0])}")
    return collector.flow_filters()

