"""DNS block artifacts: CoreDNS template snippet and RPZ zone (hushflow.enforce.dnsblock).

Golden files live in tests/enforce/dnsblock/; regenerate them with HUSHFLOW_UPDATE_GOLDEN=1
after checking the diff by eye. The CoreDNS regexes are checked against the policy matcher
(FQDNSelector.matches) with hypothesis, in Python's `re` and in RE2 (Go's regexp is RE2): they
must select exactly the same names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from hushflow.enforce.dnsblock import (
    BlockedName,
    RpzResult,
    coredns_regex,
    coredns_snippet,
    rpz_unsupported_reason,
    rpz_zone,
)
from hushflow.policy.fqdn import FQDNSelector
from hushflow.policy.source import Location

GOLDEN = Path(__file__).parent / "dnsblock"
WHERE = Location("policies/a.yaml", 15, 7, ("spec", "egressDeny", 0, "toFQDNs", 0))
REASON = (
    "CiliumNetworkPolicy my-namespace/app-external-block-policy spec.egressDeny[0] "
    "(log: app-explicit-traffic-blocked) policies/a.yaml:15"
)


def name(text: str, reason: str = REASON) -> BlockedName:
    return BlockedName(FQDNSelector(text, None, WHERE), reason)


def pattern(text: str, version: tuple[int, int] = (1, 18), reason: str = REASON) -> BlockedName:
    return BlockedName(FQDNSelector(None, text, WHERE, version), reason)


# A small set covering every shape: exact name (mixed case), one-label wildcard, `**.` on both
# versions, a star inside a label, a pattern of only stars, and one name denied twice.
SMALL = [
    name("API.evil.example"),
    name("api.evil.example", reason="CiliumClusterwideNetworkPolicy deny-evil spec.egressDeny[1] policies/b.yaml:9"),
    pattern("*.tracker.example"),
    pattern("**.ads.example", (1, 19)),
    pattern("**.old-ads.example", (1, 18)),
    pattern("api-*.evil.example"),
    pattern("*"),
]


def cases(*rows):
    """Table rows written as (behaviour, values...): the behaviour names the test case."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def check_golden(filename: str, text: str) -> None:
    path = GOLDEN / filename
    if os.environ.get("HUSHFLOW_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run with HUSHFLOW_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("answer", ["nxdomain", "refused", "nodata", "null-ip"])
def test_coredns_snippet_golden(answer):
    check_golden(f"coredns-{answer}.conf", coredns_snippet(SMALL, answer=answer))


@pytest.mark.parametrize("answer", ["nxdomain", "refused", "nodata", "null-ip"])
def test_rpz_zone_golden(answer):
    check_golden(f"rpz-{answer}.rpz", rpz_zone(SMALL, answer=answer, serial=2026112701).text)


def test_output_does_not_depend_on_input_order():
    assert coredns_snippet(SMALL) == coredns_snippet(list(reversed(SMALL)))
    assert rpz_zone(SMALL, serial=1) == rpz_zone(list(reversed(SMALL)), serial=1)


# -- CoreDNS regexes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "regex"),
    cases(
        ("exact_name_lowercased", name("API.Evil.example"), "(?i)^api[.]evil[.]example[.]$"),
        ("one_label_star", pattern("*.cilium.io"), "(?i)^[-a-zA-Z0-9_]*[.]cilium[.]io[.]$"),
        ("star_inside_label", pattern("api-*.cilium.io"), "(?i)^api-[-a-zA-Z0-9_]*[.]cilium[.]io[.]$"),
        (
            "double_star_1_18_is_one_label",
            pattern("**.cilium.io", (1, 18)),
            "(?i)^[-a-zA-Z0-9_]*[-a-zA-Z0-9_]*[.]cilium[.]io[.]$",
        ),
        ("double_star_1_19_is_labels", pattern("**.cilium.io", (1, 19)), "(?i)^(?:[-a-zA-Z0-9_]+[.])+cilium[.]io[.]$"),
        ("double_star_not_leading", pattern("a.**.io", (1, 19)), "(?i)^a[.][-a-zA-Z0-9_]*[-a-zA-Z0-9_]*[.]io[.]$"),
        # `*.*` is exactly two labels (pkg/fqdn/matchpattern), not every name.
        ("only_stars", pattern("*.*"), "(?i)^[-a-zA-Z0-9_]*[.][-a-zA-Z0-9_]*[.]$"),
        ("trailing_dot_written", pattern("*.cilium.io."), "(?i)^[-a-zA-Z0-9_]*[.]cilium[.]io[.]$"),
    ),
)
def test_coredns_regex(entry, regex):
    assert coredns_regex(entry.selector) == regex


def test_coredns_regexes_have_no_backslash_or_space():
    # The Corefile tokenizer splits on spaces and treats backslashes specially in quoted tokens.
    for entry in SMALL:
        assert not re.search(r"[\s\\{}#\"]", coredns_regex(entry.selector))


LABEL_ALPHABET = "abAB09-_"
NAME_ALPHABET = LABEL_ALPHABET + ".*!é"  # characters a query name may carry besides the usual ones


