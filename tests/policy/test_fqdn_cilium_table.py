"""FQDN selectors against Cilium's matcher: one decision table (pattern, name, version, expected).

Every group names the Cilium source it was read from. The cases are ours, written from the
semantics. "1.18" is the matcher before the multi-label wildcard (Cilium <= 1.18:
pkg/fqdn/matchpattern/matchpattern.go with only `pattern == "*"` special); "1.19" is the one
from cilium#43420 (1.19 and later: a pattern of stars with an optional final dot selects every
name; a leading run of two or more stars followed by a dot is one or more whole labels).
Names are written as Hubble shows them (no trailing dot) unless the row is about the dot.
"""

from __future__ import annotations

import pytest

from hushflow.policy.fqdn import FQDNSelector
from hushflow.policy.source import Location

HERE = Location("t.yaml")
V18, V19, V20 = (1, 18), (1, 19), (1, 20)


def _row(pattern: str, name: str, version: tuple[int, int], expected: bool, why: str):
    return pytest.param(pattern, name, version, expected, id=f"{why}:{pattern!r}~{name!r}@{version[0]}.{version[1]}")


TABLE = [
    # -- Cilium <= 1.18, pkg/fqdn/matchpattern/matchpattern.go (Sanitize keeps only the exact
    #    "*" unqualified; ToAnchoredRegexp makes only that "*" the select-all expression) -----
    _row("*", "example.com", V18, True, "bare-star-selects-all"),
    _row("*", "", V18, True, "bare-star-selects-root"),
    _row("*", ".", V18, True, "bare-star-selects-root-dot"),
    _row("*.", "com", V18, True, "star-dot-is-one-label"),
    _row("*.", "", V18, True, "star-dot-one-label-may-be-empty-root"),
    _row("*.", "example.com", V18, False, "star-dot-is-not-select-all-in-1.18"),
    _row("**", "com", V18, True, "double-star-is-one-label-in-1.18"),
    _row("**", "example.com", V18, False, "double-star-is-not-select-all-in-1.18"),
    _row("**.", "a.b", V18, False, "double-star-dot-is-not-select-all-in-1.18"),
    _row("***", "a.b", V18, False, "triple-star-is-not-select-all-in-1.18"),
    _row("**.example.com", "a.example.com", V18, True, "double-star-prefix-is-one-label-in-1.18"),
    _row("**.example.com", "a.b.example.com", V18, False, "double-star-prefix-not-multi-label-in-1.18"),
    _row("***.example.com", "a.example.com", V18, True, "triple-star-prefix-is-one-label-in-1.18"),
    _row("***.example.com", "a.b.example.com", V18, False, "triple-star-prefix-not-multi-label-in-1.18"),
    _row("***.example.com", "example.com", V18, False, "star-prefix-needs-its-dot"),
    # -- `*.*` is exactly two labels in every version: it is not made only of stars and one final
    #    dot (matchpattern.go, 1.18 `pattern == "*"`, 1.19 dnsWildcardRegex `^[*]{1,}[.]?$`) -----
    _row("*.*", "a.b", V18, True, "star-dot-star-two-labels"),
    _row("*.*", "a.b.c", V18, False, "star-dot-star-not-three-labels"),
    _row("*.*", "a", V18, False, "star-dot-star-not-one-label"),
    _row("*.*", "a.b", V19, True, "star-dot-star-two-labels"),
    _row("*.*", "a.b.c", V19, False, "star-dot-star-not-select-all-in-1.19"),
    _row("*.*.", "a.b.c", V19, False, "star-dot-star-dot-not-select-all-in-1.19"),
    _row("**.*", "a.b.c", V19, True, "multi-label-then-one-label"),
    _row("**.*", "a", V19, False, "multi-label-needs-a-label"),
    # -- Cilium >= 1.19, pkg/fqdn/matchpattern/matchpattern.go (cilium#43420: dnsWildcardRegex,
    #    subdomainWildcardSpecifierPrefix; the same rules in the byte-wise rewrite after it) ------
    _row("*.", "example.com", V19, True, "star-dot-selects-all-in-1.19"),
    _row("**", "example.com", V19, True, "double-star-selects-all-in-1.19"),
    _row("**.", "a.b.c", V19, True, "double-star-dot-selects-all-in-1.19"),
    _row("****", "", V19, True, "stars-select-root-in-1.19"),
    _row("**.example.com", "a.b.example.com", V19, True, "double-star-prefix-multi-label"),
    _row("**.example.com", "a.example.com", V19, True, "double-star-prefix-one-label"),
    _row("**.example.com", "example.com", V19, False, "double-star-prefix-needs-a-label"),
    _row("***.example.com", "a.b.example.com", V19, True, "triple-star-prefix-multi-label-in-1.19"),
    _row("*****.example.com", "a.b.c.example.com", V19, True, "many-star-prefix-multi-label-in-1.19"),
    _row("***.example.com", "example.com", V19, False, "triple-star-prefix-needs-a-label"),
    _row("**.example.com", "a..example.com", V19, False, "multi-label-has-no-empty-label"),
    _row("**.example.com", "a.b.example.org", V19, False, "multi-label-keeps-the-suffix"),
    _row("**.example.com", "a.b.example.com", V20, True, "1.20-keeps-the-1.19-rules"),
    _row("a.**.example.com", "a.b.example.com", V19, True, "inner-double-star-is-one-label"),
    _row("a.**.example.com", "a.b.c.example.com", V19, False, "inner-double-star-not-multi-label"),
    _row("**example.com", "myexample.com", V19, True, "stars-without-dot-are-one-star"),
    _row("**example.com", "a.example.com", V19, False, "stars-without-dot-stay-in-the-label"),
    _row("*.**.example.com", "a.b.c.example.com", V19, False, "double-star-after-a-label-is-one-star"),
    # -- what a star matches: allowedDNSCharsREGroup `[-a-zA-Z0-9_]` in matchpattern.go --------
    _row("*.example.com", "_sip.example.com", V18, True, "star-matches-underscore"),
    _row("*.example.com", "a-b-1.example.com", V18, True, "star-matches-hyphen-digit"),
    _row("*.example.com", ".example.com", V18, True, "star-matches-empty-label"),
    _row("*.example.com", "a b.example.com", V18, False, "star-not-space"),
    _row("*.example.com", "a*b.example.com", V18, False, "star-not-star"),
    _row("*.example.com", "a/b.example.com", V18, False, "star-not-slash"),
    _row("*.example.com", "caf\u00e9.example.com", V18, False, "star-not-non-ascii"),
    _row("*.example.com", "a\\046b.example.com", V18, False, "star-not-escaped-byte"),
    _row("*", "a b.com", V18, False, "select-all-needs-dns-characters"),
    _row("*", "a..com", V18, False, "select-all-no-empty-label"),
    _row("**.", "a b.com", V19, False, "select-all-needs-dns-characters-1.19"),
    _row("*.example.com", "a.example.com\nb.example.com", V18, False, "no-newline-smuggling"),
    # -- case and the final dot: pkg/fqdn/dns/dns.go FQDN (lowercase, one final dot unless the
    #    name has one) for pattern and name; ToAnchoredRegexp lowercases the pattern -----------
    _row("*.EXAMPLE.com", "WWW.example.COM", V18, True, "case-does-not-matter"),
    _row("*.example.com.", "www.example.com", V18, True, "pattern-final-dot-optional"),
    _row("*.example.com", "www.example.com.", V18, True, "name-final-dot-optional"),
    _row("*.example.com", "www.example.com..", V18, False, "two-final-dots-are-another-name"),
    _row("example.com", "EXAMPLE.COM.", V18, True, "pattern-without-star-is-a-name"),
    # DNS case folding is ASCII only: the DNS library Cilium parses answers with (cilium/dns,
    # msg.go) writes bytes outside printable ASCII as \DDD, so no non-ASCII letter reaches
    # ToLower; hushflow must not fold the Kelvin sign to `k`.
    _row("*.kube.io", "www.\u212aube.io", V18, False, "no-unicode-case-folding"),
]


