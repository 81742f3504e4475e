"""Addresses a deny learned from DNS must never hold, whatever the answer says.

The party a deny targets runs the DNS that tells hushflow which IPs to deny. Without a guard,
an answer for `x.telemetry.example.com` of 169.254.169.254 (the cloud metadata service, reached
on port 80 by exactly the pods the deny selects), 127.0.0.1, the cluster's DNS server or a
service IP would turn the deny against the cluster itself. So some addresses are refused:

- always, the special-purpose ranges (RFC 6890): unspecified, loopback, link-local, multicast,
  the reserved 240.0.0.0/4 with the broadcast address, IPv4-mapped and IPv4-compatible IPv6
  forms, and the DNS server that gave the answer;
- by default, the private and shared ranges where clusters put their pods, services and nodes
  (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7). `--protect-cidr` replaces this list with
  the cluster's own pod and service CIDRs (or whatever else must stay reachable).

The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) stay
deniable: examples and tests use them, and `ipaddress.is_private`, which counts them as private,
is therefore not used. Every refusal is counted per reason (hushflow_deny_ips_refused_total).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused whatever the configuration says: (reason, networks).
SPECIAL_PURPOSE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("reserved", ("240.0.0.0/4",)),  # with 255.255.255.255, the limited broadcast
    ("ipv4-in-ipv6", ("::ffff:0:0/96", "::/96")),  # an IPv4 address in IPv6 clothes dodges the IPv4 ranges
)
#: Refused unless `--protect-cidr` says otherwise: where clusters live.
DEFAULT_PROTECTED: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

PROTECTED = "protected"  # the reason for an address of the configured ranges
DNS_SERVER = "dns-server"


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (a bare address is a /32 or /128). Raises ValueError naming the one that is wrong."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a CIDR: {text!r} (expected e.g. 10.0.0.0/8 or fd00::/8)") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class ProtectedAddresses:
    """Which addresses a deny refuses, and why."""

    protected: tuple[Network, ...] = field(default_factory=lambda: parse_networks(DEFAULT_PROTECTED))
    _special: tuple[tuple[str, Network], ...] = field(
        default_factory=lambda: tuple(
            (reason, network) for reason, texts in SPECIAL_PURPOSE for network in parse_networks(texts)
        )
    )

    @classmethod
    def from_cidrs(cls, cidrs: Sequence[str] | None) -> ProtectedAddresses:
        """`--protect-cidr` values; None keeps the defaults. Raises ValueError for a bad CIDR."""
        return cls() if cidrs is None else cls(parse_networks(cidrs))

    def refusal(self, ip: str, server_ip: str = "") -> str | None:
        """Why `ip` must not be denied (a reason), or None when it may be. `ip` is canonical
        (as `hushflow.flow.dns.valid_ips` spells it); `server_ip` answered the query."""
        if ip == server_ip:
            return DNS_SERVER
        address = ipaddress.ip_address(ip)
        for reason, network in self._special:
            if address.version == network.version and address in network:
                return reason
        for network in self.protected:
            if address.version == network.version and address in network:
                return PROTECTED
        return None