@st.composite
def selectors(draw):
    labels = draw(st.lists(st.text(LABEL_ALPHABET + "*", min_size=1, max_size=4), min_size=1, max_size=4))
    version = draw(st.sampled_from([(1, 18), (1, 19)]))
    if draw(st.booleans()):
        text = ".".join(label.replace("*", "") or "x" for label in labels)
        return FQDNSelector(text, None, WHERE, version)
    if draw(st.booleans()):
        labels[0] = "**"
    text = ".".join(labels) + draw(st.sampled_from(["", "."]))
    return FQDNSelector(None, text, WHERE, version)


@st.composite
def names_for(draw, selector: FQDNSelector):
    """Names near the selector (stars replaced by label text or by several labels) or random ones."""
    written = selector.match_pattern if selector.match_pattern is not None else selector.match_name or ""
    if draw(st.booleans()):
        return draw(st.text(NAME_ALPHABET, max_size=14))
    filler = st.text(LABEL_ALPHABET + ".", max_size=6)
    pieces = [draw(filler) if char == "*" else char for char in written]
    text = "".join(pieces)
    if draw(st.booleans()):
        text = text.upper()
    return text + draw(st.sampled_from(["", ".", "x", ".x", "..", "é"]))


def coredns_view(query_name: str, lowercase: bool) -> str:
    """The name CoreDNS matches: fully qualified, lowercased by CoreDNS (checked both ways)."""
    text = query_name.lower() if lowercase else query_name
    return text if text.endswith(".") else text + "."


def agree(selector: FQDNSelector, query_name: str, lowercase: bool) -> bool:
    """Python's `re` and RE2 (the syntax and semantics Go's regexp implements) both agree with the policy."""
    regex, view = coredns_regex(selector), coredns_view(query_name, lowercase)
    expected = selector.matches(query_name)
    return (re.search(regex, view) is not None) == expected and (re2.search(regex, view) is not None) == expected


@settings(max_examples=2000, deadline=None)
@given(data=st.data(), selector=selectors(), lowercase=st.booleans())
def test_coredns_regex_agrees_with_policy_matcher(data, selector, lowercase):
    query_name = data.draw(names_for(selector))
    assert agree(selector, query_name, lowercase), (selector, query_name)


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize(
    ("text", "version", "query_name"),
    [
        ("**.cilium.io", (1, 19), "a.b.cilium.io"),
        ("**.cilium.io", (1, 18), "a.b.cilium.io"),
        ("**.cilium.io", (1, 19), "cilium.io"),
        ("*cilium.io", (1, 18), "www.cilium.io"),
        ("*.cilium.io", (1, 18), ".cilium.io"),
        ("*", (1, 18), "."),
        ("*.*", (1, 18), "a.b.c"),
    ],
)
def test_coredns_regex_agrees_on_known_edges(text, version, query_name, lowercase):
    assert agree(FQDNSelector(None, text, WHERE, version), query_name, lowercase)


def test_snippet_carries_every_regex_and_reason():
    text = coredns_snippet(SMALL)
    for entry in SMALL:
        assert coredns_regex(entry.selector) in text
    assert "CiliumClusterwideNetworkPolicy deny-evil spec.egressDeny[1] policies/b.yaml:9" in text
    assert text.count("match (?i)^api[.]evil[.]example[.]$") == 1  # one line for the name denied twice


def test_snippet_comments_out_a_pattern_of_only_stars():
    text = coredns_snippet([pattern("*"), name("api.evil.example")])
    active = [line for line in text.splitlines() if line.strip().startswith("match ")]
    assert active == ["    match (?i)^api[.]evil[.]example[.]$"]
    assert "#   match (?i)^(?:(?:[-a-zA-Z0-9_]+[.])+|[.])$" in text


def test_snippet_reason_cannot_break_out_of_its_comment():
    text = coredns_snippet([name("api.evil.example", reason="x\n}\nforward . 8.8.8.8\r\n#")])
    assert "\nforward" not in text and "\n}\n" not in text.split("\ntemplate ", 1)[0]
    assert sum(1 for line in text.splitlines() if line.strip().startswith("match")) == 1


def test_snippet_warns_about_entries_outside_zones():
    text = coredns_snippet([name("api.evil.example"), pattern("*.other.test")], zone_names=["evil.example"])
    assert "template IN ANY evil.example. {" in text
    assert "# WARNING: only names inside evil.example." in text
    assert "matchPattern: *.other.test" in text.split("\ntemplate ", 1)[0]


def test_empty_input():
    assert "\ntemplate " not in coredns_snippet([])
    result = rpz_zone([], serial=1)
    assert result.unsupported == () and result.broader == ()
    assert "IN SOA" in result.text


@pytest.mark.parametrize("bad", [{"answer": "servfail"}, {"ttl": -1}])
def test_coredns_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        coredns_snippet(SMALL, **bad)