@pytest.mark.parametrize(("pattern", "name", "version", "expected"), TABLE)
def test_match_pattern_as_cilium(pattern, name, version, expected):
    assert FQDNSelector(None, pattern, HERE, version).matches(name) is expected


# -- matchName: pkg/policy/api/fqdn.go (ToRegex: dns.FQDN(MatchName), Sanitize only for a
#    pattern), pkg/fqdn/dnsproxy/proxy.go (CheckAllowed: the query name lowercased and made
#    fully qualified). A name is exact; stars only mean something in a pattern. -------------
NAME_TABLE = [
    ("example.com", "EXAMPLE.com", V18, True),
    ("Example.COM.", "example.com", V19, True),
    ("example.com", "www.example.com", V18, False),
    ("example.com", "example.com..", V18, False),
    ("example.com", "example.co", V18, False),
    ("_sip._tcp.example.com", "_SIP._tcp.example.com", V18, True),
]


@pytest.mark.parametrize(("match_name", "name", "version", "expected"), NAME_TABLE)
def test_match_name_as_cilium(match_name, name, version, expected):
    assert FQDNSelector(match_name, None, HERE, version).matches(name) is expected


# -- select-all in an L7 DNS rule: pkg/fqdn/dnsproxy/proxy.go (GeneratePattern returns
#    matchpattern.MatchAllAnchoredPattern for a select-all pattern, and CheckAllowed lets every
#    query name through it, whatever its characters); other patterns are the same as toFQDNs. --
PROXY_TABLE = [
    ("*", "a b.com", V18, True),
    ("*", "a..com", V18, True),
    ("*.", "a b.com", V18, False),  # 1.18: `*.` is one label, not select-all, in the proxy too
    ("**", "odd name", V19, True),
    ("*.example.com", "a b.example.com", V19, False),
    ("*.*", "a b.c", V19, False),
]


@pytest.mark.parametrize(("pattern", "name", "version", "expected"), PROXY_TABLE)
def test_dns_proxy_pattern_as_cilium(pattern, name, version, expected):
    assert FQDNSelector(None, pattern, HERE, version, dns_proxy=True).matches(name) is expected


# -- which patterns select every name: matchpattern.go (1.18 Sanitize/ToAnchoredRegexp
#    `pattern == "*"`; 1.19 dnsWildcardRegex) ------------------------------------------------
WILDCARD_ALL_TABLE = [
    ("*", V18, True),
    ("*.", V18, False),
    ("**", V18, False),
    ("**.", V18, False),
    ("*.*", V18, False),
    ("*", V19, True),
    ("*.", V19, True),
    ("***", V19, True),
    ("**.", V19, True),
    ("*.*", V19, False),
    ("**.*", V19, False),
    ("**.com", V19, False),
]


@pytest.mark.parametrize(("pattern", "version", "expected"), WILDCARD_ALL_TABLE)
def test_selects_every_name_as_cilium(pattern, version, expected):
    assert FQDNSelector(None, pattern, HERE, version).is_wildcard_all is expected


def test_match_name_is_never_select_all():
    assert not FQDNSelector("example.com", None, HERE, V19).is_wildcard_all
