"""The DNS answer a Hubble flow carries, parsed once into the value every consumer reads.

Cilium's DNS proxy reports each response as an L7 flow (``l7.type: RESPONSE``, ``l7.dns``) that
travels from the resolver back to the client, so the client (the endpoint whose policy the
answer feeds) is the flow's *destination*. Only successful answers (rcode 0) that name a query
and carry IPs teach anything: the deny learner (which IPs a deny must hold) and the attribution's
DNS knowledge (which names an IP stands for) both take this one `DnsAnswer`.

Names take one form everywhere in hushflow: `hushflow.policy.fqdn.dns_name` (lowercase, no
trailing dot).

The answer is untrusted input: whoever runs a denied domain also runs its DNS and chooses every
value in it. Each IP is validated here, once, before anything stores it: a value that is not a
string, an address with a zone (``fe80::1%eth0``) or anything `ipaddress` does not read is left
out of `DnsAnswer.ips` and listed in `DnsAnswer.rejected` with a reason, for the caller to count
and report. Addresses are kept in `ipaddress`'s canonical spelling (``2001:db8::1``, never
``2001:DB8:0::1``), so one address is one key everywhere. The TTL is clamped to
[0, `MAX_TTL`]: not a number, NaN, infinite, negative or absurd values cannot pin an address
for ever nor expire it at once.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hushflow.policy.fqdn import dns_name

#: The longest TTL an answer may give (1 day); longer ones are clamped to it. DNS allows up to
#: 2^31-1 s (RFC 2181), but no deny should hold an address a day past its last answer.
MAX_TTL = 86_400
#: Rejected values are reported with at most this many characters of their text.
_SHOWN = 80

#: Why a value of an answer was left out (the `reason` label of hushflow_malformed_input_total).
NOT_A_LIST = "dns-ips-not-a-list"
NOT_A_STRING = "dns-ip-not-a-string"
ZONED = "dns-ip-with-zone"
NOT_AN_IP = "dns-ip-invalid"
BAD_TTL = "dns-ttl-out-of-range"


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One successful DNS response seen in a flow, its values validated."""

    name: str  # the query, in hushflow's one name form
    ips: tuple[str, ...]  # valid addresses only, canonical spelling, in answer order
    ttl: int  # seconds, clamped to [0, MAX_TTL]
    client: Mapping[str, Any]  # the Hubble endpoint that asked (the flow's destination)
    client_key: str  # a stable name for it: namespace/pod, node#endpoint-ID, or its IP
    server_ip: str = ""  # the DNS server that answered (the flow's source address)
    rejected: tuple[tuple[str, str], ...] = ()  # (reason, the value as text) of what was left out


@lru_cache(maxsize=1 << 16)
def _canonical(text: str) -> str | None:
    # The same few addresses come back answer after answer: parse each spelling once. The
    # cache is bounded, so hostile answers full of new spellings cannot grow it.
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def canonical_ip(value: Any) -> str | None:
    """The canonical spelling of an address (``2001:DB8:0::1`` -> ``2001:db8::1``), or None for
    anything else: not a string, an address with a zone, not an address."""
    if not isinstance(value, str) or "%" in value:
        return None
    return _canonical(value)


def valid_ips(values: Iterable[Any]) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The canonical spelling of each valid address in `values` (duplicates dropped, order kept),
    and (reason, value) for each value left out."""
    ips: dict[str, None] = {}
    rejected: list[tuple[str, str]] = []
    for value in values:
        ip = canonical_ip(value)
        if ip is not None:
            ips[ip] = None
        elif not isinstance(value, str):
            rejected.append((NOT_A_STRING, repr(value)[:_SHOWN]))
        elif "%" in value:
            rejected.append((ZONED, value[:_SHOWN]))
        else:
            rejected.append((NOT_AN_IP, value[:_SHOWN]))
    return tuple(ips), rejected


def clamp_ttl(value: Any) -> tuple[int, bool]:
    """A TTL in [0, MAX_TTL] and whether the value had to be changed to get there."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0, True  # a string, null, a list: no TTL at all
    if math.isnan(value) or value < 0:
        return 0, True
    if value > MAX_TTL:  # infinity too
        return MAX_TTL, True
    return int(value), False


def endpoint_key(endpoint: Mapping[str, Any] | None, ip: str, node_name: str) -> str:
    """A stable name for the endpoint that asked: namespace/pod, else node/endpoint-ID, else its IP."""
    if endpoint:
        pod = endpoint.get("pod_name")
        if pod:
            return f"{endpoint.get('namespace', '')}/{pod}"
        ep_id = endpoint.get("ID")
        if ep_id:
            return f"{node_name}#{ep_id}"
    return ip


def dns_answer_of(flow: Mapping[str, Any]) -> DnsAnswer | None:
    """The successful DNS answer of a flow, or None (no DNS, a request, a failure, no IPs, no
    query). An answer whose every IP was rejected comes back with no `ips` and the `rejected`
    values, so that the caller counts them."""
    l7 = flow.get("l7")
    if not l7:
        return None
    dns = l7.get("dns")
    if not dns or l7.get("type") != "RESPONSE" or dns.get("rcode", 0) != 0:
        return None
    query = dns.get("query")
    values = dns.get("ips")
    if not query or not isinstance(query, str) or not values:
        return None
    rejected: list[tuple[str, str]] = []
    if isinstance(values, list):
        ips, rejected = valid_ips(values)
    else:
        ips = ()
        rejected.append((NOT_A_LIST, repr(values)[:_SHOWN]))
    ttl, clamped = clamp_ttl(dns.get("ttl", 0))
    if clamped:
        rejected.append((BAD_TTL, repr(dns.get("ttl"))[:_SHOWN]))
    client = flow.get("destination") or {}
    addresses = flow.get("IP") or {}
    return DnsAnswer(
        name=dns_name(query),
        ips=ips,
        ttl=ttl,
        client=client,
        client_key=endpoint_key(client, addresses.get("destination", ""), flow.get("node_name", "")),
        server_ip=canonical_ip(addresses.get("source")) or "",
        rejected=tuple(rejected),
    )