def test_characters_the_schema_forbids_raise_with_location():
    with pytest.raises(ValueError, match=r"policies/a.yaml:15:7 spec.egressDeny\[0\].toFQDNs\[0\]"):
        coredns_snippet([name("evil example")])


# -- RPZ -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "owner_line", "broader"),
    cases(
        ("exact_name", name("API.evil.example"), "api.evil.example CNAME .", False),
        ("pattern_without_star_is_exact", pattern("api.evil.example"), "api.evil.example CNAME .", False),
        ("one_label_star_is_broader", pattern("*.evil.example"), "*.evil.example CNAME .", True),
        ("two_star_labels_are_broader", pattern("*.*.evil.example"), "*.evil.example CNAME .", True),
        ("double_star_1_18_is_broader", pattern("**.evil.example", (1, 18)), "*.evil.example CNAME .", True),
        ("double_star_1_19_is_exact", pattern("**.evil.example", (1, 19)), "*.evil.example CNAME .", False),
        (
            "double_star_then_star_1_19_is_broader",
            pattern("**.*.evil.example", (1, 19)),
            "*.evil.example CNAME .",
            True,
        ),
    ),
)
def test_rpz_expressible(entry, owner_line, broader):
    result = rpz_zone([entry], serial=1)
    assert owner_line in result.text.splitlines()
    assert result.unsupported == ()
    assert result.broader == ((entry,) if broader else ())
    assert ("BROADER" in result.text.split("$ORIGIN")[1]) is broader


@pytest.mark.parametrize(
    ("entry", "why"),
    cases(
        ("star_inside_label", pattern("api-*.evil.example"), "matches part of a label"),
        ("star_prefix_of_label", pattern("*api.evil.example"), "matches part of a label"),
        ("star_label_not_leftmost", pattern("api.*.evil.example"), "after the first label"),
        ("double_star_not_leading", pattern("a.**.example", (1, 19)), "after the first label"),
        ("only_stars", pattern("*"), "selects every name"),
        ("only_star_labels", pattern("*.*"), "no fixed label"),
        ("rpz_trigger_label", name("10.0.0.10.rpz-ip"), "RPZ trigger keyword"),
        ("too_long_under_origin", name(".".join(["a" * 60] * 4)), "longer than DNS allows"),
    ),
)
def test_rpz_unsupported_is_reported_not_dropped(entry, why):
    result = rpz_zone([entry, name("ok.example")], serial=1)
    assert result.unsupported == (entry,)
    reason = rpz_unsupported_reason(entry.selector)
    assert reason is not None and why in reason
    records = [line for line in result.text.splitlines() if line and not line.startswith((";", "$", "@"))]
    assert records == ["ok.example CNAME ."]
    comment = next(line for line in result.text.splitlines() if str(entry.selector) in line)
    assert comment.startswith("; ") and why in comment and REASON in comment


@pytest.mark.parametrize(
    ("answer", "records"),
    [
        ("nxdomain", ["api.evil.example CNAME ."]),
        ("nodata", ["api.evil.example CNAME *."]),
        ("refused", ["api.evil.example CNAME rpz-drop."]),
        ("null-ip", ["api.evil.example A 0.0.0.0", "api.evil.example AAAA ::"]),
    ],
)
def test_rpz_actions(answer, records):
    text = rpz_zone([name("api.evil.example")], answer=answer, serial=1).text
    assert [line for line in text.splitlines() if line.startswith("api.")] == records
    if answer == "refused":
        assert "RPZ has no REFUSED action" in text


def test_rpz_header_origin_serial_ttl():
    text = rpz_zone([name("a.example")], origin="block.corp", serial=42, ttl=60).text
    lines = text.splitlines()
    assert "$ORIGIN block.corp." in lines and "$TTL 60" in lines
    assert "@ IN SOA localhost. hostmaster.localhost. (42 3600 600 86400 60)" in lines
    assert "@ IN NS localhost." in lines


@pytest.mark.parametrize("serial", [-1, 2**32])
def test_rpz_serial_range(serial):
    with pytest.raises(ValueError, match="serial"):
        rpz_zone([], serial=serial)


def test_rpz_sorted_by_domain_and_merged():
    result = rpz_zone(
        [name("b.example"), name("a.zzz"), pattern("*.example"), name("example"), name("b.example", reason="other")],
        serial=1,
    )
    records = [line.split()[0] for line in result.text.splitlines() if line and not line.startswith((";", "$", "@"))]
    assert records == ["example", "*.example", "b.example", "a.zzz"]
    assert isinstance(result, RpzResult)


@pytest.mark.parametrize(("text", "version", "broader"), [
    ("**.ads.example", (1, 19), False), ("***.ads.example", (1, 19), False),
    ("**.ads.example", (1, 18), True), ("*.ads.example", (1, 19), True),
])
def test_rpz_wildcard_is_exact_only_for_a_multi_label_prefix_on_1_19(text, version, broader):
    """pkg/fqdn/matchpattern (1.19): two or more leading stars and a dot are one or more labels."""
    entry = pattern(text, version)
    result = rpz_zone([entry], serial=1)
    assert result.broader == ((entry,) if broader else ())
