"""The Blocky configuration hushflow compile writes (hushflow.enforce.dnsblock.blocky_config).

No Blocky binary is packaged for Debian or PyPI, so the config is loaded here the way Blocky
loads it, from facts read in Blocky's published JSON schema (docs/config.schema.json) and its
sources (config/bytes_source.go, lists/parsers, cache/stringcache, resolver/blocking_resolver.go),
encoded below, not copied:

- the `blocking:` keys and their types (the schema; deprecated keys such as `blackLists` are
  not accepted here, a config written today must not need Blocky's migration);
- a list source is inline only when it holds a line break, otherwise it is a file path or URL;
- a list line is trimmed, `#` starts a comment; an entry is a regex when it is `/.../`, a
  wildcard when it holds `*` (only `*.name`: the name itself and every depth below), else a
  name matched exactly; a name must be labels of 1..63 of `[a-zA-Z0-9_-]`;
- the query name is lowercased and loses its final dot before matching; a regex is Go RE2,
  unanchored (RE2 here too: the `re2` module);
- `blockType` is zeroIP, nxDomain (any case) or comma-separated IPs; a duration without a unit
  is minutes (deprecated), so `blockTTL` must carry one.

The semantic check is the one of the CoreDNS regexes: with hypothesis, the names Blocky would
block are exactly the names the policy selects. Golden files live in tests/enforce/golden/;
regenerate them with HUSHFLOW_UPDATE_GOLDEN=1 after checking the diff by eye.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import re2
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hushflow.app.compile import dns_files
from hushflow.enforce.dnsblock import BlockedName, blocky_answer_note, blocky_config, blocky_entry
from hushflow.policy.fqdn import FQDNSelector
from tests.enforce.test_dnsblock import REASON, SMALL, WHERE, name, names_for, pattern, selectors

GOLDEN = Path(__file__).parent / "golden"
ANSWERS = ["nxdomain", "refused", "nodata", "null-ip"]

# -- Blocky, as its schema and sources describe it ------------------------------------------------

_LIST_GROUPS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
# Go's time.ParseDuration with a unit on every part (Blocky reads a bare number as minutes).
_GO_DURATION = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"
BLOCKY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["blocking"],
    "additionalProperties": False,  # the file holds the blocking section only
    "properties": {
        "blocking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "denylists": _LIST_GROUPS,
                "allowlists": _LIST_GROUPS,
                "schedules": {"type": "object"},
                "listSchedules": _LIST_GROUPS,
                "clientGroupsBlock": _LIST_GROUPS,
                "blockType": {"type": "string"},
                "blockTTL": {"type": "string", "pattern": _GO_DURATION},
                "loading": {"type": "object"},
            },
        }
    },
}
_BLOCKY_NAME = re.compile(r"[a-zA-Z0-9_-]{1,63}(\.[a-zA-Z0-9_-]{1,63})*[._]?")


def blocky_list_lines(source: str) -> list[str]:
    """The entries of one inline list, as Blocky's line reader gives them."""
    entries = []
    for raw in source.splitlines():
        text = raw.strip()
        if not text or text.startswith("!"):
            continue
        if "#" in text:
            text = text[: text.index("#")].rstrip()
            if not text:
                continue
        entries.append(text)
    return entries


def blocky_kind(entry: str) -> str:
    """regex, wildcard or name, in the order Blocky's chained list cache tries them; fails the test
    on a line Blocky's parser would reject (past a few of those Blocky stops reading the list)."""
    assert len(entry.split()) == 1, f"Blocky reads one field per line: {entry!r}"
    if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
        re2.compile(entry[1:-1].strip())
        return "regex"
    if "*" in entry:
        assert entry.startswith("*.") and entry.count("*") == 1, f"Blocky rejects the wildcard {entry!r}"
        return "wildcard"
    assert len(entry) <= 255 and _BLOCKY_NAME.fullmatch(entry), f"Blocky rejects the name {entry!r}"
    return "name"


