"""FQDN selectors of policies (`matchName`, `matchPattern`), how Cilium matches them, and the
one form DNS names take in hushflow.

hushflow keeps every name in one form, `dns_name` (ASCII-lowercase, no trailing dot: how Hubble
shows `destination_names`); `fully_qualified` is for zone files and for matching.

Matching follows Cilium's `pkg/fqdn/matchpattern` and `pkg/fqdn/dns`: pattern and name are
ASCII-lowercased and made fully qualified (one final dot added unless there is one), then the
pattern's regular expression must match the whole name. So a final dot is optional on both
sides, but `a.com..` is another name than `a.com`. A `*` is any run, possibly empty, of
`[-a-zA-Z0-9_]` inside one label; `*.*` is two labels. Which patterns select every name depends
on the version:

- Cilium <= 1.18: only the bare pattern `*`; `*.`, `**` and `***` are one label, and a leading
  `**.` or `***.` is one label like `*.`.
- Cilium >= 1.19 (cilium#43420): any pattern of stars with at most one final dot (`*.`, `**`,
  `***.`); a leading run of two or more stars followed by a dot (`**.x`, `***.x`) is one or
  more whole, non-empty labels. Stars anywhere else still mean one `*`.

Select-all in a `toFQDNs` selector still needs a name of DNS characters without empty labels
(or the root); in an L7 `dns` rule (`dns_proxy=True`) Cilium's proxy lets every query name
through it. Hubble's *filter* wildcards (`--fqdn`) follow other rules; they live in
hushflow.filter.
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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Cilium (matchpattern.go, 1.19+ dnsWildcardRegex): stars and at most one final dot select all.
_STARS_ONLY = re.compile(r"\*+\.?")
# Cilium (matchpattern.go, 1.19+ subdomainWildcardSpecifierPrefix): two or more leading stars
# and a dot are one or more whole labels.
_MULTI_LABEL_PREFIX = re.compile(r"\*{2,}\.")
_SELECT_ALL = f"(?:(?:{_LABEL_CHARS}+\\.)+|\\.)\\Z"  # Cilium: non-empty labels, or the root
_RUNS = re.compile(r"\*+|[^*]+")


def _ascii_lower(text: str) -> str:
    """DNS case folding (RFC 4343) is ASCII only; Cilium never sees other letters in a name
    (its DNS library writes those bytes as \\DDD), so `str.lower` would fold too much."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _cilium_fqdn(text: str) -> str:
    """Cilium's `dns.FQDN` (pkg/fqdn/dns): lowercase, one final dot unless there is one."""
    text = _ascii_lower(text)
    return text if text.endswith(".") else text + "."


def dns_name(name: str) -> str:
    """hushflow's one form of a DNS name: ASCII-lowercase, no trailing dot
    (``API.Example.com.`` -> ``api.example.com``)."""
    return _ascii_lower(name.strip()).removesuffix(".")


def fully_qualified(name: str) -> str:
    """The name with its trailing dot, as zone files (RPZ) and CoreDNS configuration write it."""
    return dns_name(name) + "."


def selects_every_name(pattern: str, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION) -> bool:
    """Is `pattern` Cilium's select-all? Only the bare `*` before 1.19; any stars with at most
    one final dot from 1.19 (matchpattern.go)."""
    pattern = pattern.strip()
    if cilium_version >= (1, 19):
        return _STARS_ONLY.fullmatch(pattern) is not None
    return pattern == "*"


def multi_label_prefix(pattern: str, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION) -> int:
    """The length of Cilium's multi-label wildcard at the start of `pattern` (`**.`, `***.`, ...;
    1.19+), 0 when there is none: the characters that stand for one or more whole labels."""
    pattern = pattern.strip()
    if cilium_version < (1, 19) or selects_every_name(pattern, cilium_version):
        return 0
    prefix = _MULTI_LABEL_PREFIX.match(pattern)
    return prefix.end() if prefix else 0


def pattern_regex(pattern: str, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION) -> str:
    """The regular expression of a `matchPattern` for `re.match`, over the name as Cilium
    compares it: ASCII-lowercase and fully qualified (`cilium_name`). It ends in `\\Z`, not
    `$`, which would let a final newline through."""
    if selects_every_name(pattern, cilium_version):
        return _SELECT_ALL
    text = _cilium_fqdn(pattern.strip())
    skip = multi_label_prefix(text, cilium_version)
    prefix = f"{_LABEL_CHARS}+(?:\\.{_LABEL_CHARS}+)*\\." if skip else ""
    # Any other run of stars is one `*` (Cilium 1.19 folds runs; before, `**` meant `**` = `*`).
    body = "".join(f"{_LABEL_CHARS}*" if run[0] == "*" else re.escape(run) for run in _RUNS.findall(text[skip:]))
    return prefix + body + "\\Z"


def cilium_name(name: str) -> str:
    """The form Cilium compares a name in (pkg/fqdn/dnsproxy CheckAllowed, the name cache):
    ASCII-lowercase, fully qualified. No whitespace is stripped: Cilium strips none."""
    return _cilium_fqdn(name)


@dataclass(frozen=True, slots=True)
class FQDNSelector:
    """One `toFQDNs` entry (or, with `dns_proxy`, an L7 `dns` rule), compiled once for a given
    Cilium version; `matches` is the per-answer call."""

    match_name: str | None
    match_pattern: str | None
    where: Location
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    dns_proxy: bool = False  # an L7 `rules.dns` entry: select-all lets any query name through
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _name: str = field(init=False, repr=False, compare=False)
    _everything: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex, name, everything = None, "", False
        if self.match_pattern is not None:
            # Cilium's proxy (dnsproxy GeneratePattern) turns a select-all into a regex that
            # accepts every string; a toFQDNs select-all still needs DNS characters.
            everything = self.dns_proxy and selects_every_name(self.match_pattern, self.cilium_version)
            regex = re.compile(pattern_regex(self.match_pattern, self.cilium_version))
        else:
            name = cilium_name(self.match_name or "")  # Cilium: dns.FQDN(matchName), compared whole
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_everything", everything)

    def matches(self, name: str) -> bool:
        """Does this selector select the (query) name `name`, as Cilium decides it? ASCII case and
        one final dot do not matter."""
        if self._everything:
            return True
        # cilium_name, inlined: this runs per DNS answer.
        name = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
        if not name.endswith("."):
            name += "."
        if self._regex is None:
            return name == self._name
        return self._regex.match(name) is not None

    @property
    def is_wildcard_all(self) -> bool:
        """A pattern Cilium treats as select-all in this version (`selects_every_name`)."""
        return self.match_pattern is not None and selects_every_name(self.match_pattern, self.cilium_version)

    def __str__(self) -> str:
        if self.match_pattern is not None:
            return f"matchPattern: {self.match_pattern}"
        return f"matchName: {self.match_name}"
