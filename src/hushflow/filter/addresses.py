"""IP address filters: ``source_ip``, ``destination_ip``, ``source_ip_xlated``.

Hubble: a value containing ``/`` is a prefix and matches by containment; any other value must
parse as an address and is then compared *as a string* with the flow's address (so ``::1`` and
``0::1`` differ). A flow without the address never matches. Values are validated with Go's
``net/netip`` rules, and error messages reproduce Go's wording.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from hushflow.filter.field_filter import COST_SCAN, COST_STRING, FieldFilter, FilterError, FlowDict, json_safe, quoted
from hushflow.filter.pflag import go_quote

# Bounded per-filter memo of parsed flow addresses: cluster traffic reuses few addresses, so
# most CIDR checks become one dict lookup. Cleared (not evicted) when full: simple and bounded.
_ADDRESS_MEMO_LIMIT = 1 << 16


class _AddrError(ValueError):
    def __init__(self, text: str, msg: str, at: str = "") -> None:
        tail = f" (at {go_quote(at)})" if at else ""
        super().__init__(f"ParseAddr({go_quote(text)}): {msg}{tail}")


def _ipv4_fields(text: str, s: str) -> None:
    """Go's parseIPv4Fields: validates a dotted quad, raising its error messages."""
    val = 0
    pos = 0
    digits = 0
    for i, c in enumerate(s):
        if "0" <= c <= "9":
            if digits == 1 and val == 0:
                raise _AddrError(text, "IPv4 field has octet with leading zero")
            val = val * 10 + ord(c) - 48
            digits += 1
            if val > 255:
                raise _AddrError(text, "IPv4 field has value >255")
        elif c == ".":
            if i == 0 or i == len(s) - 1 or s[i - 1] == ".":
                raise _AddrError(text, "IPv4 field must have at least one digit", s[i:])
            if pos == 3:
                raise _AddrError(text, "IPv4 address too long")
            pos += 1
            val = 0
            digits = 0
        else:
            raise _AddrError(text, "unexpected character", s[i:])
    if pos < 3:
        raise _AddrError(text, "IPv4 address too short")


def _ipv6(text: str) -> str:
    """Go's parseIPv6 validation; returns the zone ('' if none)."""
    s = text
    zone = ""
    if "%" in s:
        s, zone = s.split("%", 1)
        if not zone:
            raise _AddrError(text, "zone must be a non-empty string")
    i = 0
    ellipsis = -1
    if s.startswith("::"):
        ellipsis = 0
        s = s[2:]
        if not s:
            return zone
    while i < 16:
        off = 0
        acc = 0
        while off < len(s):
            c = s[off]
            if c in "0123456789abcdefABCDEF":
                acc = (acc << 4) + int(c, 16)
            else:
                break
            if off > 3:
                raise _AddrError(text, "each group must have 4 or less digits", s)
            if acc > 0xFFFF:
                raise _AddrError(text, "IPv6 field has value >=2^16", s)
            off += 1
        if off == 0:
            raise _AddrError(text, "each colon-separated field must have at least one digit", s)
        if off < len(s) and s[off] == ".":
            if ellipsis < 0 and i != 12:
                raise _AddrError(text, "embedded IPv4 address must replace the final 2 fields of the address", s)
            if i + 4 > 16:
                raise _AddrError(
                    text, "too many hex fields to fit an embedded IPv4 at the end of the address", s
                )
            _ipv4_fields(text, s)
            s = ""
            i += 4
            break
        i += 2
        s = s[off:]
        if not s:
            break
        if s[0] != ":":
            raise _AddrError(text, "unexpected character, want colon", s)
        if len(s) == 1:
            raise _AddrError(text, "colon must be followed by more characters", s)
        s = s[1:]
        if s[0] == ":":
            if ellipsis >= 0:
                raise _AddrError(text, "multiple :: in address", s)
            ellipsis = i
            s = s[1:]
            if not s:
                break
    if s:
        raise _AddrError(text, "trailing garbage after address", s)
    if i < 16 and ellipsis < 0:
        raise _AddrError(text, "address string too short")
    if i >= 16 and ellipsis >= 0:
        raise _AddrError(text, "the :: must expand to at least one field of zeros")
    return zone