def load_like_blocky(text: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The config checked against the schema and Blocky's loading rules; its lists per group."""
    config = yaml.safe_load(text)
    jsonschema.validate(config, BLOCKY_SCHEMA)
    blocking = config["blocking"]
    groups: dict[str, list[str]] = {}
    for group, sources in blocking.get("denylists", {}).items():
        for source in sources:
            assert "\n" in source, f"without a line break Blocky reads {source!r} as a file path or URL"
            groups.setdefault(group, []).extend(blocky_list_lines(source))
    for client, used in blocking.get("clientGroupsBlock", {}).items():
        assert set(used) <= set(groups), f"client {client} uses a group with no denylist: {used}"
    block_type = blocking.get("blockType", "zeroIP")
    if block_type.lower() not in ("zeroip", "nxdomain"):
        for part in block_type.split(","):
            ipaddress.ip_address(part.strip())
    return blocking, groups


def blocky_view(query_name: str) -> str:
    """The name Blocky matches: ASCII-lowercased (names on the wire are ASCII), one final dot gone."""
    text = query_name.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))
    return text[:-1] if text.endswith(".") else text


def blocky_blocks(entries: list[str], query_name: str) -> bool:
    view = blocky_view(query_name)
    for entry in entries:
        kind = blocky_kind(entry)
        if kind == "regex" and re2.search(entry[1:-1].strip(), view):
            return True
        if kind == "wildcard" and view and (view == entry[2:].lower() or view.endswith(entry[1:].lower())):
            return True
        if kind == "name" and view and view == entry.lower():
            return True
    return False


def check_golden(filename: str, text: str) -> None:
    path = GOLDEN / filename
    if os.environ.get("HUSHFLOW_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run with HUSHFLOW_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


# -- the output ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ANSWERS)
def test_blocky_config_golden(answer):
    check_golden(f"blocky-{answer}.yml", blocky_config(SMALL, answer=answer).text)


def test_blocky_config_golden_with_block_ips():
    text = blocky_config(SMALL, answer="null-ip", block_ips=["192.0.2.53", "2001:db8::53"], ttl=30).text
    check_golden("blocky-block-ips.yml", text)


@pytest.mark.parametrize(
    ("answer", "block_ips", "block_type", "note"),
    [
        pytest.param("nxdomain", (), "nxDomain", None, id="nxdomain-is-nxDomain"),
        pytest.param("null-ip", (), "zeroIP", None, id="null-ip-is-zeroIP"),
        pytest.param("nodata", (), "nxDomain", "Blocky has no NODATA block type: the Blocky config answers NXDOMAIN",
                     id="nodata-has-no-blocky-type-nearest-is-nxDomain"),
        pytest.param("refused", (), "nxDomain",
                     "Blocky has no REFUSED block type: the Blocky config answers NXDOMAIN",
                     id="refused-has-no-blocky-type-nearest-is-nxDomain"),
        pytest.param("null-ip", ("192.0.2.53",), "192.0.2.53", None, id="block-ips-are-custom-ips"),
        pytest.param("null-ip", (" 2001:DB8::53", "192.0.2.53"), "2001:db8::53, 192.0.2.53", None,
                     id="block-ips-are-normalised-and-comma-separated"),
    ],
)
def test_block_type_follows_the_dns_answer(answer, block_ips, block_type, note):
    result = blocky_config(SMALL, answer=answer, block_ips=block_ips)
    blocking, _groups = load_like_blocky(result.text)
    assert (blocking["blockType"], result.answer_note) == (block_type, note)
    assert blocky_answer_note(answer, block_ips) == note
    assert (f"Denied names get: NXDOMAIN: Blocky has no {answer.upper()}" in result.text) == (note is not None)


@pytest.mark.parametrize("answer", ANSWERS)
def test_config_loads_as_blocky_loads_it(answer):
    blocking, groups = load_like_blocky(blocky_config(SMALL, answer=answer, ttl=45).text)
    assert blocking["clientGroupsBlock"] == {"default": ["hushflow"]}
    assert blocking["blockTTL"] == "45s"
    assert list(groups) == ["hushflow"]
    kinds = sorted(blocky_kind(entry) for entry in groups["hushflow"])
    # One name (API. and api. are one entry), four patterns as regexes, never a Blocky wildcard.
    assert kinds == ["name", "regex", "regex", "regex", "regex"]


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        pytest.param(name("API.Evil.example."), "api.evil.example", id="name-lowercased-without-final-dot"),
        pytest.param(pattern("api.evil.example"), "api.evil.example", id="pattern-without-star-is-a-name"),
        pytest.param(pattern("*.tracker.example"), "/(?i)^[-a-zA-Z0-9_]*[.]tracker[.]example$/",
                     id="one-label-wildcard-is-a-regex-not-blockys-any-depth-wildcard"),
        pytest.param(pattern("**.ads.example", (1, 19)), "/(?i)^(?:[-a-zA-Z0-9_]+[.])+ads[.]example$/",
                     id="double-star-on-1.19-is-one-or-more-labels"),
        pytest.param(pattern("**.ads.example", (1, 18)), "/(?i)^[-a-zA-Z0-9_]*[-a-zA-Z0-9_]*[.]ads[.]example$/",
                     id="double-star-on-1.18-is-one-label"),
        pytest.param(pattern("a*b.example.com"), "/(?i)^a[-a-zA-Z0-9_]*b[.]example[.]com$/",
                     id="star-inside-a-label-is-expressible"),
    ],
)
def test_blocky_entry(entry, line):
    assert blocky_entry(entry.selector) == line


