"""The cilium.io/v2 objects hushflow applies: their refs, kinds and the shapes shown in a diff.

`describe` checks that an object is hushflow output (one of `KINDS`, apiVersion cilium.io/v2,
a name, a namespace exactly when namespaced) and names it with an `ObjectRef`; `ObjectProblem`
says why one object was refused or failed. `apply_body` and `clean` drop what the server sets
(status, uid, resourceVersion, managedFields, ...). A `Shape` is a tree of fields: the fields of a
desired object, or those a field manager owns by the live object's managedFields; `project` keeps
only those of an object, and `unified_diff` prints live vs desired as a YAML diff.

Plain values only: nothing here talks to the API server (that is `hushflow.enforce.kube`).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "CILIUM_API_VERSION",
    "KINDS",
    "SERVER_METADATA",
    "Kind",
    "ObjectProblem",
    "ObjectRef",
    "Shape",
    "apply_body",
    "clean",
    "describe",
    "owned_shape",
    "project",
    "shape_of",
    "shape_union",
    "unified_diff",
]

CILIUM_API_VERSION = "cilium.io/v2"


@dataclass(frozen=True)
class Kind:
    plural: str
    namespaced: bool
    apply_rank: int  # apply order: CIDR groups before the policies that reference them


# Cilium: a cidrGroupRef / cidrGroupSelector that finds no CiliumCIDRGroup selects no peer, so a
# deny applied before its groups would briefly deny nothing; groups therefore go first.
KINDS: Mapping[str, Kind] = {
    "CiliumCIDRGroup": Kind("ciliumcidrgroups", namespaced=False, apply_rank=0),
    "CiliumClusterwideNetworkPolicy": Kind("ciliumclusterwidenetworkpolicies", namespaced=False, apply_rank=1),
    "CiliumNetworkPolicy": Kind("ciliumnetworkpolicies", namespaced=True, apply_rank=2),
}

# Set by the server on every write; never part of what hushflow applies or diffs.
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Kind, namespace (None when cluster-scoped) and name of one object."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ObjectProblem:
    """Why one object was refused or failed, readable as is: `CiliumCIDRGroup x: forbidden: ...`."""

    ref: ObjectRef
    message: str
    status: int = 0  # the API server's HTTP status, when it answered

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}"


def describe(obj: Any, index: int) -> tuple[ObjectRef, str | None]:
    """The object's ref, and why hushflow cannot apply it (None when it can)."""
    if not isinstance(obj, Mapping):
        return ObjectRef("object", f"#{index}"), f"desired object #{index} is not a mapping"
    kind_name = str(obj.get("kind") or "")
    metadata_value = obj.get("metadata")
    metadata: Mapping[str, Any] = metadata_value if isinstance(metadata_value, Mapping) else {}
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    ref = ObjectRef(kind_name or "object", name or f"#{index}", str(namespace) if namespace else None)
    if kind_name not in KINDS:
        return ref, f"hushflow applies only {', '.join(sorted(KINDS))}, not {kind_name or 'an object without kind'}"
    if obj.get("apiVersion") != CILIUM_API_VERSION:
        return ref, f"apiVersion is {obj.get('apiVersion')!r}, hushflow applies {CILIUM_API_VERSION}"
    if not name:
        return ref, "metadata.name is missing"
    kind = KINDS[kind_name]
    if kind.namespaced and not namespace:
        return ref, "metadata.namespace is missing; hushflow does not guess a namespace for a CiliumNetworkPolicy"
    if not kind.namespaced and namespace:
        return ObjectRef(kind_name, name), f"metadata.namespace {namespace!r} set on a cluster-scoped {kind_name}"
    return ref, None


def apply_body(obj: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """What is sent: the object with hushflow's labels, without status and server-set metadata."""
    body = copy.deepcopy(dict(obj))
    body.pop("status", None)
    metadata = body["metadata"] = dict(body.get("metadata") or {})
    for key in SERVER_METADATA:
        metadata.pop(key, None)
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    return body


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without status and server-set metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        for key in SERVER_METADATA:
            metadata.pop(key, None)
    return out


# A "shape" is a tree of the fields to show: a nested dict whose leaves are True (the whole value).
Shape = dict[str, Any]


def shape_of(obj: Mapping[str, Any]) -> Shape:
    return {k: (shape_of(v) if isinstance(v, Mapping) and v else True) for k, v in obj.items()}


def owned_shape(live: Mapping[str, Any], manager: str) -> Shape:
    """The fields `manager` owns according to the live object's managedFields (FieldsV1)."""
    shape: Shape = {}
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping) or entry.get("manager") != manager:
            continue
        if entry.get("fieldsType", "FieldsV1") == "FieldsV1":
            shape = shape_union(shape, _shape_from_fields(entry.get("fieldsV1") or {}))
    return shape


def _shape_from_fields(fields: Mapping[str, Any]) -> Shape:
    shape: Shape = {}
    for key, value in fields.items():
        if not key.startswith("f:"):
            continue
        children = value if isinstance(value, Mapping) else {}
        # `k:`/`v:`/`i:` children are list items: show the list whole. No `f:` children: a leaf.
        if any(not c.startswith("f:") and c != "." for c in children) or not any(c.startswith("f:") for c in children):
            shape[key[2:]] = True
        else:
            shape[key[2:]] = _shape_from_fields(children)
    return shape


def shape_union(a: Shape, b: Shape) -> Shape:
    out: Shape = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if mine is None:
            out[key] = value
        elif mine is True or value is True:
            out[key] = True
        else:
            out[key] = shape_union(mine, value)
    return out


def project(obj: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """The parts of `obj` named by `shape`; identity fields are always kept."""
    out: dict[str, Any] = {}
    for key in ("apiVersion", "kind"):
        if key in obj:
            out[key] = obj[key]
    for key, sub in shape.items():
        if key not in obj:
            continue
        value = obj[key]
        if sub is True or not isinstance(value, Mapping):
            out[key] = copy.deepcopy(value)
        else:
            out[key] = _project_inner(value, sub)
    metadata = obj.get("metadata") or {}
    identity = {k: metadata[k] for k in ("name", "namespace") if k in metadata}
    if identity:
        out["metadata"] = {**identity, **(out.get("metadata") or {})}
    return out


def _project_inner(obj: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in shape.items():
        if key in obj:
            value = obj[key]
            leaf = sub is True or not isinstance(value, Mapping)
            out[key] = copy.deepcopy(value) if leaf else _project_inner(value, sub)
    return out


def _to_yaml(obj: Mapping[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def unified_diff(ref: ObjectRef, live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> str:
    label = str(ref).replace(" ", "/")
    lines = difflib.unified_diff(
        _to_yaml(live), _to_yaml(desired),
        fromfile=f"live/{label}" if live is not None else "/dev/null",
        tofile=f"desired/{label}" if desired is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