def go_parse_addr(text: str) -> str:
    """Validate like Go's ``netip.ParseAddr``; returns the zone. Raises ValueError with Go's text."""
    for c in text:
        if c == ".":
            _ipv4_fields(text, text)
            return ""
        if c == ":":
            return _ipv6(text)
        if c == "%":
            raise _AddrError(text, "missing IPv6 address")
    raise _AddrError(text, "unable to parse IP")


def go_parse_prefix(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Go's ``netip.ParsePrefix`` (host bits allowed), with its error messages."""

    def fail(msg: str) -> ValueError:
        return ValueError(f"netip.ParsePrefix({go_quote(text)}): {msg}")

    i = text.rfind("/")
    if i < 0:
        raise fail("no '/'")
    addr, bits_text = text[:i], text[i + 1 :]
    try:
        zone = go_parse_addr(addr)
    except ValueError as err:
        raise fail(str(err)) from None
    if zone:
        raise fail("IPv6 zones cannot be present in a prefix")
    if not bits_text or (len(bits_text) > 1 and not "1" <= bits_text[0] <= "9") or not bits_text.isascii() or (
        not bits_text.isdigit()
    ):
        raise fail("bad bits after slash: " + go_quote(bits_text))
    ip = ipaddress.ip_address(addr)
    if int(bits_text) > ip.max_prefixlen:
        raise fail("prefix length out of range")
    return ipaddress.ip_network(f"{addr}/{int(bits_text)}", strict=False)


def _prefix_needle(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bytes | None:
    """Literal start of every canonical address in an IPv4 prefix of /8, /16 or /24 (quoted)."""
    if net.version != 4 or net.prefixlen not in (8, 16, 24, 32):
        return None
    octets = str(net.network_address).split(".")[: net.prefixlen // 8]
    if net.prefixlen == 32:
        return quoted(".".join(octets))
    return b'"' + ".".join(octets).encode() + b"."


def compile_ip_filter(field: str, values: Sequence[str], ip_key: str) -> FieldFilter:
    """``ip_key`` is the key inside ``flow["IP"]``: source, destination or source_xlated."""
    exact: set[str] = set()
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    needles: list[bytes] | None = []
    for value in values:
        if "/" in value:
            try:
                net = go_parse_prefix(value)
            except ValueError as err:
                raise FilterError(f"invalid CIDR {go_quote(value)} in filter: {err}") from None
            nets.append(net)
            needle = _prefix_needle(net)
        else:
            try:
                go_parse_addr(value)
            except ValueError as err:
                raise FilterError(f"invalid IP address {go_quote(value)} in filter: {err}") from None
            exact.add(value)
            needle = quoted(value) if json_safe(value) else None
        if needle is None or needles is None:
            needles = None
        else:
            needles.append(needle)
    exact_set = frozenset(exact)
    clause = () if not needles else (tuple(needles),)

    if not nets:

        def match_exact(flow: FlowDict) -> bool:
            ip = flow.get("IP")
            return ip is not None and ip.get(ip_key) in exact_set

        return FieldFilter(field, match_exact, COST_STRING, clause)

    v4 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)
    v6 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 6)
    memo: dict[str, tuple[int, int] | None] = {}

    def parse(text: str) -> tuple[int, int] | None:
        if "%" in text:  # netip: a zoned address is never inside a prefix
            return None
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return None
        return addr.version, int(addr)

    def match_cidr(flow: FlowDict) -> bool:
        ip = flow.get("IP")
        if ip is None:
            return False
        text = ip.get(ip_key)
        if not text:
            return False
        if text in exact_set:
            return True
        try:
            parsed = memo[text]
        except KeyError:
            if len(memo) >= _ADDRESS_MEMO_LIMIT:
                memo.clear()
            parsed = memo[text] = parse(text)
        if parsed is None:
            return False
        version, number = parsed
        for network, mask in v4 if version == 4 else v6:
            if number & mask == network:
                return True
        return False

    return FieldFilter(field, match_cidr, COST_SCAN, clause)
