"""Cilium labels and label selectors, with label sources.

A Cilium label is `source:key=value` (`k8s:app=web`, `reserved:world`). A selector key written
without a source means `any:` (every source matches); a leading `$` means `reserved:`.
Matching works as Cilium's does: an endpoint's labels are expanded into a map from
`source:key` (and `any:key`) to value, and each requirement looks its key up there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from hushflow.policy.source import Location

KNOWN_SOURCES = frozenset(
    {"k8s", "reserved", "cidr", "fqdn", "cidrgroup", "node", "unspec", "any", "container", "cni"}
)
NAMESPACE_KEY = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
POLICY_LABEL_PREFIX = "io.cilium.k8s.policy."

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


@dataclass(frozen=True, slots=True, order=True)
class Label:
    source: str
    key: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.source}:{self.key}={self.value}" if self.value else f"{self.source}:{self.key}"

    @property
    def selector_key(self) -> str:
        return f"{self.source}:{self.key}"


def parse_label(text: str, default_source: str = "unspec") -> Label:
    """`k8s:app=web` -> Label("k8s", "app", "web"); `reserved:world` -> Label("reserved", "world")."""
    key, _, value = text.partition("=")
    source, key = split_source(key, default_source)
    return Label(source, key, value)


def split_source(key: str, default_source: str = "any") -> tuple[str, str]:
    """Split a selector key into (source, key), with Cilium's defaults."""
    if key.startswith("$"):
        return "reserved", key[1:]
    source, sep, rest = key.partition(":")
    if sep and source in KNOWN_SOURCES:
        return source, rest
    if sep and "/" not in source and "." not in source:
        # Cilium takes whatever precedes the first colon as the source.
        return source, rest
    return default_source, key


def endpoint_label_map(labels: Iterable[str]) -> dict[str, str]:
    """Expand an endpoint's label strings into the lookup map selectors match against."""
    out: dict[str, str] = {}
    for text in labels:
        label = parse_label(text)
        out[label.selector_key] = label.value
        out.setdefault(f"any:{label.key}", label.value)
    return out


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str  # always `source:key`
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        return value is None

    def __str__(self) -> str:
        if self.operator == "In" and len(self.values) == 1:
            return f"{self.key}={next(iter(self.values))}"
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        word = "in" if self.operator == "In" else "notin"
        return f"{self.key} {word} ({', '.join(sorted(self.values))})"


@dataclass(frozen=True, slots=True)
class Selector:
    """A compiled Cilium endpoint selector, implicit requirements included.

    `written` keeps the requirements the user wrote (for messages); `requirements` is what
    Cilium enforces once it added the policy namespace, cluster and so on.
    """

    requirements: tuple[Requirement, ...]
    written: tuple[Requirement, ...]
    where: Location
    requirement_set: frozenset[Requirement] = field(init=False, repr=False, compare=False)
    # The one namespace this selector is pinned to (k8s:io.kubernetes.pod.namespace In [ns]), if any.
    namespace: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirement_set", frozenset(self.requirements))
        pinned = [
            r for r in self.requirements
            if r.key == f"k8s:{NAMESPACE_KEY}" and r.operator == "In" and len(r.values) == 1
        ]
        object.__setattr__(self, "namespace", next(iter(pinned[0].values)) if pinned else None)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def selects_all(self) -> bool:
        return not self.requirements

    def keys(self) -> set[str]:
        return {requirement.key for requirement in self.requirements}

    def names_key(self, bare_key: str) -> bool:
        return any(r.key.split(":", 1)[1] == bare_key for r in self.written)

    def has_source(self, source: str) -> bool:
        return any(r.key.startswith(f"{source}:") for r in self.written)

    def __str__(self) -> str:
        return ", ".join(str(r) for r in self.requirements) or "(everything)"


def written_requirements(raw: Mapping[str, object]) -> tuple[Requirement, ...]:
    """The requirements of a schema-valid `{matchLabels, matchExpressions}` mapping."""
    out: list[Requirement] = []
    match_labels = raw.get("matchLabels") or {}
    assert isinstance(match_labels, Mapping)
    for key, value in match_labels.items():
        source, bare = split_source(str(key))
        out.append(Requirement(f"{source}:{bare}", "In", frozenset({"" if value is None else str(value)})))
    expressions = raw.get("matchExpressions") or []
    assert isinstance(expressions, list)
    for expression in expressions:
        source, bare = split_source(str(expression.get("key", "")))
        operator = expression.get("operator", "In")
        values = frozenset(str(v) for v in (expression.get("values") or []))
        out.append(Requirement(f"{source}:{bare}", operator, values))
    return tuple(out)


def may_overlap(a: Selector | None, b: Selector | None) -> bool:
    """False only when no endpoint can be selected by both (a cheap, safe test)."""
    if a is None or b is None:
        return a is b
    if a.namespace is not None and b.namespace is not None and a.namespace != b.namespace:
        return False
    for left in a.requirements:
        for right in b.requirements:
            if left.key != right.key:
                continue
            if left.operator == "In" and right.operator == "In" and not (left.values & right.values):
                return False
            if {left.operator, right.operator} == {"Exists", "DoesNotExist"}:
                return False
            if left.operator == "In" and right.operator == "NotIn" and left.values <= right.values:
                return False
            if left.operator == "NotIn" and right.operator == "In" and right.values <= left.values:
                return False
            if left.operator == "In" and right.operator == "DoesNotExist":
                return False
            if left.operator == "DoesNotExist" and right.operator == "In":
                return False
    return True

