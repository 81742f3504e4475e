"""`hushflow run` on DNS answers chosen by the party the deny targets: nothing it sends is stored
unchecked, turns the deny against the cluster, or passes without being counted and reported."""

from __future__ import annotations

import io
import json

from hushflow.app.daemon import Daemon
from tests.app.test_daemon import FLOWS, options, published_ips, sample


def hostile_answer(ips, ttl=60) -> bytes:
    template = json.loads(FLOWS.read_bytes().splitlines()[5])  # my-app's answer for ingest.telemetry.example.com
    template["flow"]["l7"]["dns"]["query"] = "evil.telemetry.example.com."
    template["flow"]["l7"]["dns"]["ips"] = ips
    template["flow"]["l7"]["dns"]["ttl"] = ttl
    return json.dumps(template, separators=(",", ":")).encode() + b"\n"


def test_a_hostile_answer_is_validated_guarded_counted_and_reported(tmp_path):
    """Values the party behind the name can put in an answer Hubble reports (strings: any text
    as an address, special-purpose addresses, the DNS server itself): each is checked on its own,
    the good address of the answer is denied, the rest counted and reported."""
    recorded = FLOWS.read_bytes()
    flows = tmp_path / "flows.jsonl"
    flows.write_bytes(recorded + hostile_answer(
        ["169.254.169.254", "127.0.0.1", "10.0.0.10", "fe80::1%eth0", "not-an-ip", "203.0.113.66"], ttl=2**31,
    ))
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, input_files=(str(flows),), events=()), stderr=stderr)
    assert daemon.run() == 2  # input was left out: a finite run says so
    published = published_ips(tmp_path)
    assert "203.0.113.66" in published  # the one good address of the answer is denied
    assert not published & {"169.254.169.254", "127.0.0.1", "10.0.0.10"}
    line = len(recorded.splitlines()) + 1
    assert f"{flows}:{line}: the DNS answer for evil.telemetry.example.com has a value hushflow left out" in \
        stderr.getvalue()
    assert "refused to deny 169.254.169.254 for evil.telemetry.example.com" in stderr.getvalue()
    source = str(flows)
    for reason, count in (("dns-ip-with-zone", 1), ("dns-ip-invalid", 1), ("dns-ttl-out-of-range", 1)):
        assert sample(daemon, "hushflow_malformed_input_total", source=source, reason=reason) == count, reason
    for reason in ("link-local", "loopback", "dns-server"):  # 10.0.0.10 answered the query
        assert sample(daemon, "hushflow_deny_ips_refused_total", reason=reason) == 1, reason
    assert daemon.summary.dns_values_rejected == 3 and daemon.summary.ips_refused == 3
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state["denies"]["cnp.my-namespace.app-external-block-policy.egressdeny-0"]) == published


def test_an_answer_hubble_could_not_have_written_is_a_bad_line(tmp_path):
    """A number among the addresses, a negative TTL, addresses that are no list: no valid
    protojson, so Hubble never writes it and refuses to read it; hushflow refuses the line too
    (counted, named with its file:line, exit 2) and learns nothing from it."""
    recorded = FLOWS.read_bytes()
    flows = tmp_path / "flows.jsonl"
    flows.write_bytes(recorded + hostile_answer(["203.0.113.66", 7]) + hostile_answer(["203.0.113.68"], ttl=-1)
                      + hostile_answer("203.0.113.67"))
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, input_files=(str(flows),), events=()), stderr=stderr)
    assert daemon.run() == 2
    assert not published_ips(tmp_path) & {"203.0.113.66", "203.0.113.67", "203.0.113.68"}
    first = len(recorded.splitlines()) + 1
    err = stderr.getvalue()
    assert f"{flows}:{first}: flow.l7.dns.ips[1]: expected a string, got number" in err
    assert f"{flows}:{first + 1}: flow.l7.dns.ttl: -1 out of range for uint32" in err
    assert f"{flows}:{first + 2}: flow.l7.dns.ips: expected an array, got string" in err
    assert sample(daemon, "hushflow_malformed_input_total", source=str(flows), reason="unreadable-line") == 3


def test_a_state_an_older_version_poisoned_is_repaired_on_start_not_a_crash_loop(tmp_path):
    deny = "cnp.my-namespace.app-external-block-policy.egressdeny-0"
    record = {"expires": 4e9, "first_seen": 1.0, "last_seen": 1.0, "names": ["x.telemetry.example.com"],
              "sources": ["observed"]}
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "denies": {deny: {
        "fe80::1%eth0": record, "not-an-ip": record, "169.254.169.254": record, "203.0.113.70": record,
        "203.0.113.71": {**record, "expires": "soon"},
    }}, "shared": {deny: {"7": ["a"]}}}))
    (tmp_path / "state.json.journal").write_bytes(
        b'{"d":"' + deny.encode() + b'","ip":"zz::zz","n":"x","t":60,"at":1,"s":"observed"}\n'
        b'{"d":"' + deny.encode() + b'","ip":"203.0.113.72","n":"x","t":"NaN","at":1,"s":"observed"}\n'
        b'{"d":"' + deny.encode() + b'","ip":"203.0.113.73","n":"x","t":60,"at":1,"s":"observed"}\n'
    )
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, events=()), stderr=stderr)
    assert daemon.run() == 0
    published = published_ips(tmp_path)
    assert {"203.0.113.70", "203.0.113.73"} <= published
    assert not published & {"169.254.169.254", "203.0.113.71", "203.0.113.72"}
    repaired = [line for line in stderr.getvalue().splitlines() if "state repaired" in line]
    assert len(repaired) == 7, repaired  # 3 bad keys or records, 1 shared, 2 journal lines, 1 link-local
    assert any("169.254.169.254 (link-local) is never denied from DNS" in line for line in repaired)
    state = json.loads((tmp_path / "state.json").read_text())  # the next snapshot is clean
    assert "fe80::1%eth0" not in state["denies"][deny] and "169.254.169.254" not in state["denies"][deny]


def test_a_deny_past_the_global_limit_is_exported_and_logged_as_incomplete(tmp_path):
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, events=(), max_total=1), stderr=stderr)
    assert daemon.run() == 0
    deny = "cnp.my-namespace.app-external-block-policy.egressdeny-0"
    assert sample(daemon, "hushflow_deny_incomplete_ips", policy="my-namespace/app-external-block-policy",
                  deny=deny) == 2
    assert sample(daemon, "hushflow_deny_ips", kind="held") == 1
    assert sample(daemon, "hushflow_deny_ips", kind="limit") == 1
    assert "is NO LONGER COMPLETE" in stderr.getvalue()
    assert len(published_ips(tmp_path)) == 1


def test_a_name_that_keeps_resolving_to_new_ips_cannot_fill_the_deny(tmp_path):
    recorded = FLOWS.read_bytes()
    flows = tmp_path / "flows.jsonl"
    flows.write_bytes(recorded + b"".join(hostile_answer([f"203.0.113.{i}"]) for i in range(1, 21)))
    daemon = Daemon(options(tmp_path, input_files=(str(flows),), events=(), max_per_name=5))
    assert daemon.run() == 0
    published = published_ips(tmp_path)
    assert {f"203.0.113.{i}" for i in range(16, 21)} <= published  # the 5 most recent
    assert not published & {f"203.0.113.{i}" for i in range(1, 16)}
    assert sample(daemon, "hushflow_deny_ips_evicted_total") == 15
