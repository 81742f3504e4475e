"""The generated RPZ zone loaded into a real Unbound, queried over loopback with dnspython.

Unbound runs in the foreground with everything in tmp_path. What it would otherwise fetch from
the internet comes from a local root zone (`auth-zone: "."`, `for-upstream`), so the denied
names resolve without RPZ (the control test checks that) and nothing is ever sent beyond
127.0.0.1 (`outgoing-interface: 127.0.0.1`, no forwarders, no root hints needed). The allowed
name is local data. Unbound 1.17 answers `local-data` before applying RPZ, which is why the
denied names' data is in the local root zone rather than in local-data.

`make test` installs Debian's unbound when it is missing; these tests fail (never skip)
without it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from hushflow.enforce.dnsblock import BlockedName, rpz_zone
from hushflow.policy.fqdn import FQDNSelector
from hushflow.policy.source import Location
from tests.processes import running

WHERE = Location("policies/a.yaml", 15)
REASON = "CiliumNetworkPolicy my-namespace/app-external-block-policy spec.egressDeny[0] policies/a.yaml:15"
RPZ_ORIGIN = "rpz.hushflow.local."

ENTRIES = [
    BlockedName(FQDNSelector("api.evil.example", None, WHERE), REASON),
    BlockedName(FQDNSelector(None, "*.tracker.example", WHERE), REASON),  # RPZ: any depth (broader)
    BlockedName(FQDNSelector(None, "**.ads.example", WHERE, (1, 19)), REASON),  # RPZ: exact
    BlockedName(FQDNSelector(None, "api-*.evil.example", WHERE), REASON),  # RPZ cannot express it
]

# What "the internet" answers: every name here resolves when no RPZ applies.
UPSTREAM = {
    "api.evil.example.": "192.0.2.66",
    "sub.api.evil.example.": "192.0.2.67",
    "api-v2.evil.example.": "192.0.2.68",
    "tracker.example.": "192.0.2.80",
    "x.tracker.example.": "192.0.2.81",
    "a.b.tracker.example.": "192.0.2.82",
    "ads.example.": "192.0.2.90",
    "x.ads.example.": "192.0.2.91",
    "a.b.ads.example.": "192.0.2.92",
}
ALLOWED_LOCAL = ("api.stripe.com.", "192.0.2.10")

# Denied by the policy and blocked by the zone.
BLOCKED = ["api.evil.example.", "x.tracker.example.", "x.ads.example.", "a.b.ads.example."]
# Blocked by RPZ although the policy does not deny it: RPZ `*.tracker.example` is any depth.
BLOCKED_BROADER = ["a.b.tracker.example."]
# Not blocked: allowed, an exact name's subdomain, a wildcard's apex, and a pattern RPZ cannot express.
RESOLVES = ["sub.api.evil.example.", "tracker.example.", "ads.example.", "api-v2.evil.example."]


def unbound_binary() -> str:
    found = shutil.which("unbound") or ("/usr/sbin/unbound" if Path("/usr/sbin/unbound").is_file() else None)
    if found is None:
        pytest.fail("unbound is not installed: run `make test`, which installs Debian's unbound package")
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def root_zone() -> str:
    lines = [
        "$ORIGIN .",
        "$TTL 3600",
        ". IN SOA ns.test. hostmaster.test. (1 3600 600 86400 300)",
        ". IN NS ns.test.",
        "ns.test. IN A 127.0.0.1",
    ]
    lines += [f"{name} IN A {address}" for name, address in sorted(UPSTREAM.items())]
    return "\n".join(lines) + "\n"


def unbound_config(directory: Path, port: int, rpz_file: Path | None) -> str:
    config = f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-tcp: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{directory}"
    pidfile: "{directory}/unbound.pid"
    use-syslog: no
    logfile: "{directory}/unbound.log"
    log-time-ascii: yes
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    # Nothing leaves loopback: queries could only be sent from 127.0.0.1, never to localhost,
    # and the local root zone answers every name, so no query is sent at all.
    outgoing-interface: 127.0.0.1
    do-not-query-localhost: yes
    prefetch: no
    # respip is the module Unbound's RPZ support needs.
    module-config: "respip validator iterator"
    local-zone: "{ALLOWED_LOCAL[0]}" static
    local-data: "{ALLOWED_LOCAL[0]} A {ALLOWED_LOCAL[1]}"
auth-zone:
    name: "."
    zonefile: "{directory}/root.zone"
    for-downstream: no
    for-upstream: yes
    fallback-enabled: no
remote-control:
    control-enable: no
"""
    if rpz_file is not None:
        config += f"""rpz:
    name: "{RPZ_ORIGIN}"
    zonefile: "{rpz_file}"
    rpz-log: yes
    rpz-log-name: "hushflow"
"""
    return config


