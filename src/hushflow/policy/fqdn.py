"""FQDN selectors of policies (`matchName`, `matchPattern`), how Cilium matches them, and the
one form DNS names take in hushflow.

Cilium lowercases both the pattern and the name and makes both fully qualified (trailing dot)
before comparing; a trailing dot is therefore never significant. hushflow keeps every name in
one form, `dns_name` (lowercase, no trailing dot: how Hubble shows `destination_names`), and
matches selectors against that form; `fully_qualified` is only for writing zone files.
In a pattern `*` matches any run of `[-a-zA-Z0-9_]` inside one label, never a dot; a pattern
of stars alone matches every name. From Cilium 1.19 a leading `**.` matches one or more whole
labels; before 1.19 it behaved like `*.` (one label). Note that Hubble's *filter* wildcards
(`--fqdn`) follow other rules; they live in hushflow.filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hushflow.policy.source import Location

DEFAULT_CILIUM_VERSION = (1, 18)
_LABEL_CHARS = "[-a-zA-Z0-9_]"


def parse_cilium_version(text: str) -> tuple[int, int]:
    """`1.18`, `v1.19.4` -> (1, 18), (1, 19). Raises ValueError with a readable message."""
    parts = text.strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        raise ValueError(f"not a Cilium version: {text!r} (expected e.g. 1.18 or 1.19.4)") from None


def dns_name(name: str) -> str:
    """hushflow's one form of a DNS name: lowercase, no trailing dot (``API.Example.com.`` ->
    ``api.example.com``)."""
    return name.strip().lower().removesuffix(".")


def fully_qualified(name: str) -> str:
    """The name with its trailing dot, as zone files (RPZ) and CoreDNS configuration write it."""
    return dns_name(name) + "."


def pattern_regex(pattern: str, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION) -> str:
    """The anchored regular expression of a `matchPattern`, over names in `dns_name` form
    (Cilium's matcher, with the trailing dot both sides carry there left out)."""
    pattern = dns_name(pattern)
    if pattern.strip("*.") == "" and "*" in pattern:
        return r"^.*$"  # a pattern of only stars selects every name, the root included
    prefix = ""
    if cilium_version >= (1, 19) and pattern.startswith("**."):
        prefix = f"(?:{_LABEL_CHARS}+\\.)+"
        pattern = pattern[3:]
    body = "".join(f"{_LABEL_CHARS}*" if char == "*" else re.escape(char) for char in pattern)
    return f"^{prefix}{body}\\Z"


@dataclass(frozen=True, slots=True)
class FQDNSelector:
    """One `toFQDNs` entry (or an L7 `dns` rule), compiled for a given Cilium version."""

    match_name: str | None
    match_pattern: str | None
    where: Location
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.match_pattern is not None:
            compiled = re.compile(pattern_regex(self.match_pattern, self.cilium_version))
        else:
            compiled = re.compile(re.escape(dns_name(self.match_name or "")) + r"\Z")
        object.__setattr__(self, "_regex", compiled)

    def matches(self, name: str) -> bool:
        """Does this selector select the (query) name `name`? Case and trailing dot do not matter."""
        return self._regex.match(dns_name(name)) is not None

    @property
    def is_wildcard_all(self) -> bool:
        return self.match_pattern is not None and self.match_pattern.strip("*.") == ""

    def __str__(self) -> str:
        if self.match_pattern is not None:
            return f"matchPattern: {self.match_pattern}"
        return f"matchName: {self.match_name}"
