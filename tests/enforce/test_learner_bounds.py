"""A hostile DNS cannot fill the denies, blind them silently, or make them break an allow.

- a bound per deny and name (like Cilium's --tofqdns-endpoint-max-ip-per-hostname), least
  recently seen evicted, so one name cannot fill the global limit;
- past the global limit a deny is recorded as incomplete, with the IPs it does not hold;
- the shared-IP guard remembers allowed IPs across a restart (state) and a crash (journal), and
  also protects the addresses of toCIDR / toCIDRSet allows.
"""

from __future__ import annotations

from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.state import DenyState, Journal
from hushflow.flow.dns import dns_answer_of
from hushflow.policy.labels import Requirement, Selector, may_overlap
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, Location
from tests.enforce.test_compile import dns_flow, write
from tests.enforce.test_protect import DENY

ALLOW = """\
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toFQDNs: [{matchName: api.partner.example.org}]
"""

CIDR_ALLOW = """\
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: partner-range, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]
  - toCIDR: [0.0.0.0/0]
"""


def make(tmp_path, text=DENY, state=None, **kwargs):
    loaded = load_policies([str(write(tmp_path, text))], BuildOptions())
    denies = fqdn_denies(loaded.policy_set)
    state = state if state is not None else DenyState()
    return DenyLearner(loaded.policy_set, denies, state, **kwargs), state, denies[0]


def answer(name, ips, app="web"):
    parsed = dns_answer_of(dns_flow(name, ips, app=app)["flow"])
    assert parsed is not None
    return parsed


def test_one_name_cannot_hold_more_than_its_bound_the_least_recently_seen_go(tmp_path):
    learner, state, deny = make(tmp_path, max_per_name=2)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1"]), 1.0)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.2"]), 2.0)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1"]), 3.0)  # seen again: now the newest
    changes = learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.3"]), 4.0)
    assert [(c.ip, c.added, c.source) for c in changes] == [("203.0.113.3", True, "observed"),
                                                            ("203.0.113.2", False, "evicted")]
    assert state.ips(deny.id) == ["203.0.113.1", "203.0.113.3"]
    assert learner.stats.evicted == 1
    assert any("more than 2 IPs" in note and "--max-ips-per-name" in note for note in learner.stats.notes)
    # Another name of the same deny has its own bound: it does not evict a.telemetry's IPs.
    learner.learn_answer(answer("b.telemetry.example.com", ["203.0.113.9"]), 5.0)
    assert state.ips(deny.id) == ["203.0.113.1", "203.0.113.3", "203.0.113.9"]


def test_an_evicted_ip_another_name_also_resolved_to_stays_denied(tmp_path):
    learner, state, deny = make(tmp_path, max_per_name=1)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1"]), 1.0)
    learner.learn_answer(answer("b.telemetry.example.com", ["203.0.113.1"]), 2.0)
    changes = learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.2"]), 3.0)
    assert [c.ip for c in changes if not c.added] == []  # b.telemetry still resolves to .1
    assert state.ips(deny.id) == ["203.0.113.1", "203.0.113.2"]
    assert state.denies[deny.id]["203.0.113.1"].names == {"b.telemetry.example.com"}


def test_the_bound_per_name_survives_a_restart_in_last_seen_order(tmp_path):
    learner, state, _deny = make(tmp_path, max_per_name=3)
    for at, ip in enumerate(["203.0.113.1", "203.0.113.2", "203.0.113.3"]):
        learner.learn_answer(answer("a.telemetry.example.com", [ip]), float(at))
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1"]), 10.0)
    state.save(str(tmp_path / "state.json"))
    loaded = DenyState.load(str(tmp_path / "state.json"))
    again, _, _ = make(tmp_path, state=loaded, max_per_name=3)
    changes = again.learn_answer(answer("a.telemetry.example.com", ["203.0.113.4"]), 11.0)
    assert [c.ip for c in changes if not c.added] == ["203.0.113.2"]  # .1 was seen last, .2 least recently


def test_past_the_global_limit_the_deny_says_it_is_incomplete_and_which_ips_it_misses(tmp_path):
    learner, state, deny = make(tmp_path, max_total=2)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1", "203.0.113.2"]), 1.0)
    assert learner.stats.incomplete == {}
    learner.learn_answer(answer("b.telemetry.example.com", ["203.0.113.3", "203.0.113.4"]), 2.0)
    assert state.ips(deny.id) == ["203.0.113.1", "203.0.113.2"]  # what it held stays denied
    assert set(learner.stats.incomplete[deny.id]) == {"203.0.113.3", "203.0.113.4"}
    (note,) = [note for note in learner.stats.notes if "global limit" in note]
    assert "NO LONGER COMPLETE" in note and "cnp shop/block" in note and "203.0.113.3" in note
    assert ".yaml:" in note  # the deny's policy file and line
    # Time passes without the names being seen again: nothing is missing any more.
    learner.expire_incomplete(2.0 + 3600 + 31)
    assert learner.stats.incomplete == {}