@dataclass
class Unbound:
    port: int
    log: Path

    def query(self, name: str, rdtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=self.port, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


@contextmanager
def start_unbound(directory: Path, zone_text: str | None) -> Iterator[Unbound]:
    binary = unbound_binary()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "root.zone").write_text(root_zone(), encoding="utf-8")
    rpz_file = None
    if zone_text is not None:
        rpz_file = directory / "hushflow.rpz"
        rpz_file.write_text(zone_text, encoding="utf-8")
    port = free_udp_port()
    conf = directory / "unbound.conf"
    conf.write_text(unbound_config(directory, port, rpz_file), encoding="utf-8")
    checkconf = shutil.which("unbound-checkconf")
    if checkconf:
        checked = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"unbound-checkconf rejected the config:\n{checked.stdout}{checked.stderr}"

    server = Unbound(port, directory / "unbound.log")

    def ready() -> bool:
        try:
            reply = server.query(ALLOWED_LOCAL[0], timeout=0.3)
        except dns.exception.Timeout:
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    with running(
        [binary, "-d", "-c", str(conf)], ready=ready, what=f"unbound on 127.0.0.1@{port}", timeout=15,
        details=server.log_text, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ):
        yield server


@pytest.fixture(scope="module", params=["nxdomain", "nodata", "null-ip", "refused"])
def blocking(request, tmp_path_factory) -> Iterator[tuple[str, Unbound]]:
    answer = request.param
    result = rpz_zone(ENTRIES, answer=answer, origin=RPZ_ORIGIN, serial=2026112701)
    assert [str(entry.selector) for entry in result.unsupported] == ["matchPattern: api-*.evil.example"]
    # The caller (hushflow compile) puts a header comment first: load it as written to disk.
    text = "; Generated by hushflow compile: do not edit; edit the source policies and re-run.\n" + result.text
    with start_unbound(tmp_path_factory.mktemp(f"unbound-{answer}"), text) as server:
        yield answer, server


@pytest.fixture(scope="module")
def unblocked(tmp_path_factory) -> Iterator[Unbound]:
    with start_unbound(tmp_path_factory.mktemp("unbound-control"), None) as server:
        yield server


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(item.to_text() for rrset in reply.answer for item in rrset)


def test_without_rpz_every_name_resolves(unblocked):
    for name, address in [*UPSTREAM.items(), ALLOWED_LOCAL]:
        reply = unblocked.query(name)
        assert (dns.rcode.to_text(reply.rcode()), addresses(reply)) == ("NOERROR", [address]), name


def test_allowed_and_unexpressible_names_resolve(blocking):
    _answer, server = blocking
    for name, address in [ALLOWED_LOCAL, *((name, UPSTREAM[name]) for name in RESOLVES)]:
        reply = server.query(name)
        assert (dns.rcode.to_text(reply.rcode()), addresses(reply)) == ("NOERROR", [address]), name


def test_denied_names_get_the_chosen_answer(blocking):
    answer, server = blocking
    for name in BLOCKED + BLOCKED_BROADER:
        if answer == "refused":
            # RPZ has no REFUSED: the zone uses rpz-drop, so Unbound sends no answer at all.
            with pytest.raises(dns.exception.Timeout):
                server.query(name, timeout=1.0)
            continue
        for rdtype in ("A", "AAAA", "TXT"):
            reply = server.query(name, rdtype)
            got = (dns.rcode.to_text(reply.rcode()), addresses(reply))
            if answer == "nxdomain":
                assert got == ("NXDOMAIN", []), (name, rdtype)
            elif answer == "nodata":
                assert got == ("NOERROR", []), (name, rdtype)
            else:
                expected = {"A": ["0.0.0.0"], "AAAA": ["::"], "TXT": []}[rdtype]
                assert got == ("NOERROR", expected), (name, rdtype)
    assert "rpz: applied" in server.log_text()


def denied_by_policy(name: str) -> bool:
    return any(entry.selector.matches(name) for entry in ENTRIES)


def test_where_the_dns_block_and_the_policy_differ():
    """The zone blocks exactly what the policy denies, except the two documented differences."""
    assert all(denied_by_policy(name) for name in BLOCKED)
    # RPZ `*.tracker.example` is any depth; the policy's `*.tracker.example` is one label.
    assert not any(denied_by_policy(name) for name in BLOCKED_BROADER)
    # `api-*.evil.example` cannot be written in RPZ: denied at L3 only, not at DNS.
    assert [name for name in RESOLVES if denied_by_policy(name)] == ["api-v2.evil.example."]
