"""Label selector filters: ``source_label``, ``destination_label``, ``node_labels``.

Each value is a Kubernetes label selector (``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k``, ``!k``, ``k>1``, ``k<1``; a comma means AND); several values are ORed.
Hubble lets keys carry a Cilium label source (``k8s:app=x``, ``reserved:world``); a key without
one gets the ``any`` source, which matches a label of that key from any source.

Flow labels are ``source:key=value`` strings (``reserved:world`` has an empty value; node labels
usually have no source). Each requirement is compiled once; per flow the label list is parsed into
two lookup tables (memoised per filter, since endpoints repeat).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hushflow.filter.field_filter import COST_LABELS, FieldFilter, FilterError, FlowDict, Needles, json_safe

ANY_SOURCE = "any"
UNSPEC_SOURCE = "unspec"
_MEMO_LIMIT = 1 << 14

# --------------------------------------------------------------------------------------------
# Hubble's translation of `source:key` into the `source.key` form a K8s selector accepts.


def translate_selector(selector: str) -> str:
    """``k8s:app in (a, b),!x`` -> ``k8s.app in (a, b),!any.x`` (Hubble's label parser)."""
    out: list[str] = []
    i = 0
    n = len(selector)
    while i < n:
        # Up to the next key: whitespace and '!' are copied.
        while i < n and (selector[i].isspace() or selector[i] == "!"):
            out.append(selector[i])
            i += 1
        start = i
        while i < n and not (selector[i].isspace() or selector[i] in "=!,"):
            i += 1
        key = selector[start:i]
        if ":" not in key:
            key = f"{ANY_SOURCE}:{key}"
        out.append(key.replace(":", ".", 1))
        # Up to and including the comma that ends this requirement (outside parentheses).
        depth = 0
        while i < n:
            ch = selector[i]
            out.append(ch)
            i += 1
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                break
    return "".join(out)


# --------------------------------------------------------------------------------------------
# A Kubernetes label selector parser (k8s.io/apimachinery labels.Parse semantics).

_SPECIAL = "=!(),<>"
_OPERATORS = ("!=", "==", "!", "(", ")", ",", "=", ">", "<")
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_INT64 = re.compile(r"[+-]?[0-9]+")


def _check_key(key: str) -> None:
    parts = key.split("/")
    if len(parts) > 2:
        raise FilterError(f"invalid label key {key!r}: a qualified name must have at most one '/'")
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            raise FilterError(f"invalid label key {key!r}: prefix part must be a lowercase DNS subdomain")
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        raise FilterError(
            f"invalid label key {key!r}: name part must be 1-63 alphanumeric characters, '-', '_' or '.'"
            ", starting and ending with an alphanumeric character"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise FilterError(
            f"invalid label value {value!r}: must be empty or 1-63 alphanumeric characters, '-', '_'"
            " or '.', starting and ending with an alphanumeric character"
        )


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, literal) pairs; kind is 'id', 'in', 'notin', an operator, or 'eos'."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            for op in _OPERATORS:
                if text.startswith(op, i):
                    out.append((op, op))
                    i += len(op)
                    break
            else:  # pragma: no cover - every special character starts an operator
                raise FilterError(f"unexpected character {ch!r}")
        else:
            start = i
            while i < n and not (text[i].isspace() or text[i] in _SPECIAL):
                i += 1
            word = text[start:i]
            out.append((word if word in ("in", "notin") else "id", word))
    out.append(("eos", ""))
    return out


@dataclass(frozen=True, slots=True)
class Requirement:
    source: str  # ANY_SOURCE matches every source
    key: str
    operator: str  # in, notin, exists, !exists, gt, lt
    values: frozenset[str]
    number: int = 0


def _requirement(key: str, operator: str, values: list[str]) -> Requirement:
    _check_key(key)
    for value in values:
        _check_value(value)
    number = 0
    if operator in ("gt", "lt"):
        if len(values) != 1 or not _INT64.fullmatch(values[0]):
            raise FilterError(f"for 'Gt', 'Lt' operators, the value must be an integer: {values!r}")
        number = int(values[0])
    source, _, name = key.partition(".")
    if not _:
        source, name = UNSPEC_SOURCE, key
    return Requirement(source, name, operator, frozenset(values), number)


def parse_selector(selector: str) -> tuple[Requirement, ...]:
    """Parse a (translated) K8s selector. An empty selector has no requirements (matches all)."""
    toks = _tokens(selector)
    pos = 0
    reqs: list[Requirement] = []
    if toks[0][0] == "eos":
        return ()
    while True:
        kind, lit = toks[pos]
        pos += 1
        negated = False
        if kind == "!":
            negated = True
            kind, lit = toks[pos]
            pos += 1
        if kind != "id":
            raise FilterError(f"found '{lit or 'end of string'}', expected: identifier")
        key = lit
        look = toks[pos][0]
        if look in ("eos", ","):
            reqs.append(_requirement(key, "!exists" if negated else "exists", []))
        elif negated:
            raise FilterError(f"found '{toks[pos][1]}', expected: ',' or 'end of string'")
        else:
            op, oplit = toks[pos]
            pos += 1
            values: list[str] = []
            if op in ("in", "notin"):
                if toks[pos][0] != "(":
                    raise FilterError(f"found '{toks[pos][1] or 'end of string'}', expected: '('")
                pos += 1
                if toks[pos][0] == ")":  # "()" is the empty value
                    values.append("")
                    pos += 1
                else:
                    expect_value = True
                    while True:
                        tk, tl = toks[pos]
                        if tk in ("id", "in", "notin") and expect_value:
                            values.append(tl)
                            pos += 1
                            expect_value = False
                        elif tk == "," and not expect_value:
                            pos += 1
                            expect_value = True
                        elif tk == "," and expect_value:  # "(a,,b)" / "(,a)": an empty value
                            values.append("")
                            pos += 1
                        elif tk == ")":
                            if expect_value:
                                values.append("")
                            pos += 1
                            break
                        else:
                            raise FilterError(f"found '{tl or 'end of string'}', expected: ',' or ')'")
                reqs.append(_requirement(key, op, values))
            elif op in ("=", "==", "!=", ">", "<"):
                tk, tl = toks[pos]
                if tk in ("id", "in", "notin"):
                    values.append(tl)
                    pos += 1
                elif tk in ("eos", ","):
                    values.append("")
                else:
                    raise FilterError(f"found '{tl}', expected: identifier")
                operator = {"=": "in", "==": "in", "!=": "notin", ">": "gt", "<": "lt"}[op]
                reqs.append(_requirement(key, operator, values))
            else:
                raise FilterError(
                    f"found '{oplit or 'end of string'}', expected: "
                    "=, !=, ==, in, notin, >, <, ',' or 'end of string'"
                )
        kind, lit = toks[pos]
        if kind == "eos":
            return tuple(reqs)
        if kind != ",":
            raise FilterError(f"found '{lit}', expected: ',' or 'end of string'")
        pos += 1


# --------------------------------------------------------------------------------------------
# Matching against flow label lists.

LabelTables = tuple[dict[str, str], dict[tuple[str, str], str]]


def label_tables(labels: Sequence[str]) -> LabelTables:
    """(key -> value, (source, key) -> value), first occurrence wins like Cilium's LabelArray."""
    by_key: dict[str, str] = {}
    by_source: dict[tuple[str, str], str] = {}
    for label in labels:
        colon = label.find(":")
        if colon < 0:
            source, rest = UNSPEC_SOURCE, label
        else:
            source, rest = label[:colon], label[colon + 1 :]
        key, _, value = rest.partition("=")
        by_key.setdefault(key, value)
        by_source.setdefault((source, key), value)
    return by_key, by_source


def _requirement_match(req: Requirement) -> Callable[[LabelTables], bool]:
    any_source = req.source == ANY_SOURCE
    lookup_key: Any = req.key if any_source else (req.source, req.key)
    index = 0 if any_source else 1
    values = req.values
    op = req.operator
    number = req.number

    if op == "exists":
        return lambda t: lookup_key in t[index]
    if op == "!exists":
        return lambda t: lookup_key not in t[index]
    if op == "in":

        def match_in(t: LabelTables) -> bool:
            value = t[index].get(lookup_key)
            return value is not None and value in values

        return match_in
    if op == "notin":

        def match_notin(t: LabelTables) -> bool:
            value = t[index].get(lookup_key)
            return value is None or value not in values

        return match_notin

    def match_order(t: LabelTables) -> bool:
        value = t[index].get(lookup_key)
        if value is None or not _INT64.fullmatch(value):
            return False
        return int(value) > number if op == "gt" else int(value) < number

    return match_order


def compile_selector(selector: str) -> Callable[[LabelTables], bool]:
    reqs = parse_selector(translate_selector(selector))
    preds = tuple(_requirement_match(r) for r in reqs)
    if not preds:
        return lambda t: True
    if len(preds) == 1:
        return preds[0]

    def match_all(t: LabelTables) -> bool:
        for pred in preds:
            if not pred(t):
                return False
        return True

    return match_all


def _selector_needles(selector: str) -> list[bytes] | None:
    """Bytes one requirement of the selector forces into the line, or None if none is safe."""
    reqs = parse_selector(translate_selector(selector))
    for req in reqs:
        if req.operator != "in" or not all(v and json_safe(v) for v in req.values):
            continue
        if not json_safe(req.key):
            continue
        if req.source == ANY_SOURCE:
            # "<src>:key=value" or "key=value": both end with key=value".
            return [f"{req.key}={v}".encode() + b'"' for v in sorted(req.values)]
        if json_safe(req.source):
            return [f'"{req.source}:{req.key}={v}"'.encode() for v in sorted(req.values)]
    return None


def compile_label_filter(field: str, selectors: Sequence[str], labels_of: Callable[[FlowDict], Any],
                         error_prefix: str) -> FieldFilter:
    """``labels_of(flow)`` returns the flow's label list (or None)."""
    try:
        preds = tuple(compile_selector(s) for s in selectors)
        alternatives: list[bytes] | None = []
        for s in selectors:
            found = _selector_needles(s)
            if found is None or alternatives is None:
                alternatives = None
            else:
                alternatives.extend(found)
    except FilterError as err:
        raise FilterError(f"{error_prefix}: {err}") from None
    memo: dict[tuple[str, ...], LabelTables] = {}
    empty = label_tables(())

    def match_labels(flow: FlowDict) -> bool:
        labels = labels_of(flow)
        if labels:
            key = tuple(labels)
            tables = memo.get(key)
            if tables is None:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                tables = memo[key] = label_tables(labels)
        else:
            tables = empty
        for pred in preds:
            if pred(tables):
                return True
        return False

    needles: Needles = (tuple(alternatives),) if alternatives else ()
    return FieldFilter(field, match_labels, COST_LABELS, needles)
