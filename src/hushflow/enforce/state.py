"""What hushflow has learned for each FQDN deny: the IPs to deny, why, and until when.

An IP stays until its TTL — raised to `min_ttl` (default 1 h) plus `grace` — passes without
the name being seen again (resolved or answered again). Upstream and resolver errors never
remove anything: only time does.

The state survives restarts: `save` writes a JSON file atomically (temporary file in the same
directory, fsync, rename, fsync of the directory), so a crash between two writes leaves the
previous complete file. A long-running process also keeps a journal next to it
(`<state>.journal`, one fsync'ed JSON line per learned IP, written *before* the IP is published
to a CIDR group): `load` replays it over the snapshot, so nothing already published is lost
even when the process is killed between two snapshots. `save` then starts a new journal.

What is loaded is checked like any input: a state file or journal of an older version may hold
values a DNS answer once slipped in (``fe80::1%eth0``, ``not-an-ip``, a number). Such entries
are dropped and listed in `DenyState.repaired` (the file is rewritten at the next snapshot), so
one bad value never turns into a crash loop at every start.

Besides the denies, the state remembers the IPs *allowed* names resolved to (`allowed`: IP ->
allow rule id -> name -> expiry), so that the shared-IP guard still knows, after a restart or a
journal replay, that an IP a hostile answer gives for a denied name also serves an allowed one.
It is bounded (`MAX_ALLOWED_IPS`, oldest seen forgotten first) and expires like the denies.

Per deny and name, the IPs learned for that name are kept in the order they were last seen
(`by_name`), so that a bound per name (`evict_over`) drops the oldest-seen first, as Cilium's
``--tofqdns-endpoint-max-ip-per-hostname`` does.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hushflow.enforce.atomic_file import write_atomic
from hushflow.flow.dns import MAX_TTL, canonical_ip

STATE_VERSION = 1
DEFAULT_MIN_TTL = 3600.0
#: Most IPs of allowed names remembered for the shared-IP guard; beyond it the oldest seen go.
MAX_ALLOWED_IPS = 100_000
#: Allowed-IP journal lines waiting for the next journal write; beyond it they wait for the snapshot.
MAX_PENDING_ALLOWED = 10_000


class StateError(Exception):
    """The state file exists but cannot be used; the message names the file and what to do."""


@dataclass(slots=True)
class IpRecord:
    expires: float
    first_seen: float
    last_seen: float
    names: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)  # "resolver", "observed"

    def to_json(self) -> dict[str, Any]:
        return {
            "expires": round(self.expires, 3),
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "names": sorted(self.names),
            "sources": sorted(self.sources),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IpRecord:
        """Raises ValueError, TypeError or KeyError for a record of the wrong shape."""
        expires, first_seen, last_seen = float(data["expires"]), float(data["first_seen"]), float(data["last_seen"])
        if not all(math.isfinite(value) for value in (expires, first_seen, last_seen)):
            raise ValueError("a time that is not a finite number")
        names, sources = data.get("names", ()), data.get("sources", ())
        if not isinstance(names, list | tuple) or not isinstance(sources, list | tuple):
            raise TypeError("names and sources must be lists")
        return cls(expires, first_seen, last_seen, {str(name) for name in names}, {str(source) for source in sources})


def ip_sort_key(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return address.version, int(address)


@dataclass(frozen=True, slots=True)
class AllowedEntry:
    """An IP an allowed name resolved to, for the journal (replayed into `DenyState.allowed`)."""

    allow_id: str
    ip: str
    name: str
    expires: float

    def line(self) -> bytes:
        return (
            json.dumps({"a": self.allow_id, "ip": self.ip, "n": self.name, "x": self.expires}, separators=(",", ":"))
            .encode()
            + b"\n"
        )


@dataclass(frozen=True, slots=True)
class JournalEntry:
    deny_id: str
    ip: str
    name: str
    ttl: float
    at: float
    source: str

    def line(self) -> bytes:
        return (
            json.dumps(
                {"d": self.deny_id, "ip": self.ip, "n": self.name, "t": self.ttl, "at": self.at, "s": self.source},
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )


def journal_path(path: str) -> str:
    return path + ".journal"


class Journal:
    """Append-only, fsync'ed log of learned IPs between two snapshots."""

    def __init__(self, path: str) -> None:
        self.path = journal_path(path)
        self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the process lifetime

    def append(self, entries: Iterable[JournalEntry | AllowedEntry], *, sync: bool = True) -> None:
        """Append `entries`; with `sync` (learned deny IPs) fsync before returning. Raises OSError
        (a full disk): the caller reports it and goes on, the next snapshot holds the lines."""
        data = b"".join(entry.line() for entry in entries)
        if data:
            self._handle.write(data)
            self._handle.flush()
            if sync:
                os.fsync(self._handle.fileno())

    def reset(self) -> None:
        """After a snapshot: the journal starts empty (replaying old lines would be harmless)."""
        self._handle.truncate(0)
        self._handle.seek(0)
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