@pytest.mark.parametrize(
    ("entry", "blocked", "not_blocked"),
    [
        pytest.param(name("api.evil.example"), ["api.evil.example.", "API.EVIL.EXAMPLE"],
                     ["sub.api.evil.example.", "evil.example.", "api.evil.example.."],
                     id="name-blocks-only-itself"),
        pytest.param(pattern("*.tracker.example"), ["x.tracker.example.", "X-1.Tracker.Example."],
                     ["tracker.example.", "a.b.tracker.example.", "xtracker.example."],
                     id="one-label-wildcard-not-apex-not-deeper"),
        pytest.param(pattern("**.ads.example", (1, 19)), ["x.ads.example.", "a.b.ads.example."],
                     ["ads.example.", "badads.example."], id="multi-label-wildcard-not-apex"),
        pytest.param(pattern("a*b.example.com"), ["ab.example.com.", "a-x-b.example.com."],
                     ["a.b.example.com.", "xab.example.com.", "ab.example.com.x."], id="star-inside-a-label"),
    ],
)
def test_blocky_blocks_what_the_policy_denies(entry, blocked, not_blocked):
    _blocking, groups = load_like_blocky(blocky_config([entry]).text)
    for query_name in blocked:
        assert entry.selector.matches(query_name) and blocky_blocks(groups["hushflow"], query_name), query_name
    for query_name in not_blocked:
        assert not entry.selector.matches(query_name), query_name
        assert not blocky_blocks(groups["hushflow"], query_name), query_name


def written_entries(selector: FQDNSelector) -> list[str]:
    """The list entries of the config written for `selector`, read as Blocky reads them (the
    schema is checked by the other tests; here the YAML and list parsing are enough)."""
    config = yaml.load(blocky_config([BlockedName(selector, REASON)]).text, Loader=_YAML_LOADER)
    return [entry for source in config["blocking"]["denylists"]["hushflow"] for entry in blocky_list_lines(source)]


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@settings(max_examples=1000, deadline=None)
@given(data=st.data(), selector=selectors())
def test_blocky_agrees_with_policy_matcher(data, selector):
    if selector.is_wildcard_all:
        return  # never written: see test_select_all_is_not_applied
    entries = written_entries(selector)
    for query_name in data.draw(st.lists(names_for(selector), min_size=1, max_size=8)):
        assert blocky_blocks(entries, query_name) == selector.matches(query_name), (selector, query_name)


# -- what is left out, and hostile input -----------------------------------------------------------


@pytest.mark.parametrize("text", ["*", "**", "*."])
def test_select_all_is_not_applied(text):
    entry = pattern(text, (1, 19))
    result = blocky_config([entry, name("api.evil.example")])
    _blocking, groups = load_like_blocky(result.text)
    assert groups["hushflow"] == ["api.evil.example"]
    assert [(e, why.split(";")[0]) for e, why in result.not_applied] == [(entry, "it selects every name")]
    assert f"# NOT APPLIED: matchPattern: {text} - it selects every name" in result.text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param("a..example", "it is not a name a query can ask for (an empty label)", id="empty-label"),
        pytest.param(".", "it is not a name a query can ask for (an empty label)", id="the-root"),
        pytest.param("a" * 64 + ".example", "it is longer than DNS allows", id="label-over-63"),
        pytest.param(".".join(["a" * 60] * 5), "it is longer than DNS allows", id="name-over-255"),
    ],
)
def test_names_blocky_would_reject_are_left_out_not_written(text, why):
    """A line Blocky's parser rejects counts as an error, and past maxErrorsPerSource errors Blocky
    stops reading the list: such names (which no query can carry) are left out and said so."""
    entry = name(text)
    result = blocky_config([entry, name("api.evil.example")])
    _blocking, groups = load_like_blocky(result.text)
    assert groups["hushflow"] == ["api.evil.example"]
    assert result.not_applied == ((entry, why),)