def test_an_ip_that_fits_again_makes_the_deny_complete(tmp_path):
    learner, state, deny = make(tmp_path, max_total=1)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.1"]), 1.0)
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.2"]), 1.0)
    assert set(learner.stats.incomplete[deny.id]) == {"203.0.113.2"}
    state.remove(deny.id, "203.0.113.1")  # e.g. expired
    learner.learn_answer(answer("a.telemetry.example.com", ["203.0.113.2"]), 5.0)
    assert state.ips(deny.id) == ["203.0.113.2"]
    assert learner.stats.incomplete == {}


def test_the_shared_ip_guard_remembers_allowed_ips_across_a_restart(tmp_path):
    learner, state, deny = make(tmp_path, DENY + ALLOW)
    learner.learn_answer(answer("api.partner.example.org", ["203.0.113.80"]), 1.0)
    state.save(str(tmp_path / "state.json"))
    # A new process: before, the guard's memory was lost and the hostile answer below was denied.
    restarted, state2, _ = make(tmp_path, DENY + ALLOW, state=DenyState.load(str(tmp_path / "state.json")))
    changes = restarted.learn_answer(answer("evil.telemetry.example.com", ["203.0.113.80", "203.0.113.81"]), 2.0)
    assert [c.ip for c in changes] == ["203.0.113.81"]
    assert state2.shared[deny.id] == {"203.0.113.80": ["api.partner.example.org"]}


def test_the_shared_ip_guard_remembers_allowed_ips_a_crash_left_only_in_the_journal(tmp_path):
    path = str(tmp_path / "state.json")
    learner, state, _deny = make(tmp_path, DENY + ALLOW)
    learner.learn_answer(answer("api.partner.example.org", ["203.0.113.80"]), 1.0)
    journal = Journal(path)
    journal.append(state.take_pending_allowed(), sync=False)
    journal.close()  # killed before any snapshot
    restarted, _, _ = make(tmp_path, DENY + ALLOW, state=DenyState.load(path))
    changes = restarted.learn_answer(answer("evil.telemetry.example.com", ["203.0.113.80"]), 2.0)
    assert changes == []
    assert restarted.stats.shared_skipped == 1


def test_allowed_ips_of_an_allow_rule_that_is_gone_are_forgotten(tmp_path):
    learner, state, _ = make(tmp_path, DENY + ALLOW)
    learner.learn_answer(answer("api.partner.example.org", ["203.0.113.80"]), 1.0)
    assert "203.0.113.80" in state.allowed
    make(tmp_path, DENY, state=state)  # the allow policy was deleted
    assert state.allowed == {}


def test_cidr_allows_protect_their_addresses_but_not_their_excepts_and_a_catch_all_protects_nothing(tmp_path):
    learner, state, deny = make(tmp_path, DENY + CIDR_ALLOW)
    changes = learner.learn_answer(
        answer("evil.telemetry.example.com", ["198.51.100.7", "198.51.100.200", "203.0.113.5"]), 1.0)
    assert sorted(c.ip for c in changes) == ["198.51.100.200", "203.0.113.5"]
    (shared,) = state.shared[deny.id]["198.51.100.7"]
    assert shared.startswith("198.51.100.0/24 allowed by spec.egress[0].toCIDRSet[0]") and "p.yaml:" in shared


def test_a_cidr_allow_for_other_endpoints_does_not_protect(tmp_path):
    learner, _state, _deny = make(tmp_path, DENY + CIDR_ALLOW.replace("{app: web}", "{app: batch}"))
    changes = learner.learn_answer(answer("evil.telemetry.example.com", ["198.51.100.7"]), 1.0)
    assert [c.ip for c in changes] == ["198.51.100.7"]


def test_in_and_notin_on_the_same_values_select_no_common_endpoint():
    where = Location("p.yaml", 1, "spec")

    def selector(*requirements: Requirement) -> Selector:
        return Selector(requirements, requirements, where)

    web = selector(Requirement("any:app", "In", frozenset({"web"})))
    not_web = selector(Requirement("any:app", "NotIn", frozenset({"web", "api"})))
    not_api = selector(Requirement("any:app", "NotIn", frozenset({"api"})))
    assert not may_overlap(web, not_web) and not may_overlap(not_web, web)
    assert may_overlap(web, not_api)
