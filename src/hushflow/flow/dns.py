"""The DNS answer a Hubble flow carries, parsed once into the value every consumer reads.

Cilium's DNS proxy reports each response as an L7 flow (``l7.type: RESPONSE``, ``l7.dns``) that
travels from the resolver back to the client, so the client (the endpoint whose policy the
answer feeds) is the flow's *destination*. Only successful answers (rcode 0) that name a query
and carry IPs teach anything: the deny learner (which IPs a deny must hold) and the attribution's
DNS knowledge (which names an IP stands for) both take this one `DnsAnswer`.

Names take one form everywhere in hushflow: `hushflow.policy.fqdn.dns_name` (lowercase, no
trailing dot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hushflow.policy.fqdn import dns_name


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One successful DNS response seen in a flow."""

    name: str  # the query, in hushflow's one name form
    ips: tuple[str, ...]
    ttl: int  # seconds, as the answer gave it
    client: Mapping[str, Any]  # the Hubble endpoint that asked (the flow's destination)
    client_key: str  # a stable name for it: namespace/pod, node#endpoint-ID, or its IP


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
    """The successful DNS answer of a flow, or None (no DNS, a request, a failure, no IPs)."""
    l7 = flow.get("l7")
    if not l7:
        return None
    dns = l7.get("dns")
    if not dns or l7.get("type") != "RESPONSE" or dns.get("rcode", 0) != 0:
        return None
    ips = dns.get("ips")
    query = dns.get("query")
    if not ips or not query:
        return None
    client = flow.get("destination") or {}
    client_ip = (flow.get("IP") or {}).get("destination", "")
    return DnsAnswer(
        name=dns_name(query),
        ips=tuple(ips),
        ttl=int(dns.get("ttl", 0)),
        client=client,
        client_key=endpoint_key(client, client_ip, flow.get("node_name", "")),
    )