@dataclass(slots=True)
class DenyState:
    """deny id -> IP -> record; and the IPs kept out because an allowed name shares them."""

    min_ttl: float = DEFAULT_MIN_TTL
    grace: float = 0.0
    denies: dict[str, dict[str, IpRecord]] = field(default_factory=dict)
    # deny id -> IP -> allowed names that share it (kept out of the deny, reported)
    shared: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # what loading dropped: "file: deny id: value (why)", for the caller to report
    repaired: list[str] = field(default_factory=list)
    # IP -> allow rule id -> allowed name -> expiry (the shared-IP guard's memory), oldest seen first
    allowed: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # allowed IPs learned since the last journal write (for the journal; bounded)
    pending_allowed: list[AllowedEntry] = field(default_factory=list)
    # (deny id, name) -> IPs learned for that name, least recently seen first
    by_name: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)

    def add(self, deny_id: str, ip: str, name: str, ttl: float, now: float, source: str) -> bool:
        """Record that `name` resolved to `ip`; True when the IP is new for this deny. The TTL is
        held to DNS's range (as answers are), so no expiry overflows to infinity."""
        expires = now + max(min(ttl, MAX_TTL), self.min_ttl) + self.grace
        records = self.denies.setdefault(deny_id, {})
        record = records.get(ip)
        seen = self.by_name.setdefault((deny_id, name), {})
        seen.pop(ip, None)
        seen[ip] = None
        if record is None:
            records[ip] = IpRecord(expires, now, now, {name}, {source})
            return True
        record.expires = max(record.expires, expires)
        record.last_seen = max(record.last_seen, now)
        record.names.add(name)
        record.sources.add(source)
        return False

    def remove(self, deny_id: str, ip: str) -> IpRecord | None:
        """Take `ip` out of a deny (every name it was learned for); its record, or None."""
        record = self.denies.get(deny_id, {}).pop(ip, None)
        if record is not None:
            for name in record.names:
                seen = self.by_name.get((deny_id, name))
                if seen is not None:
                    seen.pop(ip, None)
                    if not seen:
                        del self.by_name[(deny_id, name)]
        return record

    def evict_over(self, deny_id: str, name: str, limit: int) -> list[str]:
        """Keep at most `limit` IPs learned for `name` in a deny, dropping the least recently seen;
        an IP another name of the deny also resolved to stays denied for that name. Returns the IPs
        taken out of the deny."""
        seen = self.by_name.get((deny_id, name))
        removed: list[str] = []
        records = self.denies.get(deny_id, {})
        while seen is not None and len(seen) > limit:
            ip = next(iter(seen))
            del seen[ip]
            record = records.get(ip)
            if record is None:
                continue
            record.names.discard(name)
            if not record.names:
                del records[ip]
                removed.append(ip)
        return removed

    def allow(self, allow_id: str, ip: str, name: str, ttl: float, now: float) -> bool:
        """Remember that an allowed name resolved to `ip`; True when that is news (then it waits
        in `pending_allowed` for the journal)."""
        expires = now + max(min(ttl, MAX_TTL), self.min_ttl) + self.grace
        rules = self.allowed.pop(ip, None)  # re-inserted: the dict keeps the least recently seen first
        if rules is None:
            rules = {}
            while len(self.allowed) >= MAX_ALLOWED_IPS:
                del self.allowed[next(iter(self.allowed))]
        self.allowed[ip] = rules
        names = rules.setdefault(allow_id, {})
        new = name not in names or names[name] < expires - max(self.min_ttl, 1.0) / 2
        names[name] = max(names.get(name, 0.0), expires)
        if new and len(self.pending_allowed) < MAX_PENDING_ALLOWED:
            self.pending_allowed.append(AllowedEntry(allow_id, ip, name, round(names[name], 3)))
        return new

    def take_pending_allowed(self) -> list[AllowedEntry]:
        pending, self.pending_allowed = self.pending_allowed, []
        return pending

    def note_shared(self, deny_id: str, ip: str, allowed_names: Iterable[str]) -> None:
        self.shared.setdefault(deny_id, {})[ip] = sorted(set(allowed_names))

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Remove IPs whose time ran out; returns (deny id, ip) of each removed."""
        removed = []
        for deny_id, records in self.denies.items():
            for ip in [ip for ip, record in records.items() if record.expires < now]:
                self.remove(deny_id, ip)
                removed.append((deny_id, ip))
        for ip in list(self.allowed):
            rules = self.allowed[ip]
            for allow_id in list(rules):
                names = rules[allow_id]
                for name in [name for name, expires in names.items() if expires < now]:
                    del names[name]
                if not names:
                    del rules[allow_id]
            if not rules:
                del self.allowed[ip]
        return removed

    def seed_from_groups(self, groups: Iterable[Mapping[str, Any]], now: float) -> int:
        """Take back the IPs of CiliumCIDRGroups hushflow published before (a state file lost with
        a pod, a first run with --apply): they stay denied for `min_ttl` unless seen again."""
        added = 0
        for group in groups:
            deny_id = ((group.get("metadata") or {}).get("labels") or {}).get("hushflow.io/deny")
            if not deny_id:
                continue
            for cidr in (group.get("spec") or {}).get("externalCIDRs") or []:
                ip = canonical_ip(str(cidr).split("/")[0])
                if ip is None:
                    self.repaired.append(f"CiliumCIDRGroup of {deny_id}: {cidr!r} is no address, not taken back")
                    continue
                if ip not in self.denies.get(deny_id, {}):
                    self.add(deny_id, ip, "(from the cluster)", 0, now, "cluster")
                    added += 1
        return added

    def ips(self, deny_id: str) -> list[str]:
        return sorted(self.denies.get(deny_id, {}), key=ip_sort_key)

    def total(self) -> int:
        return sum(len(records) for records in self.denies.values())

    def keep_only(self, deny_ids: Iterable[str]) -> list[str]:
        """Forget denies that no longer exist in the policies; returns their ids."""
        wanted = set(deny_ids)
        gone = [deny_id for deny_id in self.denies if deny_id not in wanted]
        for deny_id in gone:
            del self.denies[deny_id]
            self.shared.pop(deny_id, None)
        for key in [key for key in self.by_name if key[0] not in wanted]:
            del self.by_name[key]
        return gone

    def keep_only_allows(self, allow_ids: Iterable[str]) -> None:
        """Forget allowed IPs of allow rules no longer in the policies."""
        wanted = set(allow_ids)
        for ip in list(self.allowed):
            rules = self.allowed[ip]
            for allow_id in [allow_id for allow_id in rules if allow_id not in wanted]:
                del rules[allow_id]
            if not rules:
                del self.allowed[ip]

    # -- persistence ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "denies": {
                deny_id: {ip: records[ip].to_json() for ip in sorted(records, key=ip_sort_key)}
                for deny_id, records in sorted(self.denies.items())
            },
            "shared": {deny_id: dict(sorted(ips.items())) for deny_id, ips in sorted(self.shared.items()) if ips},
            "allowed": {
                ip: {allow_id: {name: round(expires, 3) for name, expires in sorted(names.items())}
                     for allow_id, names in sorted(rules.items())}
                for ip, rules in self.allowed.items()  # least recently seen first: the order is the eviction order
            },
        }

    def save(self, path: str) -> None:
        """Write atomically: a reader (or a crash) sees the old file or the new one, never half."""
        data = json.dumps(self.to_json(), indent=1, sort_keys=False).encode() + b"\n"
        write_atomic(path, data, sync_directory=True)

    @classmethod
    def load(cls, path: str, min_ttl: float = DEFAULT_MIN_TTL, grace: float = 0.0) -> DenyState:
        """The saved state (journal replayed), or an empty one when nothing was saved yet."""
        state = cls(min_ttl=min_ttl, grace=grace)
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            state.replay_journal(path)
            return state
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise StateError(
                f"{path}: cannot read the state file ({exc}); fix or move it away — hushflow will then "
                "start empty and relearn the IPs"
            ) from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StateError(f"{path}: not a hushflow state file of version {STATE_VERSION}")
        denies, shared = data.get("denies", {}), data.get("shared", {})
        if not isinstance(denies, dict) or not isinstance(shared, dict):
            raise StateError(f"{path}: malformed state file (denies and shared must be objects)")
        for deny_id, records in denies.items():
            if not isinstance(records, dict):
                state.repaired.append(f"{path}: {deny_id}: not an object of IPs, dropped")
                continue
            kept = state.denies.setdefault(str(deny_id), {})
            for value, record in records.items():
                ip = canonical_ip(value)
                if ip is None:
                    state.repaired.append(f"{path}: {deny_id}: {value!r} is no IP address, dropped")
                    continue
                try:
                    kept[ip] = IpRecord.from_json(record)
                except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                    state.repaired.append(f"{path}: {deny_id}: {ip}: malformed record ({exc}), dropped")
        for deny_id, ips in shared.items():
            if not isinstance(ips, dict):
                state.repaired.append(f"{path}: shared {deny_id}: not an object of IPs, dropped")
                continue
            for value, names in ips.items():
                ip = canonical_ip(value)
                if ip is None or not isinstance(names, list):
                    state.repaired.append(f"{path}: shared {deny_id}: {value!r} dropped")
                    continue
                state.shared.setdefault(str(deny_id), {})[ip] = [str(name) for name in names]
        state._load_allowed(path, data.get("allowed", {}))
        state._index_names()
        state.replay_journal(path)
        return state

    def _load_allowed(self, path: str, allowed: Any) -> None:
        if not isinstance(allowed, dict):
            self.repaired.append(f"{path}: allowed: not an object of IPs, dropped")
            return
        for value, rules in allowed.items():
            ip = canonical_ip(value)
            if ip is None or not isinstance(rules, dict):
                self.repaired.append(f"{path}: allowed: {value!r} dropped")
                continue
            for allow_id, names in rules.items():
                if not isinstance(names, dict):
                    self.repaired.append(f"{path}: allowed: {ip}: {allow_id!r} dropped")
                    continue
                for name, expires in names.items():
                    try:
                        when = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) \
                            else math.nan
                    except OverflowError:  # an integer beyond a float
                        when = math.nan
                    if not math.isfinite(when):
                        self.repaired.append(f"{path}: allowed: {ip}: {name!r} has no valid expiry, dropped")
                        continue
                    self.allowed.setdefault(ip, {}).setdefault(str(allow_id), {})[str(name)] = when
                    if len(self.allowed) > MAX_ALLOWED_IPS:
                        del self.allowed[next(iter(self.allowed))]

    def _index_names(self) -> None:
        """Rebuild `by_name` from the records, least recently seen first."""
        self.by_name.clear()
        for deny_id, records in self.denies.items():
            for ip, record in sorted(records.items(), key=lambda item: item[1].last_seen):
                for name in record.names:
                    self.by_name.setdefault((deny_id, name), {})[ip] = None

    def replay_journal(self, path: str) -> int:
        """Apply the journal written since the last snapshot; a torn last line is ignored."""
        try:
            with open(journal_path(path), "rb") as handle:
                lines = handle.read().split(b"\n")
        except FileNotFoundError:
            return 0
        replayed = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if "a" in item:  # an allowed name's IP, for the shared-IP guard
                    ip, expires = canonical_ip(item["ip"]), float(item["x"])
                    if ip is None or not math.isfinite(expires):
                        self.repaired.append(f"{journal_path(path)}: allowed {item['ip']!r}, dropped")
                        continue
                    names = self.allowed.setdefault(ip, {}).setdefault(str(item["a"]), {})
                    names[str(item["n"])] = max(names.get(str(item["n"]), 0.0), expires)
                    replayed += 1
                    continue
                ip = canonical_ip(item["ip"])
                ttl, at = float(item["t"]), float(item["at"])
                if ip is None or not (math.isfinite(ttl) and math.isfinite(at)):
                    where = f"{journal_path(path)}: {item['d']}"
                    self.repaired.append(f"{where}: {item['ip']!r} at {item['at']!r}, dropped")
                    continue
                self.add(str(item["d"]), ip, str(item["n"]), ttl, at, str(item["s"]))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
                continue  # a line cut short by a crash (or not hushflow's): everything else is intact
            replayed += 1
        return replayed
