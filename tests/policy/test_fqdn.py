"""Policy FQDN matching (reference §B.1), table-driven plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hushflow.policy.fqdn import FQDNSelector, parse_cilium_version
from hushflow.policy.source import Location

HERE = Location("t.yaml")


def pattern(text, version=(1, 18)):
    return FQDNSelector(None, text, HERE, version)


@pytest.mark.parametrize(
    ("selector", "name", "version", "expected"),
    [
        ("*.cilium.io", "a.cilium.io", (1, 18), True),
        ("*.cilium.io", "cilium.io", (1, 18), False),
        ("*.cilium.io", "a.b.cilium.io", (1, 18), False),
        ("*cilium.io", "cilium.io", (1, 18), True),
        ("*cilium.io", "subcilium.io", (1, 18), True),
        ("*cilium.io", "www.cilium.io", (1, 18), False),
        ("*", "anything.at.all", (1, 18), True),
        ("*", ".", (1, 18), True),
        ("**.cilium.io", "a.b.cilium.io", (1, 18), False),  # 1.18: `**.` is one label
        ("**.cilium.io", "a.cilium.io", (1, 18), True),
        ("**.cilium.io", "a.b.cilium.io", (1, 19), True),
        ("**.cilium.io", "cilium.io", (1, 19), False),
        ("a.**.cilium.io", "a.b.c.cilium.io", (1, 19), False),  # `**` elsewhere is `*`
        ("*.CILIUM.io", "A.cilium.IO.", (1, 18), True),  # case and trailing dot do not matter
    ],
)
def test_match_pattern(selector, name, version, expected):
    assert pattern(selector, version).matches(name) is expected


def test_match_name_is_exact_modulo_case_and_dot():
    selector = FQDNSelector("API.example.com", None, HERE)
    assert selector.matches("api.example.com.")
    assert not selector.matches("xapi.example.com")
    assert not selector.matches("api.example.com.evil")


LABEL = st.from_regex(r"[a-z0-9][-a-z0-9_]{0,10}", fullmatch=True)


@given(st.lists(LABEL, min_size=1, max_size=4), LABEL)
def test_single_star_matches_exactly_one_label(labels, first):
    base = ".".join(labels)
    assert pattern(f"*.{base}").matches(f"{first}.{base}")
    assert not pattern(f"*.{base}").matches(f"{first}.x.{base}")


@given(st.lists(LABEL, min_size=1, max_size=3), st.lists(LABEL, min_size=1, max_size=4))
def test_double_star_from_1_19_matches_any_depth(labels, prefix):
    base = ".".join(labels)
    name = ".".join(prefix) + "." + base
    assert pattern(f"**.{base}", (1, 19)).matches(name)
    assert pattern(f"**.{base}", (1, 18)).matches(name) is (len(prefix) == 1)


@pytest.mark.parametrize(("text", "expected"), [("1.18", (1, 18)), ("v1.19.4", (1, 19)), ("2", (2, 0))])
def test_parse_cilium_version(text, expected):
    assert parse_cilium_version(text) == expected


def test_parse_cilium_version_rejects_garbage():
    with pytest.raises(ValueError, match="not a Cilium version"):
        parse_cilium_version("latest")


# -- the compiled matcher against a label-by-label reading of Cilium's rules --------------------
# (pkg/fqdn/matchpattern/matchpattern.go for 1.18 and 1.19; pkg/fqdn/dns/dns.go for FQDN form)
DNS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _glob_label(pattern: str, label: str) -> bool:
    """One label: a star is any run of DNS characters, anything else is itself."""
    if not pattern:
        return not label
    if pattern[0] == "*":
        return _glob_label(pattern[1:], label) or (
            bool(label) and label[0] in DNS_CHARS and _glob_label(pattern, label[1:])
        )
    return bool(label) and label[0] == pattern[0] and _glob_label(pattern[1:], label[1:])


def _labels(fqdn: str) -> list[str]:
    return fqdn[:-1].split(".")


def _reference(pattern: str, name: str, version: tuple[int, int]) -> bool:
    lower = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    name = name.translate(lower)
    name = name if name.endswith(".") else name + "."
    stars_only = set(pattern.rstrip(".")) == {"*"} and len(pattern) - len(pattern.rstrip(".")) <= 1
    if pattern == "*" or (version >= (1, 19) and stars_only):
        return name == "." or all(label and set(label) <= DNS_CHARS for label in _labels(name))
    fqdn = pattern.translate(lower)
    fqdn = fqdn if fqdn.endswith(".") else fqdn + "."
    want, have = _labels(fqdn), _labels(name)
    if version >= (1, 19) and len(want) > 1 and len(want[0]) >= 2 and set(want[0]) == {"*"}:
        tail = want[1:]
        depth = len(have) - len(tail)
        if depth < 1 or any(not label or not set(label) <= DNS_CHARS for label in have[:depth]):
            return False
        want, have = tail, have[depth:]
    return len(want) == len(have) and all(_glob_label(w, h) for w, h in zip(want, have, strict=True))


PATTERNS = st.text("ab-_*.", min_size=1, max_size=9)
NAMES = st.text("abAB-_. é*", max_size=10)


@given(PATTERNS, NAMES, st.sampled_from([(1, 18), (1, 19), (1, 20)]))
def test_pattern_agrees_with_label_reading_of_cilium(text, name, version):
    assert pattern(text, version).matches(name) is _reference(text, name, version)


@given(PATTERNS, st.sampled_from([(1, 18), (1, 19)]), st.data())
def test_pattern_agrees_on_names_built_from_it(text, version, data):
    name = "".join(data.draw(st.text("ab_.", max_size=4)) if char == "*" else char for char in text)
    assert pattern(text, version).matches(name) is _reference(text, name, version)
