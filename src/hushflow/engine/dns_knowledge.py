"""What names each endpoint resolved to which IPs, learned from Hubble's DNS flows.

Cilium's DNS proxy records every answer per endpoint, then merges them into one cache that
all toFQDNs selectors read (reference §B.2): an IP that any endpoint resolved for a name is
selected by every selector matching that name. `DnsKnowledge` keeps the same two views: an
entry per (endpoint, name) with its IPs and expiry, and a reverse index IP -> entries.

Time always comes from the flows (`now` is the flow's own time), never from the wall clock, so
replaying a recorded file gives the same answers as the live run did.

Memory is bounded: at most `max_names` (endpoint, name) entries; the least recently refreshed
entry is evicted first and counted in `evictions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hushflow.flow.dns import DnsAnswer
from hushflow.policy.fqdn import dns_name

DEFAULT_MAX_NAMES = 1_000_000


@dataclass(frozen=True, slots=True)
class KnownAnswer:
    """One remembered answer, for explanations."""

    endpoint: str
    name: str  # lowercase, no trailing dot
    ips: tuple[str, ...]
    ttl: int
    seen_at: float  # flow time of the answer, seconds since the epoch
    expires_at: float


_Entry = tuple[float, float, "str | tuple[str, ...]"]  # (expires_at, seen_at, one IP or several)


def _ips_of(entry: _Entry) -> tuple[str, ...]:
    ips = entry[2]
    return (ips,) if isinstance(ips, str) else ips


class DnsKnowledge:
    """name -> IPs per endpoint, and IP -> names, with TTL expiry and a memory bound.

    `min_ttl` raises short TTLs (like Cilium's tofqdns-min-ttl); `grace` keeps an answer that
    long after its TTL ran out (connections opened just before expiry still show up later).

    The bound is an approximate LRU in two generations: answers learned or refreshed go to the
    young generation; when it holds half of `max_names`, the old generation is dropped whole
    (counted in `evictions`) and the young one becomes old. An answer refreshed while old moves
    back to young. This costs no per-entry bookkeeping, which is what keeps a million names
    under 400 MB (see benchmarks/bench_enrich.py).
    """

    def __init__(self, max_names: int = DEFAULT_MAX_NAMES, min_ttl: float = 0.0, grace: float = 0.0) -> None:
        if max_names < 2:
            raise ValueError("max_names must be at least 2")
        self.max_names = max_names
        self.min_ttl = min_ttl
        self.grace = grace
        # key "endpoint\x00name" -> (expires_at, seen_at, ips)
        self._young: dict[str, _Entry] = {}
        self._old: dict[str, _Entry] = {}
        # ip -> one key, or a list of keys when several names/endpoints resolved to it
        self._by_ip: dict[str, str | list[str]] = {}
        # names_for_ip of IPs many endpoints resolved (a shared CDN address can carry hundreds of
        # keys): ip -> (computed at, valid until, names). Valid for lookups between the two times
        # (flow time may go backwards); dropped whenever the IP's keys change.
        self._names: dict[str, tuple[float, float, tuple[str, ...]]] = {}
        self.evictions = 0
        self.answers_seen = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def _get(self, key: str) -> _Entry | None:
        entry = self._young.get(key)
        return entry if entry is not None else self._old.get(key)

    def entries(self) -> list[tuple[str, _Entry]]:
        """Every (key, entry) held, oldest generation first (for tests and state dumps)."""
        return [*self._old.items(), *self._young.items()]

    # -- learning ------------------------------------------------------------------------------

    def learn(self, endpoint: str, name: str, ips: Iterable[str], ttl: int, now: float) -> None:
        """Record an answer: `endpoint` resolved `name` to `ips` at flow time `now`."""
        self._record(endpoint, dns_name(name), ips, ttl, now)

    def learn_answer(self, answer: DnsAnswer, now: float) -> None:
        """Record a DNS answer seen in a flow at flow time `now`, for the endpoint that asked
        (its name and IPs are already in their one form)."""
        self._record(answer.client_key, answer.name, answer.ips, answer.ttl, now)

    def _record(self, endpoint: str, name: str, ips: Iterable[str], ttl: int, now: float) -> None:
        new_ips = set(ips)
        if not new_ips:
            return
        self.answers_seen += 1
        key = f"{endpoint}\x00{name}"
        old = self._young.pop(key, None)
        if old is None:
            old = self._old.pop(key, None)
        expires = now + max(ttl, self.min_ttl) + self.grace
        if old is None or old[0] < now:
            # The key becomes valid again (or is new): names_for_ip of its IPs changes.
            names = self._names
            for ip in new_ips:
                names.pop(ip, None)
        if old is not None:
            previous = _ips_of(old)
            if old[0] >= now:
                if new_ips.issubset(previous):
                    # The usual repeat of a live answer: the same IPs (all indexed), later expiry.
                    self._young[key] = (max(expires, old[0]), now, old[2])
                    if len(self._young) >= self.max_names // 2:
                        self._rotate()
                    return
                # Cilium keeps the IPs of earlier answers until they expire: merge them.
                new_ips.update(previous)
                expires = max(expires, old[0])
            else:
                for ip in previous:
                    if ip not in new_ips:
                        self._unindex(ip, key)
        ordered = tuple(sorted(new_ips))
        self._young[key] = (expires, now, ordered[0] if len(ordered) == 1 else ordered)
        for ip in ordered:
            self._index(ip, key)
        if len(self._young) >= self.max_names // 2:
            self._rotate()

    def _rotate(self) -> None:
        self._names.clear()
        for key, entry in self._old.items():
            for ip in _ips_of(entry):
                self._unindex(ip, key)
        self.evictions += len(self._old)
        self._old = self._young
        self._young = {}

    def _index(self, ip: str, key: str) -> None:
        current = self._by_ip.get(ip)
        if current is None:
            self._by_ip[ip] = key
        elif isinstance(current, str):
            if current != key:
                self._by_ip[ip] = [current, key]
                self._names.pop(ip, None)
        elif key not in current:
            current.append(key)
            self._names.pop(ip, None)

    def _unindex(self, ip: str, key: str) -> None:
        self._names.pop(ip, None)
        current = self._by_ip.get(ip)
        if current is None:
            return
        if isinstance(current, str):
            if current == key:
                del self._by_ip[ip]
            return
        if key in current:
            current.remove(key)
        if len(current) == 1:
            self._by_ip[ip] = current[0]
        elif not current:
            del self._by_ip[ip]

    # -- lookups -------------------------------------------------------------------------------

    def _keys_for(self, ip: str) -> list[str]:
        current = self._by_ip.get(ip)
        if current is None:
            return []
        return [current] if isinstance(current, str) else list(current)

    def answers_for_ip(self, ip: str, now: float, endpoint: str | None = None) -> list[KnownAnswer]:
        """Unexpired answers that contained `ip` (of one endpoint, or of any endpoint)."""
        out = []
        for key in self._keys_for(ip):
            entry = self._get(key)
            if entry is None or entry[0] < now:
                continue
            who, name = key.split("\x00", 1)
            if endpoint is not None and who != endpoint:
                continue
            ttl = max(0, round(entry[0] - entry[1] - self.grace))
            out.append(KnownAnswer(who, name, _ips_of(entry), ttl, entry[1], entry[0]))
        return sorted(out, key=lambda a: (a.name, a.endpoint))

    def names_for_ip(self, ip: str, now: float) -> tuple[str, ...]:
        """Every name any endpoint resolved to `ip` that has not expired (Cilium's global view)."""
        cached = self._names.get(ip)
        if cached is not None and cached[0] <= now <= cached[1]:
            return cached[2]
        current = self._by_ip.get(ip)
        if current is None:
            return ()
        if isinstance(current, str):
            entry = self._get(current)
            return (current.split("\x00", 1)[1],) if entry is not None and entry[0] >= now else ()
        names = set()
        until = math.inf  # the names stay these until the first of their answers expires
        for key in current:
            entry = self._get(key)
            if entry is not None and entry[0] >= now:
                names.add(key.split("\x00", 1)[1])
                until = min(until, entry[0])
        result = tuple(sorted(names))
        self._names[ip] = (now, until, result)
        return result

    def expire(self, now: float) -> int:
        """Drop every expired entry; returns how many. Lookups ignore expired entries anyway."""
        dropped = 0
        for generation in (self._old, self._young):
            dead = [key for key, entry in generation.items() if entry[0] < now]
            for key in dead:
                for ip in _ips_of(generation.pop(key)):
                    self._unindex(ip, key)
            dropped += len(dead)
        return dropped
