"""Endpoint filters: pods, services, workloads, cluster names and security identities.

- ``source_pod``/``destination_pod`` and ``*_service``: ``[namespace/]name-prefix``. A value
  without ``/`` means namespace ``default``; ``ns/`` is any name in ``ns``; ``/x`` is prefix ``x``
  in any namespace; ``/`` matches any endpoint that has a namespace or a name. An endpoint with
  neither never matches; an empty value is an error.
- ``*_workload``: ``{name, kind}``, an empty part is a wildcard, any workload may match.
- ``*_cluster_name``: exact; ``*_identity``: exact numeric identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hushflow.filter.field_filter import (
    COST_LOOKUP,
    COST_SCAN,
    COST_STRING,
    FieldFilter,
    FilterError,
    FlowDict,
    json_safe,
    key_string,
)
from hushflow.filter.pflag import go_quote

DEFAULT_NAMESPACE = "default"


def parse_namespaced_name(value: str) -> tuple[str, str]:
    """Hubble's ``[namespace/]name``: ``x`` is (default, x); only the first two parts count."""
    parts = value.split("/")
    if len(parts) > 1:
        return parts[0], parts[1]
    if parts[0] == "":
        return "", ""
    return DEFAULT_NAMESPACE, parts[0]


def compile_namespaced_filter(field: str, values: Sequence[str], object_key: str, name_key: str,
                              error_prefix: str) -> FieldFilter:
    """Pods (``object_key`` source/destination, ``name_key`` pod_name) or services
    (``*_service``, ``name``)."""
    specs: list[tuple[str, str]] = []
    for value in values:
        ns, prefix = parse_namespaced_name(value)
        if value == "":
            msg = f"invalid filter, must be [namespace/][<name>], got {go_quote(value)}"
            raise FilterError(f"{error_prefix}: {msg}" if error_prefix else msg)
        specs.append((ns, prefix))
    by_namespace: dict[str, tuple[str, ...]] = {}
    for ns, prefix in specs:
        by_namespace[ns] = (*by_namespace.get(ns, ()), prefix)
    # A namespace with an empty prefix matches every name in it.
    table = {ns: ("",) if "" in prefixes else prefixes for ns, prefixes in by_namespace.items()}
    wildcard = table.pop("", None)  # prefixes that apply in any namespace
    namespaced = table

    def match(flow: FlowDict) -> bool:
        obj = flow.get(object_key)
        if obj is None:
            return False
        ns = obj.get("namespace", "")
        name = obj.get(name_key, "")
        if not ns and not name:
            return False
        prefixes = namespaced.get(ns)
        if prefixes is not None:
            for p in prefixes:
                if name.startswith(p):
                    return True
        if wildcard is not None:
            for p in wildcard:
                if name.startswith(p):
                    return True
        return False

    needles: list[bytes] = []
    for ns, prefix in specs:
        if ns and json_safe(ns):
            needles.append(key_string("namespace", ns))
        elif prefix and json_safe(prefix):
            needles.append(f'"{name_key}":"{prefix}'.encode())
        else:
            needles = []  # one value without a literal: no condition at all
            break
    clause = (tuple(dict.fromkeys(needles)),) if needles else ()
    return FieldFilter(field, match, COST_STRING, clause)


def compile_workload_filter(field: str, workloads: Sequence[Mapping[str, Any]], endpoint_key: str) -> FieldFilter:
    specs = tuple((w.get("name", ""), w.get("kind", "")) for w in workloads)

    def match(flow: FlowDict) -> bool:
        ep = flow.get(endpoint_key)
        if ep is None:
            return False
        for wl in ep.get("workloads", ()):
            wname = wl.get("name", "")
            wkind = wl.get("kind", "")
            for name, kind in specs:
                if (not name or name == wname) and (not kind or kind == wkind):
                    return True
        return False

    needles: list[bytes] = []
    for name, kind in specs:
        if name and json_safe(name):
            needles.append(key_string("name", name))
        elif kind and json_safe(kind):
            needles.append(key_string("kind", kind))
        else:
            needles = []  # one value without a literal: no condition at all
            break
    clause = (tuple(needles),) if needles else ()
    return FieldFilter(field, match, COST_SCAN, clause)


def compile_cluster_filter(field: str, names: Sequence[str], endpoint_key: str) -> FieldFilter:
    for name in names:
        if name == "":
            raise FilterError("invalid filter, name must not be empty")
    wanted = frozenset(names)

    def match(flow: FlowDict) -> bool:
        ep = flow.get(endpoint_key)
        return ep is not None and ep.get("cluster_name") in wanted

    clause = ((tuple(key_string("cluster_name", n) for n in names),)
              if all(json_safe(n) for n in names) else ())
    return FieldFilter(field, match, COST_LOOKUP, clause)


def compile_identity_filter(field: str, identities: Sequence[int], endpoint_key: str) -> FieldFilter:
    wanted = frozenset(identities)

    def match(flow: FlowDict) -> bool:
        ep = flow.get(endpoint_key)
        return ep is not None and ep.get("identity", 0) in wanted

    clause = ((tuple(f'"identity":{i}'.encode() for i in identities),) if 0 not in wanted else ())
    return FieldFilter(field, match, COST_LOOKUP, clause)
