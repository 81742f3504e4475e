"""Resolve every denied `matchName` ourselves, so its IPs are denied before any pod asks.

A and AAAA through dnspython (the system resolvers, or `nameservers` given), TTLs honoured:
`next_refresh` says when to resolve again (before the shortest TTL runs out). A failure
(timeout, SERVFAIL, no nameserver) is reported and changes nothing: IPs are never removed
because a resolver had a bad moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

# (name, rdtype) -> (addresses, ttl); raises dns.resolver.NXDOMAIN / NoAnswer / other DNSException
LookupFn = Callable[[str, str], tuple[list[str], float]]
REFRESH_FRACTION = 0.8
MIN_REFRESH = 30.0


@dataclass(slots=True)
class ResolveResult:
    answers: dict[str, tuple[list[str], float]] = field(default_factory=dict)  # name -> (IPs, TTL)
    errors: dict[str, str] = field(default_factory=dict)  # name -> what went wrong
    missing: list[str] = field(default_factory=list)  # NXDOMAIN or no address records
    next_refresh: float = 0.0


def dnspython_lookup(nameservers: Sequence[str] = (), timeout: float = 3.0, port: int = 53) -> LookupFn:
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.lifetime = timeout

    def lookup(name: str, rdtype: str) -> tuple[list[str], float]:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False)
        if answer.rrset is None:
            return [], 0.0
        return [record.to_text() for record in answer.rrset], float(answer.rrset.ttl)

    return lookup


class PreResolver:
    def __init__(self, lookup: LookupFn | None = None) -> None:
        self.lookup = lookup or dnspython_lookup()

    def resolve(self, names: Iterable[str], now: float) -> ResolveResult:
        result = ResolveResult()
        shortest = None
        for name in sorted(set(names)):
            ips: list[str] = []
            ttls: list[float] = []
            failure = None
            for rdtype in ("A", "AAAA"):
                try:
                    addresses, ttl = self.lookup(name, rdtype)
                except dns.resolver.NXDOMAIN:
                    break  # the name does not exist: nothing to deny yet
                except (dns.resolver.NoAnswer, dns.resolver.NoMetaqueries):
                    continue
                except dns.exception.DNSException as exc:
                    failure = f"{rdtype}: {exc.__class__.__name__}: {exc}"
                    continue
                ips.extend(addresses)
                if addresses:
                    ttls.append(ttl)
            if ips:
                ttl = min(ttls) if ttls else 0.0
                result.answers[name] = (sorted(set(ips)), ttl)
                shortest = ttl if shortest is None else min(shortest, ttl)
            elif failure:
                result.errors[name] = failure
            else:
                result.missing.append(name)
        delay = MIN_REFRESH if shortest is None else max(MIN_REFRESH, shortest * REFRESH_FRACTION)
        result.next_refresh = now + delay
        return result
