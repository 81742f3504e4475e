"""Fuzz: the deny state file and its journal (enforce/state.py), as `run` and `compile` load them.

Property: any state file and journal (near-valid JSON with odd values, mutated bytes, anything)
load into a state, with what was dropped listed in `repaired`, or are refused with a
`StateError` naming the file; never another exception. What is loaded holds only canonical IP
addresses (no zone, no other spelling), finite times and string names, and its name index
agrees with its records; after the learner's repair (what `run` does at start) no protected
address is denied; the state saves and loads back the same, with nothing left to repair.
"""

from __future__ import annotations

import json
import math
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.state import DenyState, StateError, journal_path
from hushflow.flow.dns import canonical_ip
from hushflow.policy.loading import load_policies
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import EXAMPLE, json_values, mutated_bytes

DENY_ID = "cnp.my-namespace.app-external-block-policy.egressdeny-0"

_IPS = ("198.51.100.10", "203.0.113.5", "2001:db8::1", "2001:DB8:0::1", "::ffff:198.51.100.1", "10.0.0.1",
        "127.0.0.1", "169.254.169.254", "0.0.0.0", "::", "::1", "fe80::1", "fe80::1%eth0", "224.0.0.1",
        "255.255.255.255", "100.64.0.1", "192.168.1.1", "198.51.100.010", "1.2.3", "not-an-ip", "", " 1.2.3.4",
        "1.2.3.4/32", "01.2.3.4", "2001:db8::1/128", "[2001:db8::1]", "1.2.3.4\n")
_NUMBERS = (0, 1, -1, 1.8e9, 1e308, -1e308, 10**400, -(10**400), 2**63, 0.5, True, None, "1.8e9", "NaN", "inf",
            "-Infinity", "", [1], {"x": 1})
ips = st.one_of(st.sampled_from(_IPS), st.text(max_size=12))
numbers = st.one_of(st.sampled_from(_NUMBERS), st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(10**20), 10**20))
names = st.one_of(st.sampled_from(["api.telemetry.example.com", "x.example.com", "", "é"]), json_values)
deny_ids = st.sampled_from([DENY_ID, "cnp.gone.policy.egressdeny-0", "", "0"])


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 9).flatmap(lambda pick: json_values if pick == 0 else strategy)


record = _maybe(st.fixed_dictionaries(
    {"expires": numbers, "first_seen": numbers, "last_seen": numbers},
    optional={"names": _maybe(st.lists(names, max_size=3)), "sources": _maybe(st.lists(names, max_size=2))},
))
state_doc = st.fixed_dictionaries({
    "version": st.sampled_from([1] * 12 + [2, "1", None, 1.0]),
    "denies": _maybe(st.dictionaries(deny_ids, _maybe(st.dictionaries(ips, record, max_size=4)), max_size=2)),
}, optional={
    "shared": _maybe(st.dictionaries(deny_ids, _maybe(st.dictionaries(ips, _maybe(st.lists(names, max_size=2)),
                                                                       max_size=3)), max_size=2)),
    "allowed": _maybe(st.dictionaries(ips, _maybe(st.dictionaries(st.text(max_size=8), _maybe(
        st.dictionaries(st.text(max_size=8), numbers, max_size=2)), max_size=2)), max_size=3)),
})


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # Python's json: big integers and NaN as the file may hold them


state_bytes = st.one_of(
    state_doc.map(_dumps), state_doc.map(_dumps), state_doc.map(_dumps), state_doc.map(_dumps),
    state_doc.map(_dumps).flatmap(lambda raw: mutated_bytes(raw, max_mutations=3)),
    json_values.map(_dumps),
    st.sampled_from([b"", b"{}", b"null", b"[" * 100_000, b'{"version":1,"denies":' * 50_000, b"\xff\xfe",
                     b'{"version":1,"denies":{},"shared":{}}', b'{"version": 1e999}']),
    st.binary(max_size=40),
)
journal_entry = st.one_of(
    st.fixed_dictionaries({"d": _maybe(deny_ids), "ip": ips, "n": names, "t": numbers, "at": numbers,
                           "s": _maybe(st.sampled_from(["observed", "resolver"]))}),
    st.fixed_dictionaries({"a": _maybe(st.text(max_size=8)), "ip": ips, "n": names, "x": numbers}),
    json_values,
)
journal_line = st.one_of(
    journal_entry.map(_dumps), journal_entry.map(_dumps),
    journal_entry.map(_dumps).flatmap(lambda raw: mutated_bytes(raw, max_mutations=2)),
    st.sampled_from([b"", b" ", b"[" * 100_000, b'{"a":' * 50_000, b'"abc"', b"5", b"\xff"]),
    st.binary(max_size=30),
)
journal = st.one_of(st.none(), st.lists(journal_line, max_size=6).map(lambda lines: b"\n".join(lines)))


@cache
def _example() -> Any:
    return load_policies([str(EXAMPLE / "policies")]).policy_set


def _check_loaded(state: DenyState) -> None:
    for deny_id, records in state.denies.items():
        assert isinstance(deny_id, str)
        for ip, rec in records.items():
            assert canonical_ip(ip) == ip, ip
            for value in (rec.expires, rec.first_seen, rec.last_seen):
                assert isinstance(value, float) and math.isfinite(value), (ip, rec)
            assert all(isinstance(name, str) for name in (*rec.names, *rec.sources)), rec
    for shared in state.shared.values():
        for ip, allowed_names in shared.items():
            assert canonical_ip(ip) == ip, ip
            assert all(isinstance(name, str) for name in allowed_names)
    for ip, rules in state.allowed.items():
        assert canonical_ip(ip) == ip, ip
        for names_ in rules.values():
            assert all(isinstance(n, str) and isinstance(x, float) and math.isfinite(x) for n, x in names_.items())
    for (deny_id, name), seen in state.by_name.items():
        for ip in seen:
            assert name in state.denies[deny_id][ip].names, (deny_id, name, ip)
    assert all(isinstance(line, str) for line in state.repaired)


@fuzz_target(state_bytes, journal, ci_examples=400)
def test_fuzz_state_and_journal(state_file: bytes, journal_file: bytes | None) -> None:
    """A state with `repaired` lines, or a StateError; only valid IPs; it saves and loads back."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        path.write_bytes(state_file)
        if journal_file is not None:
            Path(journal_path(str(path))).write_bytes(journal_file)
        try:
            state = DenyState.load(str(path))
        except StateError as exc:
            assert str(path) in str(exc), exc
            note("refused")
            return
        assert all(math.isfinite(r.expires) for records in state.denies.values() for r in records.values())
        _check_loaded(state)
        note("repaired" if state.repaired else "loaded")
        policy_set = _example()
        learner = DenyLearner(policy_set, fqdn_denies(policy_set), state)
        assert all(isinstance(line, str) for line in learner.repair_state())
        for records in state.denies.values():
            for ip in records:
                assert learner.protected.refusal(ip) is None, ip
        state.expire(1.8e9)
        again_path = Path(tmp) / "again.json"
        state.save(str(again_path))
        again = DenyState.load(str(again_path))
        assert again.repaired == []
        assert again.to_json() == state.to_json()
