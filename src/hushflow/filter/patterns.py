"""FQDN and node-name patterns: ``source_fqdn``, ``destination_fqdn``, ``node_name``.

Hubble's filter patterns are *not* policy ``matchPattern``s: a pattern is trimmed, loses one
trailing dot and is lower-cased; ``*`` stands for ``[-.0-9a-z]*`` and therefore crosses dots
(but never matches ``_`` or upper case). Patterns are anchored; several are ORed. Flow names are
compared as they are (not lower-cased).

Node names are ``[cluster/]node``: each side is such a pattern and an empty side matches any
FQDN-looking name. A flow node name without ``/`` is taken as ``default/<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hushflow.filter.field_filter import COST_REGEX, FieldFilter, FilterError, FlowDict, quoted
from hushflow.filter.pflag import go_quote_rune

_ANY_FQDN = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"
_PATTERN_CHARS = frozenset("-0123456789_abcdefghijklmnopqrstuvwxyz")
# Cilium's default cluster name, assumed for node names that carry none.
DEFAULT_CLUSTER = "default"


def canonical_fqdn_pattern(pattern: str) -> str:
    pattern = pattern.strip()
    if pattern.endswith("."):
        pattern = pattern[:-1]
    return pattern.lower()


def fqdn_pattern_regex(pattern: str) -> str:
    """Regex source for one FQDN pattern (unanchored); raises FilterError with Hubble's text."""
    pattern = canonical_fqdn_pattern(pattern)
    if pattern == "":
        raise FilterError("empty pattern")
    if pattern.endswith("."):
        raise FilterError("multiple trailing dots in pattern")
    out = []
    for ch in pattern:
        if ch == ".":
            out.append(r"\.")
        elif ch == "*":
            out.append(r"[-.0-9a-z]*")
        elif ch in _PATTERN_CHARS:
            out.append(ch)
        else:
            raise FilterError(f"{go_quote_rune(ch)}: invalid rune in pattern")
    return "".join(out)


def _literal_runs(pattern: str) -> list[str]:
    return [run for run in canonical_fqdn_pattern(pattern).split("*") if run]


def compile_fqdn_regex(patterns: Sequence[str]) -> re.Pattern[str]:
    body = "|".join(fqdn_pattern_regex(p) for p in patterns)
    return re.compile(rf"(?:{body})\Z")


def compile_fqdn_filter(field: str, patterns: Sequence[str], names_key: str) -> FieldFilter:
    """``names_key``: ``source_names`` or ``destination_names``."""
    regex = compile_fqdn_regex(patterns)
    match = regex.match

    def match_names(flow: FlowDict) -> bool:
        names = flow.get(names_key)
        if not names:
            return False
        for name in names:
            if match(name):
                return True
        return False

    needles: list[bytes] = []
    for pattern in patterns:
        runs = _literal_runs(pattern)
        if not runs:
            needles = []
            break
        if "*" not in pattern:
            needles.append(quoted(runs[0]))
        else:
            needles.append(max(runs, key=len).encode())
    clause = (tuple(needles),) if needles else ()
    return FieldFilter(field, match_names, COST_REGEX, clause)


def node_name_regex(patterns: Sequence[str]) -> re.Pattern[str]:
    parts = []
    for pattern in patterns:
        if pattern == "":
            raise FilterError("empty pattern")
        elems = pattern.split("/")
        if len(elems) > 2:
            raise FilterError("too many slashes in pattern")
        cluster, node = ("", elems[0]) if len(elems) == 1 else (elems[0], elems[1])
        cluster_re = fqdn_pattern_regex(cluster) if cluster else _ANY_FQDN
        node_re = fqdn_pattern_regex(node) if node else _ANY_FQDN
        parts.append(f"{cluster_re}/{node_re}")
    return re.compile(rf"(?:{'|'.join(parts)})\Z")


def compile_node_name_filter(field: str, patterns: Sequence[str]) -> FieldFilter:
    match = node_name_regex(patterns).match
    default_prefix = DEFAULT_CLUSTER + "/"

    def match_node(flow: FlowDict) -> bool:
        name = flow.get("node_name")
        if not name:
            return False
        if "/" not in name:
            name = default_prefix + name
        return match(name) is not None

    return FieldFilter(field, match_node, COST_REGEX)