def test_only_select_all_gives_an_empty_blocking_section():
    result = blocky_config([pattern("*")])
    assert yaml.safe_load(result.text) == {"blocking": {}}
    jsonschema.validate(yaml.safe_load(result.text), BLOCKY_SCHEMA)
    assert blocky_config([]).text.endswith("# No denied names: nothing to block.\nblocking: {}\n")


def test_one_entry_is_still_an_inline_list():
    blocking, groups = load_like_blocky(blocky_config([name("api.evil.example")]).text)
    assert groups == {"hushflow": ["api.evil.example"]}
    assert blocking["denylists"]["hushflow"][0].endswith("api.evil.example\n")


@pytest.mark.parametrize(
    "reason",
    [
        "policies/a.yaml:15\napi.stripe.com",
        "x\r\n  clientGroupsBlock:\n    default: []",
        "tab\tand\x00nul and \u2028 line separator and # hash and /regex/",
        "ends with a colon:",
    ],
)
def test_reason_cannot_break_out_of_its_comment(reason):
    result = blocky_config([BlockedName(FQDNSelector("api.evil.example", None, WHERE), reason)])
    blocking, groups = load_like_blocky(result.text)
    assert groups == {"hushflow": ["api.evil.example"]}
    assert blocking["clientGroupsBlock"] == {"default": ["hushflow"]}


def test_a_huge_reason_cannot_stop_blocky_reading_the_list():
    """Blocky reads a list with Go's bufio.Scanner: a line over 64 KiB would end the list there."""
    entries = [BlockedName(FQDNSelector("a.evil.example", None, WHERE), "log: " + "x" * 70_000), name("b.evil.example")]
    blocking, groups = load_like_blocky(blocky_config(entries).text)
    assert groups == {"hushflow": ["a.evil.example", "b.evil.example"]}
    assert max(len(line) for line in blocking["denylists"]["hushflow"][0].splitlines()) <= 1000


def test_output_does_not_depend_on_input_order():
    assert blocky_config(SMALL).text == blocky_config(list(reversed(SMALL))).text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"answer": "servfail"}, "unknown DNS block answer", id="unknown-answer"),
        pytest.param({"ttl": -1}, "TTL out of range", id="negative-ttl"),
        pytest.param({"group": "hush flow"}, "Blocky group name", id="group-with-space"),
        pytest.param({"group": ""}, "Blocky group name", id="empty-group"),
        pytest.param({"answer": "null-ip", "block_ips": ["192.0.2.300"]}, "not an IP address", id="bad-ip"),
        pytest.param({"answer": "null-ip", "block_ips": ["192.0.2.1, 192.0.2.2"]}, "not an IP address",
                     id="ips-are-a-list-not-a-comma-string"),
        pytest.param({"answer": "nxdomain", "block_ips": ["192.0.2.1"]}, "use them with null-ip",
                     id="block-ips-with-another-answer"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        blocky_config(SMALL, **kwargs)


# -- hushflow compile writes it ---------------------------------------------------------------------


def test_compile_writes_the_blocky_config_next_to_the_others(tmp_path):
    from hushflow.app.compile import CompileJob, run_compile

    policies = tmp_path / "policies.yaml"
    policies.write_text(
        """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: block, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints:
    - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules: {dns: [{matchPattern: "*"}]}
  egressDeny:
  - toFQDNs: [{matchName: beacon.example.com}, {matchPattern: "*.tracking.example.com"}]
"""
    )
    out = tmp_path / "out"
    report = run_compile(CompileJob([str(policies)], out_dir=str(out), resolve=False, dns_answer="nodata"),
                         now=lambda: 1000.0)
    text = (out / "dns" / "blocky-hushflow.yml").read_text()
    assert text.startswith("# Generated by hushflow compile: do not edit")
    blocking, groups = load_like_blocky(text)
    assert blocking["blockType"] == "nxDomain"
    assert sorted(groups["hushflow"]) == ["/(?i)^[-a-zA-Z0-9_]*[.]tracking[.]example[.]com$/", "beacon.example.com"]
    assert "Blocky has no NODATA block type: the Blocky config answers NXDOMAIN" in report.lines()


def test_dns_files_has_the_blocky_config():
    files, _unsupported = dns_files([], "nxdomain", serial=1)
    assert sorted(files) == ["dns/blocky-hushflow.yml", "dns/coredns-hushflow.conf", "dns/hushflow.rpz"]
