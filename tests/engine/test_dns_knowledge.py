"""DNS knowledge: per-endpoint answers, the merged view, TTL with min and grace, the LRU bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hushflow.engine.dns_knowledge import DnsKnowledge
from hushflow.flow.dns import dns_answer_of


def test_answers_and_names():
    dns = DnsKnowledge()
    dns.learn("a/pod", "API.Example.com.", ["1.1.1.1", "1.1.1.2"], ttl=60, now=100)
    dns.learn("b/pod", "cdn.example.net", ["1.1.1.1"], ttl=10, now=100)
    assert dns.names_for_ip("1.1.1.1", 105) == ("api.example.com", "cdn.example.net")
    assert dns.names_for_ip("1.1.1.1", 115) == ("api.example.com",)
    (answer,) = dns.answers_for_ip("1.1.1.2", 105, endpoint="a/pod")
    assert (answer.name, answer.ttl, answer.seen_at, answer.expires_at) == ("api.example.com", 60, 100, 160)
    assert dns.answers_for_ip("1.1.1.2", 105, endpoint="b/pod") == []


def test_min_ttl_and_grace():
    dns = DnsKnowledge(min_ttl=30, grace=5)
    dns.learn("a", "x.com", ["2.2.2.2"], ttl=1, now=0)
    assert dns.names_for_ip("2.2.2.2", 34) == ("x.com",)
    assert dns.names_for_ip("2.2.2.2", 36) == ()


def test_refresh_keeps_unexpired_ips_and_drops_expired_ones():
    dns = DnsKnowledge()
    dns.learn("a", "x.com", ["1.0.0.1"], ttl=60, now=0)
    dns.learn("a", "x.com", ["1.0.0.2"], ttl=60, now=30)  # 1.0.0.1 still valid: merged
    assert dns.names_for_ip("1.0.0.1", 50) == ("x.com",)
    dns.learn("a", "x.com", ["1.0.0.3"], ttl=60, now=200)  # both old IPs expired: replaced
    assert dns.names_for_ip("1.0.0.1", 201) == ()
    assert dns.names_for_ip("1.0.0.3", 201) == ("x.com",)


def test_memory_bound_evicts_the_least_recently_refreshed():
    dns = DnsKnowledge(max_names=4)  # two generations of two
    dns.learn("a", "one.com", ["1.0.0.1"], 60, 0)
    dns.learn("a", "two.com", ["1.0.0.2"], 60, 0)  # generation full: one, two become old
    dns.learn("a", "one.com", ["1.0.0.1"], 60, 1)  # refreshed: back to young
    dns.learn("a", "three.com", ["1.0.0.3"], 60, 2)  # young full: old (two) is dropped
    assert len(dns) == 2 and dns.evictions == 1
    assert dns.names_for_ip("1.0.0.2", 3) == ()  # the least recently refreshed went first
    assert dns.names_for_ip("1.0.0.1", 3) == ("one.com",)
    assert dns.names_for_ip("1.0.0.3", 3) == ("three.com",)


def test_an_answer_is_learned_for_the_client_that_asked():
    dns = DnsKnowledge()
    response = {
        "IP": {"source": "10.96.0.10", "destination": "10.0.0.5"},
        "destination": {"namespace": "shop", "pod_name": "web-0"},
        "l7": {"type": "RESPONSE", "dns": {"query": "A.com.", "ips": ["3.3.3.3"], "ttl": 5}},
    }
    answer = dns_answer_of(response)
    assert answer is not None
    dns.learn_answer(answer, 0)
    [known] = dns.answers_for_ip("3.3.3.3", 1)
    assert (known.endpoint, known.name, known.ips, known.ttl) == ("shop/web-0", "a.com", ("3.3.3.3",), 5)


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 20), st.integers(0, 3)), max_size=60))
def test_reverse_index_matches_a_brute_force_model(steps):
    dns = DnsKnowledge(max_names=6)
    now = 0
    for endpoint, name_id, ip_id in steps:
        now += 1
        dns.learn(endpoint, f"n{name_id}.com", [f"10.0.0.{ip_id}"], ttl=10, now=now)
    # Every indexed answer is a live entry, and every live entry is indexed.
    for ip_id in range(4):
        ip = f"10.0.0.{ip_id}"
        expected = sorted(
            {key.split("\x00")[1] for key, entry in dns.entries()
             if ip in ((entry[2],) if isinstance(entry[2], str) else entry[2]) and entry[0] >= now}
        )
        assert list(dns.names_for_ip(ip, now)) == expected
    assert len(dns) <= 6


# learn(endpoint, name, ips, ttl, now), names_for_ip(ip, now) or expire(now); flow time may go back.
_STEP = st.one_of(
    st.tuples(st.just("learn"), st.sampled_from("abcdef"), st.integers(0, 5), st.sets(st.integers(0, 3), min_size=1),
              st.integers(0, 30), st.integers(0, 100)),
    st.tuples(st.just("names"), st.integers(0, 3), st.integers(0, 120)),
    st.tuples(st.just("expire"), st.integers(0, 120)),
)


@settings(max_examples=400)
@given(st.lists(_STEP, max_size=80), st.sampled_from([4, 8, 1000]))
def test_names_for_ip_cache_agrees_with_the_entries(steps, max_names):
    """names_for_ip remembers its answer for IPs that many endpoints resolved: it must equal the
    names recomputed from the live entries after any sequence of answers, expiries, evictions and
    lookups at times going back and forth."""
    dns = DnsKnowledge(max_names=max_names)
    for step in steps:
        if step[0] == "learn":
            _, endpoint, name_id, ip_ids, ttl, now = step
            dns.learn(endpoint, f"n{name_id}.com", [f"10.0.0.{i}" for i in sorted(ip_ids)], ttl=ttl, now=now)
        elif step[0] == "expire":
            dns.expire(step[1])
        else:
            _, ip_id, now = step
            ip = f"10.0.0.{ip_id}"
            expected = sorted({key.split("\x00", 1)[1] for key, entry in dns.entries()
                               if entry[0] >= now and ip in ((entry[2],) if isinstance(entry[2], str) else entry[2])})
            assert dns.names_for_ip(ip, now) == tuple(expected)


def test_an_answer_learned_again_after_expiring_shows_in_names_for_ip_at_once():
    dns = DnsKnowledge()
    dns.learn("a", "old.com", ["1.1.1.1"], ttl=10, now=0)
    dns.learn("b", "long.com", ["1.1.1.1"], ttl=100, now=0)
    assert dns.names_for_ip("1.1.1.1", 20) == ("long.com",)  # old.com expired at 10
    dns.learn("a", "old.com", ["1.1.1.1"], ttl=10, now=25)  # the same answer again
    assert dns.names_for_ip("1.1.1.1", 26) == ("long.com", "old.com")
