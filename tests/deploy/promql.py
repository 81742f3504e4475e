"""What the deploy tests need to know about PromQL and the Prometheus tools.

`metric_names` finds the metric names an expression selects without a PromQL parser: it is
only used to compare them with the metrics contract, and `test_promql_names.py` pins its
behaviour on the constructs our rules and dashboard use.
"""

from __future__ import annotations

import re
import shutil

import pytest

# Words that look like identifiers in PromQL but are not metric names.
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "bool", "offset", "atan2", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev",
        "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_NUMBER_OR_DURATION = re.compile(r"\b\d[\w.]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords and label names left out)."""
    text = _STRING.sub('""', expr)
    text = _LABEL_MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _NUMBER_OR_DURATION.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selects_by_name_label(expr: str) -> bool:
    """True when an expression picks metrics through __name__, which metric_names cannot see."""
    return "__name__" in expr


def require_tool(name: str) -> str:
    """The path of a Prometheus tool; a clear failure (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: `make test` installs it (Debian package `prometheus`), "
            f"or install it yourself and run the tests again",
            pytrace=False,
        )
    return path
