"""Hubble's output formats: ``jsonpb``, ``json``, ``compact``, ``dict`` and ``table``.

The text is what ``hubble observe`` 1.19.4 prints (checked byte for byte against recordings of the
real CLI in tests/sinks). Printers take canonical events (:class:`hushflow.flow.reader.FlowEvent`)
and write UTF-8 bytes to a binary stream.

Facts mirrored from Hubble (``hubble/pkg/printer``):

- Timestamps use Go's ``time.StampMilli`` (``Jan _2 15:04:05.000``, truncated, not rounded) in the
  local time zone, which Go takes from ``TZ`` like the C library does; pass ``tz`` to force one.
- With ``--input-file`` Hubble applies no field mask (the default mask is a server-side request
  option), so ``traffic_direction``, ``policy_match_type`` and the ``*_by`` lists print as they are
  in the file; the recordings confirm it (``policy-verdict:L3-L4 EGRESS``, ``BY name (kind)``).
- ``\\x1b`` and ``\\r`` in printed text are neutralised (``^[`` and ``\\r``) as Hubble's terminal
  escaper does. No colour is ever written.
- Table output goes through Go's ``text/tabwriter`` (minwidth 2, padding 3), which Hubble only
  flushes when it exits: the table is written by :meth:`close`.
- ``-o jsonpb``/``-o json`` re-encode every event, as Hubble's printer does (``json.Encoder`` of
  the response, whose MarshalJSON is protojson with proto names): the bytes depend on the flow,
  never on the spelling of the input line.
- Agent and debug events (exporter files) are not printed: Hubble's ``GetFlowsResponse`` has no
  such fields and drops them. Node-status events go to ``err`` (errors and unavailable nodes only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, BinaryIO, Protocol

import orjson

from hushflow.flow.identities import RESERVED_IDENTITY_NAMES, UNKNOWN_IDENTITY, UNKNOWN_IDENTITY_NAME
from hushflow.flow.protojson import canonical_event, go_json_escape, make_canonical_event_check
from hushflow.flow.reader import FlowEvent, ProvenEvent
from hushflow.flow.times import parse_timestamp

OUTPUT_FORMATS = ("compact", "dict", "json", "jsonpb", "table")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# pkg/monitor/api: trace observation points by event sub-type.
_TRACE_POINTS = {
    0: "to-endpoint", 1: "to-proxy", 2: "to-host", 3: "to-stack", 4: "to-overlay", 5: "from-endpoint",
    6: "from-proxy", 7: "from-host", 8: "from-stack", 9: "from-overlay", 10: "from-network",
    11: "to-network", 12: "from-crypto", 13: "to-crypto",
}
# pkg/monitor/api: drop reason texts by event sub-type (unknown ones print as "N, 0").
_DROP_REASONS = {
    0: "Success", 2: "Invalid packet", 3: "Interface", 4: "Interface Decrypted",
    5: "LB, sock cgroup: No backend slot entry found", 6: "LB, sock cgroup: No backend entry found",
    7: "LB, sock cgroup: Reverse entry update failed", 8: "LB, sock cgroup: Reverse entry stale",
    9: "Fragmented packet", 10: "Fragmented packet entry update failed",
    11: "Missed tail call to custom program", 130: "Invalid source mac", 131: "Invalid destination mac",
    132: "Invalid source ip", 133: "Policy denied", 134: "Invalid packet",
    135: "CT: Truncated or invalid header", 136: "Fragmentation needed", 137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet", 139: "Unsupported L3 protocol", 140: "Missed tail call",
    141: "Error writing to packet", 142: "Unknown L4 protocol", 143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type", 145: "Unknown ICMPv6 code", 146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key", 148: "Error retrieving tunnel options",
    149: "Invalid Geneve option", 150: "Unknown L3 target address", 151: "Stale or unroutable IP",
    152: "No matching local container found", 153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum", 155: "CT: Map insertion failed",
    156: "Invalid IPv6 extension header", 157: "IP fragmentation not supported",
    158: "Service backend not found", 160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled", 162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state", 164: "Local host is unreachable",
    165: "No configuration available to perform policy decision", 166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade", 168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed", 170: "Encapsulation traffic is prohibited", 171: "Invalid identity",
    172: "Unknown sender", 173: "NAT not needed", 174: "Is a ClusterIP",
    175: "First logical datagram fragment not found", 176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check", 178: "Socket lookup failed", 179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol", 181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter", 183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer", 185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)", 189: "Authentication required",
    190: "No conntrack map found", 191: "No nat map found", 192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation", 194: "No egress gateway found",
    195: "Traffic is unencrypted", 196: "TTL exceeded", 197: "No node ID found", 198: "Rate limited",
    202: "Host datapath not ready",
}
# pkg/monitor/api PolicyMatchType.String().
_MATCH_TYPES = {0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all", 5: "L3-Proto", 6: "Proto-Only"}
_SOCK_XLATE = {
    "SOCK_XLATE_POINT_POST_DIRECTION_FWD": "post-xlate-fwd",
    "SOCK_XLATE_POINT_POST_DIRECTION_REV": "post-xlate-rev",
    "SOCK_XLATE_POINT_PRE_DIRECTION_FWD": "pre-xlate-fwd",
    "SOCK_XLATE_POINT_PRE_DIRECTION_REV": "pre-xlate-rev",
}
_ALLOWED_VERDICTS = frozenset({"FORWARDED", "REDIRECTED"})
_DENIED_VERDICTS = frozenset({"DROPPED", "ERROR"})
_TRACE, _DROP, _POLICY_VERDICT, _CAPTURE, _TRACE_SOCK = 4, 1, 5, 3, 7
_DICT_SEPARATOR = "------------"
_NODE_NAMES_CUTOFF = 50


@dataclass(frozen=True, slots=True)
class PrintOptions:
    """Options shared by the text formats (Hubble's ``--print-node-name``, ``--print-policy-names``...)."""

    node_name: bool = False
    policy_names: bool = False
    ip_translation: bool = True
    """Show pod/service/DNS names instead of IPs (Hubble's ``--ip-translation``, on by default)."""
    tz: tzinfo | None = None
    """Time zone for timestamps; None = the local zone (``TZ``), as Hubble does."""
    debug: bool = False
    """Also print informational node-status events."""
    legacy_json: bool = False
    """``-o json`` prints the bare Flow (Hubble's legacy JSON), not the jsonpb wrapper."""


class EventPrinter(Protocol):
    def write(self, event: FlowEvent) -> None: ...

    def close(self) -> None: ...


# -- field rendering (pure functions of the canonical flow dict) --------------------------------


def escape_terminal(text: str) -> str:
    """Text from flow data made safe for a terminal, as Hubble's terminalEscaper does: ESC as ``^[``,
    CR as ``\\r``, so that no control sequence in a flow reaches the terminal."""
    if "\x1b" in text or "\r" in text:
        text = text.replace("\x1b", "^[").replace("\r", "\\r")
    return text


def _path_join(ns: str, name: str) -> str:
    """Go's path.Join for two elements: joined with '/', empty elements dropped, cleaned."""
    joined = "/".join(p for p in (ns, name) if p)
    if not joined:
        return ""
    if "//" in joined or "/." in joined or joined.startswith(".") or joined.endswith("/"):
        return _clean(joined)
    return joined


def _clean(path: str) -> str:
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def flow_ports(f: Mapping[str, Any]) -> tuple[str, str]:
    l4 = f.get("l4")
    if not l4:
        return "", ""
    for proto in ("TCP", "UDP", "SCTP"):
        p = l4.get(proto)
        if p is not None:
            return str(p.get("source_port", 0)), str(p.get("destination_port", 0))
    return "", ""


def _hostname(ip: str, port: str, ns: str, pod: str, svc: str, names: Sequence[str], translate: bool) -> str:
    host = ip
    if translate:
        if pod:
            host = _path_join(ns, pod)
        elif svc:
            host = _path_join(ns, svc)
        elif names:
            host = ",".join(names)
    if port and port != "0":
        return _join_host_port(host, port)
    return host


def flow_hostnames(f: Mapping[str, Any], translate: bool = True) -> tuple[str, str]:
    """Source and destination as Hubble prints them (``ns/pod:port``, names, or the IP)."""
    ip = f.get("IP")
    if ip is None:
        eth = f.get("ethernet")
        if eth is not None:
            return eth.get("source", ""), eth.get("destination", "")
        return "", ""
    src = f.get("source") or {}
    dst = f.get("destination") or {}
    src_ns, src_pod = src.get("namespace", ""), src.get("pod_name", "")
    dst_ns, dst_pod = dst.get("namespace", ""), dst.get("pod_name", "")
    src_svc = dst_svc = ""
    svc = f.get("source_service")
    if svc is not None:
        src_ns, src_svc = svc.get("namespace", ""), svc.get("name", "")
    svc = f.get("destination_service")
    if svc is not None:
        dst_ns, dst_svc = svc.get("namespace", ""), svc.get("name", "")
    sport, dport = flow_ports(f)
    return (
        _hostname(ip.get("source", ""), sport, src_ns, src_pod, src_svc, f.get("source_names", ()), translate),
        _hostname(ip.get("destination", ""), dport, dst_ns, dst_pod, dst_svc,
                  f.get("destination_names", ()), translate),
    )


def format_identity(identity: int) -> str:
    name = UNKNOWN_IDENTITY_NAME if identity == UNKNOWN_IDENTITY else RESERVED_IDENTITY_NAMES.get(identity)
    return f"({name})" if name is not None else f"(ID:{identity})"


def _enum_text(value: Any, default: str) -> str:
    if value is None:
        return default
    return str(value)


def flow_type(f: Mapping[str, Any]) -> str:
    """Hubble's TYPE column."""
    l7 = f.get("l7")
    if l7 is not None:
        l7_type = _enum_text(l7.get("type"), "UNKNOWN_L7_TYPE").lower()
        if "http" in l7:
            return "http-" + l7_type
        if "dns" in l7:
            return f"dns-{l7_type} {l7['dns'].get('observation_source', '')}"
        if "kafka" in l7:
            return "kafka-" + l7_type
        return "l7-" + l7_type
    et = f.get("event_type") or {}
    t = et.get("type", 0)
    sub = et.get("sub_type", 0) & 0xFF
    if t == _TRACE:
        return _TRACE_POINTS.get(sub, str(sub))
    if t == _DROP:
        return _DROP_REASONS.get(sub, f"{sub}, 0")
    if t == _POLICY_VERDICT:
        match = _MATCH_TYPES.get(f.get("policy_match_type", 0), "unknown")
        return f"policy-verdict:{match} {_enum_text(f.get('traffic_direction'), 'TRAFFIC_DIRECTION_UNKNOWN')}"
    if t == _CAPTURE:
        return _enum_text(f.get("debug_capture_point"), "DBG_CAPTURE_POINT_UNKNOWN")
    if t == _TRACE_SOCK:
        point = _enum_text(f.get("sock_xlate_point"), "SOCK_XLATE_POINT_UNKNOWN")
        return _SOCK_XLATE.get(point, point)
    return "UNKNOWN"


def flow_verdict(f: Mapping[str, Any], policy_names: bool = False) -> str:
    """Hubble's VERDICT column; policy verdicts say ALLOWED/DENIED/AUDITED (+ ``BY`` policies)."""
    verdict = _enum_text(f.get("verdict"), "VERDICT_UNKNOWN")
    if (f.get("event_type") or {}).get("type") != _POLICY_VERDICT:
        return verdict
    if verdict in _ALLOWED_VERDICTS:
        lists: tuple[str, ...] = ("egress_allowed_by", "ingress_allowed_by")
        text = "ALLOWED"
    elif verdict in _DENIED_VERDICTS:
        lists = ("egress_denied_by", "ingress_denied_by")
        text = "DENIED"
    elif verdict == "AUDIT":
        return "AUDITED"
    else:
        return verdict
    if policy_names:
        names = [
            f"{p['name']} ({p['kind']})"
            for key in lists
            for p in f.get(key, ())
            if p.get("name") and p.get("kind")
        ]
        if names:
            text += " BY " + ", ".join(names)
    return text


def flow_summary(f: Mapping[str, Any]) -> str:
    out = f.get("Summary", "")
    trace_id = int((f.get("ip_trace_id") or {}).get("trace_id", "0"))
    if trace_id > 0:
        out = f"IP Trace ID: {trace_id}; {out}"
    auth = f.get("auth_type")
    if auth is not None and auth != "DISABLED" and auth != 0:
        out += f"; {auth}"
    return out


class _Clock:
    """Formats protojson timestamps as Go's StampMilli in a zone; caches the current second."""

    __slots__ = ("_last_prefix", "_last_second", "_tz")

    def __init__(self, tz: tzinfo | None) -> None:
        self._tz = tz
        self._last_second = ""
        self._last_prefix = ""

    def stamp(self, ts: Any) -> str:
        if type(ts) is not str or len(ts) < 20:
            return "N/A"
        utc = ts[19] in ".Zz"
        if not utc or ts[:19] != self._last_second:
            try:
                secs, nanos = parse_timestamp(ts)
                if self._tz is not None:
                    dt = datetime.fromtimestamp(secs, self._tz)
                else:
                    dt = datetime.fromtimestamp(secs).astimezone()
            except (ValueError, OverflowError, OSError):
                # No time, or one the zone moves out of datetime's years 1-9999 (0001-01-01 west
                # of UTC): printed as a missing time is.
                return "N/A"
            prefix = f"{_MONTHS[dt.month - 1]} {dt.day:2d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
            if not utc:  # an explicit offset: the wall-clock second is no cache key
                return f"{prefix}.{nanos // 1_000_000:03d}"
            self._last_second, self._last_prefix = ts[:19], prefix
        frac = ts[20:-1] if ts[19] == "." else ""
        # Go's StampMilli truncates the fraction.
        return f"{self._last_prefix}.{(frac + '000')[:3]}"


# -- printers ----------------------------------------------------------------------------------


#: The key ``--enrich --with-findings`` adds to an event (app.enrich adds it): hushflow's
#: own addition, printed after Hubble's fields; the reader never lets one through from input.
FINDINGS_KEY = "hushflow"


class JsonpbPrinter:
    """``-o jsonpb`` (and ``-o json``): each event as Hubble's jsonpb encoder writes it.

    Hubble re-encodes every flow it prints, so an input line in any other spelling (``.000Z``,
    zero values, another field order, whitespace, exporter or legacy ``-o json`` form) comes out
    in the canonical one. The event dict is printed as it is only when
    :func:`~hushflow.flow.protojson.make_canonical_event_check` proves it canonical at every
    level; otherwise it is normalized first. The bytes are always encoded from the dict, never
    copied from the input line, so whitespace and escapes are Go's too.
    """

    def __init__(self, out: BinaryIO, *, err: BinaryIO | None = None, options: PrintOptions | None = None):
        self._out = out
        self._err = err
        self._opts = options or PrintOptions()
        self._is_canonical = make_canonical_event_check()

    def _encode(self, data: Mapping[str, Any]) -> bytes:
        findings = data.get(FINDINGS_KEY)
        if findings is not None:
            data = {k: v for k, v in data.items() if k != FINDINGS_KEY}
        event = canonical_event(data, self._is_canonical)
        if self._opts.legacy_json:
            body = orjson.dumps(event.get("flow", event.get("lost_events")))
        else:
            body = orjson.dumps(event)
        if findings is not None:
            body = body[:-1] + b',"' + FINDINGS_KEY.encode() + b'":' + orjson.dumps(findings) + b"}"
        return go_json_escape(body) + b"\n"

    def write(self, event: FlowEvent) -> None:
        if isinstance(event, ProvenEvent):  # the line is proven to be these very bytes: as it is
            raw = event.raw
            self._out.write((raw[8 : event.flow_end] if self._opts.legacy_json else raw) + b"\n")
            return
        data = event.data
        if "flow" in data or "lost_events" in data:
            self._out.write(self._encode(data))
        elif "node_status" in data and self._err is not None and _node_status_shown(data, self._opts):
            self._err.write(go_json_escape(orjson.dumps(canonical_event(data, self._is_canonical))) + b"\n")

    def close(self) -> None:
        self._out.flush()


def _node_status_shown(data: Mapping[str, Any], opts: PrintOptions) -> bool:
    state = (data.get("node_status") or {}).get("state_change")
    return opts.debug or state in ("NODE_ERROR", "NODE_UNAVAILABLE")


def _join_with_cutoff(elems: Sequence[str], sep: str, target: int) -> str:
    total = 0
    end = len(elems)
    for i, e in enumerate(elems):
        total += len(e) + len(sep)
        if total > target and i > 0:
            end = i
            break
    joined = sep.join(elems[:end])
    omitted = len(elems) - end
    return joined if omitted == 0 else f"{joined} (and {omitted} more)"


class _TextPrinter:
    """Shared parts of compact/dict/table: field rendering and node-status lines."""

    def __init__(self, out: BinaryIO, *, err: BinaryIO | None = None, options: PrintOptions | None = None):
        self._out = out
        self._err = err
        self._opts = options or PrintOptions()
        self._clock = _Clock(self._opts.tz)
        self._line = 0

    def _emit(self, text: str) -> None:
        self._out.write(escape_terminal(text).encode("utf-8", "surrogateescape"))

    def write(self, event: FlowEvent) -> None:
        data = event.data
        f = data.get("flow")
        if f is not None:
            self._flow(data, f)
            self._line += 1
        elif "lost_events" in data:
            self._lost(data, data["lost_events"])
            self._line += 1
        elif "node_status" in data:
            self._node_status(data, data["node_status"])

    def _flow(self, data: Mapping[str, Any], f: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _lost(self, data: Mapping[str, Any], lost: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _node_status(self, data: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        if self._err is None or not _node_status_shown(data, self._opts):
            return
        names = status.get("node_names", [])
        nodes = _join_with_cutoff(names, ", ", _NODE_NAMES_CUTOFF)
        prefix = f"{self._clock.stamp(data.get('time'))} [{data.get('node_name', '')}]"
        state = status.get("state_change", "UNKNOWN_NODE_STATE")
        if state == "NODE_CONNECTED":
            msg = f"{prefix}: Receiving flows from {len(names)} nodes: {nodes}"
        elif state == "NODE_UNAVAILABLE":
            msg = f"{prefix}: {len(names)} nodes are unavailable: {nodes}"
        elif state == "NODE_GONE":
            msg = f"{prefix}: {len(names)} nodes removed from cluster: {nodes}"
        elif state == "NODE_ERROR":
            msg = f"{prefix}: Error {_go_quote(status.get('message', ''))} on {len(names)} nodes: {nodes}"
        else:
            msg = f"{prefix}: unknown node status event: {dict(status)}"
        self._err.write(escape_terminal(msg + "\n").encode("utf-8", "surrogateescape"))

    def close(self) -> None:
        self._out.flush()


def _go_quote(s: str) -> str:
    return orjson.dumps(s).decode()


def _lost_summary(lost: Mapping[str, Any], clock: _Clock, sep: str = " - ") -> tuple[str, str]:
    """(source, summary) of a lost-events event as hubble 1.19.4 prints them (its printer's
    WriteLostEvent): "CPU(n) - count", and the first and last lost times when both are known."""
    source = _enum_text(lost.get("source"), "UNKNOWN_LOST_EVENT_SOURCE")
    summary = f"CPU({lost.get('cpu', 0)}){sep}{lost.get('num_events_lost', '0')}"
    first, last = lost.get("first"), lost.get("last")
    if first is not None and last is not None:
        summary += f" (first: {clock.stamp(first)}, last: {clock.stamp(last)})"
    return source, summary


class CompactPrinter(_TextPrinter):
    """``-o compact``: one line a flow."""

    def _flow(self, data: Mapping[str, Any], f: Mapping[str, Any]) -> None:
        opts = self._opts
        src, dst = flow_hostnames(f, opts.ip_translation)
        src_id = format_identity((f.get("source") or {}).get("identity", 0))
        dst_id = format_identity((f.get("destination") or {}).get("identity", 0))
        node = f" [{f.get('node_name', '')}]" if opts.node_name else ""
        is_reply = f.get("is_reply")
        if is_reply is None:
            arrow = "<>"  # direction unknown
        elif is_reply:
            src, dst, src_id, dst_id = dst, src, dst_id, src_id
            arrow = "<-"
        else:
            arrow = "->"
        self._emit(
            f"{self._clock.stamp(f.get('time'))}{node}: {src} {src_id} {arrow} {dst} {dst_id} "
            f"{flow_type(f)} {flow_verdict(f, opts.policy_names)} ({flow_summary(f)})\n"
        )

    def _lost(self, data: Mapping[str, Any], lost: Mapping[str, Any]) -> None:
        source, summary = _lost_summary(lost, self._clock, sep=" ")
        self._emit(f"{self._clock.stamp(data.get('time'))} EVENTS LOST: {source} {summary}\n")


class DictPrinter(_TextPrinter):
    """``-o dict``: one ``KEY: value`` block a flow, separated by dashes."""

    def _flow(self, data: Mapping[str, Any], f: Mapping[str, Any]) -> None:
        opts = self._opts
        src, dst = flow_hostnames(f, opts.ip_translation)
        parts = [_DICT_SEPARATOR + "\n"] if self._line else []
        parts.append(f"  TIMESTAMP: {self._clock.stamp(f.get('time'))}\n")
        if opts.node_name:
            parts.append(f"       NODE: {f.get('node_name', '')}\n")
        parts.append(
            f"     SOURCE: {src}\nDESTINATION: {dst}\n       TYPE: {flow_type(f)}\n"
            f"    VERDICT: {flow_verdict(f, opts.policy_names)}\n    SUMMARY: {flow_summary(f)}\n"
        )
        self._emit("".join(parts))

    def _lost(self, data: Mapping[str, Any], lost: Mapping[str, Any]) -> None:
        source, summary = _lost_summary(lost, self._clock)
        parts = [_DICT_SEPARATOR + "\n"] if self._line else []
        parts.append(f"  TIMESTAMP: {self._clock.stamp(data.get('time'))}\n")
        if self._opts.node_name:
            parts.append(f"       NODE: {data.get('node_name') or '-'}\n")
        parts.append(f"     SOURCE: {source}\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: {summary}\n")
        self._emit("".join(parts))


class TablePrinter(_TextPrinter):
    """``-o table``: aligned columns (Go tabwriter: minwidth 2, padding 3), written at close()."""

    def __init__(self, out: BinaryIO, *, err: BinaryIO | None = None, options: PrintOptions | None = None):
        super().__init__(out, err=err, options=options)
        self._rows: list[list[str]] = []

    def _header(self) -> None:
        if self._line == 0:
            cells = ["TIMESTAMP"] + (["NODE"] if self._opts.node_name else [])
            self._rows.append([*cells, "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"])

    def _flow(self, data: Mapping[str, Any], f: Mapping[str, Any]) -> None:
        opts = self._opts
        src, dst = flow_hostnames(f, opts.ip_translation)
        cells = [self._clock.stamp(f.get("time"))] + ([f.get("node_name", "")] if opts.node_name else [])
        cells += [src, dst, flow_type(f), flow_verdict(f, opts.policy_names), flow_summary(f)]
        row = [escape_terminal(c) for c in cells]
        self._header()  # only once the row is made: a flow that cannot be printed adds nothing
        self._rows.append(row)

    def _lost(self, data: Mapping[str, Any], lost: Mapping[str, Any]) -> None:
        self._header()
        source, summary = _lost_summary(lost, self._clock)
        cells = [self._clock.stamp(data.get("time"))]
        if self._opts.node_name:
            cells.append(data.get("node_name") or "-")
        self._rows.append([*cells, source, "-", "EVENTS LOST", "-", escape_terminal(summary)])

    def close(self) -> None:
        if self._rows:
            self._out.write(go_tabwriter(self._rows, minwidth=2, padding=3).encode("utf-8", "surrogateescape"))
            self._rows = []
        self._out.flush()


def go_tabwriter(rows: Sequence[Sequence[str]], *, minwidth: int, padding: int) -> str:
    """What Go's ``text/tabwriter`` prints when Hubble writes ``rows`` into it, each cell but the
    last followed by a tab and each row by a newline. The cells are Hubble's values, which may
    hold the characters tabwriter acts on itself: a tab or vertical tab inside a value ends a
    cell, a newline a line, and a form feed a line and the whole block of aligned columns (Go:
    "a '\f' always forces a flush"), written as a newline."""
    if not any(ch in cell for row in rows for cell in row for ch in "\t\v\n\f"):
        return tabwriter_format(rows, minwidth=minwidth, padding=padding)
    out: list[str] = []
    section: list[list[str]] = []
    line: list[str] = []
    cell: list[str] = []
    for row in rows:
        for ch in "\t".join(row) + "\n":
            if ch in "\t\v\n\f":
                line.append("".join(cell))
                cell = []
                if ch in "\n\f":
                    section.append(line)
                    line = []
                    if ch == "\f":
                        out.append(tabwriter_format(section, minwidth=minwidth, padding=padding))
                        section = []
            else:
                cell.append(ch)
    out.append(tabwriter_format(section, minwidth=minwidth, padding=padding))
    return "".join(out)


def tabwriter_format(rows: Sequence[Sequence[str]], *, minwidth: int, padding: int) -> str:
    """Go ``text/tabwriter`` (pad with spaces, no flags) over rows of cells.

    Every cell but the last of a row is tab-terminated; the last one is not aligned. Column blocks
    are runs of consecutive rows that have a cell in that column, aligned together.
    """
    out: list[str] = []
    widths: list[int] = []

    def write_rows(lo: int, hi: int) -> None:
        for row in rows[lo:hi]:
            for j, cell in enumerate(row):
                if j < len(widths) and j < len(row) - 1:
                    out.append(cell + " " * (widths[j] - len(cell)))
                else:
                    out.append(cell)
            out.append("\n")

    def fmt(lo: int, hi: int) -> None:
        column = len(widths)
        this = lo
        while this < hi:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write_rows(lo, this)
            lo = this
            width = minwidth
            while this < hi and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(lo, this)
            widths.pop()
            lo = this
        write_rows(lo, hi)

    fmt(0, len(rows))
    return "".join(out)


_PRINTERS: Mapping[str, Callable[..., EventPrinter]] = {
    "compact": CompactPrinter,
    "dict": DictPrinter,
    "table": TablePrinter,
    "tab": TablePrinter,
    "json": JsonpbPrinter,
    "jsonpb": JsonpbPrinter,
}


def make_printer(
    output: str, out: BinaryIO, *, err: BinaryIO | None = None, options: PrintOptions | None = None
) -> EventPrinter:
    """The printer for Hubble's ``-o`` value (compact, dict, json, jsonpb, table)."""
    try:
        cls = _PRINTERS[output]
    except KeyError:
        raise ValueError(
            f"invalid output format {output!r}: expected one of {', '.join(OUTPUT_FORMATS)}"
        ) from None
    return cls(out, err=err, options=options)
