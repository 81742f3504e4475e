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
