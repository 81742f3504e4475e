"""Kubernetes server-side apply of compiled Cilium objects (`hushflow compile --apply`).

hushflow writes three cilium.io/v2 kinds: CiliumNetworkPolicy (namespaced),
CiliumClusterwideNetworkPolicy and CiliumCIDRGroup (cluster-scoped). `apply_objects` sends each
desired object as a server-side apply (SSA) patch under the field manager "hushflow" and prunes
the CIDR groups hushflow created earlier that are no longer desired.

Ownership is by label: hushflow touches only objects that carry the managed-by label(s) of
`managed_selector`. An object of the same name that exists without them belongs to someone else
and is refused, never overwritten; this is also why `force=true` (take over fields another
manager owns) is sent only for objects that already carry hushflow's label.

The Kubernetes client is passed in (`load_kube_api` builds one from a kubeconfig or the pod's
service account); requests go through `ApiClient.param_serialize` / `ApiClient.call_api`, so
authentication, TLS and proxies are the official client's.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, list_kube_config_contexts, load_incluster_config, load_kube_config

__all__ = [
    "ApplyResult",
    "KubeApiError",
    "KubeConfigError",
    "ObjectProblem",
    "ObjectRef",
    "apply_objects",
    "list_managed",
    "load_kube_api",
]

CILIUM_API_VERSION = "cilium.io/v2"
APPLY_PATCH_CONTENT_TYPE = "application/apply-patch+yaml"
DEFAULT_MANAGED_SELECTOR = "app.kubernetes.io/managed-by=hushflow"

# Seconds per request (connect + read): a hung API server must not hang `hushflow compile --apply`.
_REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class _Kind:
    plural: str
    namespaced: bool
    apply_rank: int  # apply order: CIDR groups before the policies that reference them


# Cilium: a cidrGroupRef / cidrGroupSelector that finds no CiliumCIDRGroup selects no peer, so a
# deny applied before its groups would briefly deny nothing; groups therefore go first.
_KINDS: Mapping[str, _Kind] = {
    "CiliumCIDRGroup": _Kind("ciliumcidrgroups", namespaced=False, apply_rank=0),
    "CiliumClusterwideNetworkPolicy": _Kind("ciliumclusterwidenetworkpolicies", namespaced=False, apply_rank=1),
    "CiliumNetworkPolicy": _Kind("ciliumnetworkpolicies", namespaced=True, apply_rank=2),
}

# Set by the server on every write; never part of what hushflow applies or diffs.
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds")


class KubeConfigError(Exception):
    """No usable Kubernetes client configuration; the message says what to pass instead."""


class KubeApiError(Exception):
    """The Kubernetes API cannot be used at all (unreachable, TLS failure); the message says where."""


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

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}"


@dataclass
class ApplyResult:
    """What `apply_objects` did, or with `dry_run` would do.

    `refused` are desired objects that exist without hushflow's label (someone else's);
    `failed` are objects the API server rejected (403, 409, 422, ...) or that are not valid
    hushflow output. `diff` is a unified YAML diff, live vs desired, of the fields hushflow sets,
    one section per created, updated or deleted object.
    """

    dry_run: bool = False
    created: list[ObjectRef] = field(default_factory=list)
    updated: list[ObjectRef] = field(default_factory=list)
    unchanged: list[ObjectRef] = field(default_factory=list)
    deleted: list[ObjectRef] = field(default_factory=list)
    refused: list[ObjectProblem] = field(default_factory=list)
    failed: list[ObjectProblem] = field(default_factory=list)
    diff: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing was refused and nothing failed."""
        return not self.refused and not self.failed

    def problems(self) -> list[str]:
        """One readable line per refused or failed object."""
        return [str(p) for p in (*self.refused, *self.failed)]

    def summary(self) -> str:
        """One line, e.g. `applied: 1 created, 2 updated, 0 unchanged, 1 deleted, 1 refused, 0 failed`."""
        counts = (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                  f"{len(self.deleted)} deleted, {len(self.refused)} refused, {len(self.failed)} failed")
        if self.dry_run:
            return f"dry run, nothing changed; would be: {counts}"
        return f"applied: {counts}"


# -- client configuration ------------------------------------------------------------------------

def load_kube_api(kubeconfig: str | None, context: str | None, in_cluster: bool) -> ApiClient:
    """A Kubernetes `ApiClient` from a kubeconfig file or, in a pod, its service account.

    `kubeconfig` None means `$KUBECONFIG`, else `~/.kube/config`; when neither exists and the
    process runs in a pod, the pod's service account is used (as kubectl and client-go do).
    `in_cluster` uses the service account only. Raises `KubeConfigError` with what to pass instead.
    """
    if in_cluster:
        return _in_cluster_api(
            "--in-cluster: not running in a pod with a service account ({reason}): "
            "run hushflow inside the cluster, or pass --kubeconfig instead"
        )
    location = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    files = [os.path.expanduser(p) for p in location.split(os.pathsep) if p]
    if not any(os.path.isfile(f) for f in files):
        if kubeconfig is not None:
            raise KubeConfigError(f"no kubeconfig at {kubeconfig}: check --kubeconfig")
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster_api(
                f"no kubeconfig at {location} and the pod's service account is unusable ({{reason}}): "
                "pass --kubeconfig"
            )
        raise KubeConfigError(f"no kubeconfig at {location} and not running in a pod: pass --kubeconfig")
    existing = os.pathsep.join(f for f in files if os.path.isfile(f))
    configuration = Configuration()
    try:
        load_kube_config(config_file=existing, context=context, client_configuration=configuration,
                         persist_config=False)
    except ConfigException as exc:
        raise KubeConfigError(_kubeconfig_problem(existing, context, str(exc))) from None
    except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KubeConfigError(f"kubeconfig {existing} cannot be used ({exc}): check the file or --kubeconfig") from None
    return ApiClient(configuration=configuration)


def _in_cluster_api(message: str) -> ApiClient:
    configuration = Configuration()
    try:
        load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise KubeConfigError(message.format(reason=exc)) from None
    return ApiClient(configuration=configuration)


def _kubeconfig_problem(path: str, context: str | None, reason: str) -> str:
    try:
        contexts, current = list_kube_config_contexts(config_file=path)
        names = sorted(c.get("name", "") for c in contexts or [])
    except Exception:  # the file is broken beyond listing its contexts; report the first error
        names, current = [], None
    if context is not None and names and context not in names:
        return f"kubeconfig {path} has no context {context!r} (it has: {', '.join(names)}): check --context"
    if context is None and names and not current:
        return f"kubeconfig {path} sets no current-context: pass --context (one of: {', '.join(names)})"
    return f"kubeconfig {path}: {reason}: check the file, --kubeconfig or --context"


# -- apply ------------------------------------------------------------------------------------------

def apply_objects(
    api: ApiClient,
    desired: Sequence[dict[str, Any]],
    *,
    field_manager: str = "hushflow",
    managed_selector: str = DEFAULT_MANAGED_SELECTOR,
    dry_run: bool = False,
    prune_kinds: Sequence[str] = ("CiliumCIDRGroup",),
) -> ApplyResult:
    """Server-side apply `desired` and prune the managed objects of `prune_kinds` not in it.

    Every desired object gets the labels of `managed_selector` (equality terms, `k=v,k2=v2`) and
    is applied with `fieldManager=field_manager`; one that exists without those labels is refused
    and left untouched. Objects of `prune_kinds` that carry the labels and are not desired are
    deleted (with a uid precondition, so a same-named object created meanwhile survives).
    `dry_run` sends `dryRun=All` everywhere: the server validates, nothing is stored.

    Per-object API errors go to `ApplyResult.failed` and the other objects proceed. Raises
    `KubeApiError` when the API server cannot be reached at all, `ValueError` for a selector
    that is not equality-based or an unknown prune kind (caller mistakes, not cluster state).
    """
    if not hasattr(api, "param_serialize"):
        raise KubeApiError(
            "the installed kubernetes Python client is too old for hushflow (its ApiClient has no "
            "param_serialize): pip install 'kubernetes>=37'"
        )
    labels = _parse_equality_selector(managed_selector)
    for prune_kind in prune_kinds:
        if prune_kind not in _KINDS:
            managed = ", ".join(sorted(_KINDS))
            raise ValueError(f"prune_kinds: hushflow does not manage {prune_kind!r} (it manages: {managed})")
    run = _ApplyRun(api, labels, managed_selector, field_manager, ApplyResult(dry_run=dry_run))

    planned: list[tuple[ObjectRef, _Kind, dict[str, Any]]] = []
    for index, obj in enumerate(desired):
        ref, problem = _describe(obj, index)
        if problem is not None:
            run.result.failed.append(ObjectProblem(ref, problem))
            continue
        if ref in run.desired_refs:
            run.result.failed.append(ObjectProblem(ref, "appears more than once in the desired objects; applied once"))
            continue
        run.desired_refs.add(ref)
        planned.append((ref, _KINDS[ref.kind], _apply_body(obj, labels)))
    planned.sort(key=lambda item: item[1].apply_rank)

    for ref, kind, body in planned:
        run.apply_one(ref, kind, body)
    for kind_name in prune_kinds:
        run.prune(kind_name)

    run.result.diff = "".join(run.diffs)
    return run.result


@dataclass
class _ApplyRun:
    """The state of one `apply_objects` call."""

    api: ApiClient
    labels: Mapping[str, str]
    selector: str
    field_manager: str
    result: ApplyResult
    desired_refs: set[ObjectRef] = field(default_factory=set)
    diffs: list[str] = field(default_factory=list)

    def apply_one(self, ref: ObjectRef, kind: _Kind, body: dict[str, Any]) -> None:
        path, path_params = _object_path(kind, ref)
        got = _request(self.api, "GET", path, path_params)
        if got.status == 404:
            live = None
        elif got.ok and isinstance(got.body, dict):
            live = got.body
        else:
            self.result.failed.append(ObjectProblem(ref, _api_problem(got, "read", kind)))
            return
        if live is not None and not _carries_labels(live, self.labels):
            self.result.refused.append(ObjectProblem(ref, self._foreign_message(ref, kind)))
            return

        query: list[tuple[str, str]] = [("fieldManager", self.field_manager)]
        if live is not None:
            # Only objects already carrying hushflow's label get force: fields another manager set
            # on them are taken over, while a first apply never overrides anyone.
            query.append(("force", "true"))
        if self.result.dry_run:
            query.append(("dryRun", "All"))
        applied = _request(self.api, "PATCH", path, path_params, query=query, body=body,
                           content_type=APPLY_PATCH_CONTENT_TYPE)
        if not applied.ok:
            self.result.failed.append(ObjectProblem(ref, _api_problem(applied, "apply", kind)))
            return

        if live is None:
            self.result.created.append(ref)
            self.diffs.append(_unified_diff(ref, None, _clean(body)))
            return
        if isinstance(applied.body, dict) and _clean(applied.body) == _clean(live):
            self.result.unchanged.append(ref)
            return
        self.result.updated.append(ref)
        # Live side: the fields hushflow sets now plus those it set before (SSA removes the latter).
        shown = _shape_union(_shape_of(body), _owned_shape(live, self.field_manager))
        before, after = _project(_clean(live), shown), _clean(body)
        # The server may have changed the object only outside those fields: then there is no diff to show.
        if before != after:
            self.diffs.append(_unified_diff(ref, before, after))

    def _foreign_message(self, ref: ObjectRef, kind: _Kind) -> str:
        wanted = ",".join(f"{k}={v}" for k, v in self.labels.items())
        namespace_flag = f"-n {ref.namespace} " if ref.namespace else ""
        label_args = " ".join(f"{k}={v}" for k, v in self.labels.items())
        hand_over = f"kubectl label {namespace_flag}{kind.plural}.cilium.io {ref.name} {label_args}"
        return (f"exists and is not managed by hushflow (no label {wanted}); left untouched: "
                f"rename it in the hushflow output, or hand it over to hushflow with `{hand_over}`")

    def prune(self, kind_name: str) -> None:
        kind = _KINDS[kind_name]
        listed = _request(self.api, "GET", f"/apis/{CILIUM_API_VERSION}/{kind.plural}", {},
                          query=[("labelSelector", self.selector)])
        if not listed.ok or not isinstance(listed.body, dict):
            ref = ObjectRef(kind_name, f"(list {self.selector})")
            message = _api_problem(listed, "list", kind) + "; nothing of this kind pruned"
            self.result.failed.append(ObjectProblem(ref, message))
            return
        stale: list[tuple[ObjectRef, dict[str, Any]]] = []
        for item in listed.body.get("items") or []:
            if not isinstance(item, dict):
                continue
            metadata = item.get("metadata") or {}
            namespace = metadata.get("namespace") if kind.namespaced else None
            ref = ObjectRef(kind_name, str(metadata.get("name", "")), namespace)
            # The server already filtered by label; checking again keeps "only labelled objects are
            # touched" true whatever the server's selector support.
            if ref.name and ref not in self.desired_refs and _carries_labels(item, self.labels):
                stale.append((ref, item))
        for ref, item in sorted(stale, key=lambda s: s[0]):
            self._delete(ref, kind, item)

    def _delete(self, ref: ObjectRef, kind: _Kind, live: dict[str, Any]) -> None:
        path, path_params = _object_path(kind, ref)
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        uid = (live.get("metadata") or {}).get("uid")
        if uid:
            # Delete exactly the object that was listed with hushflow's label, not one recreated since.
            options["preconditions"] = {"uid": uid}
        query = [("dryRun", "All")] if self.result.dry_run else []
        deleted = _request(self.api, "DELETE", path, path_params, query=query, body=options,
                           content_type="application/json")
        if deleted.status == 404:
            return  # already gone: what the deletion was for holds
        if not deleted.ok:
            self.result.failed.append(ObjectProblem(ref, _api_problem(deleted, "delete", kind)))
            return
        self.result.deleted.append(ref)
        owned = _owned_shape(live, self.field_manager)
        self.diffs.append(_unified_diff(ref, _project(_clean(live), owned) if owned else _clean(live), None))


# -- HTTP through the official client -------------------------------------------------------------

@dataclass(frozen=True)
class _Response:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _object_path(kind: _Kind, ref: ObjectRef) -> tuple[str, dict[str, str]]:
    if kind.namespaced:
        return (f"/apis/{CILIUM_API_VERSION}/namespaces/{{namespace}}/{kind.plural}/{{name}}",
                {"namespace": ref.namespace or "", "name": ref.name})
    return f"/apis/{CILIUM_API_VERSION}/{kind.plural}/{{name}}", {"name": ref.name}


def _request(
    api: ApiClient, method: str, path: str, path_params: Mapping[str, str], *,
    query: Sequence[tuple[str, str]] = (), body: Any = None, content_type: str | None = None,
) -> _Response:
    headers = {"Accept": "application/json"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        serialized = api.param_serialize(
            method=method, resource_path=path, path_params=dict(path_params), query_params=list(query),
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        method_, url, header_params, body_, post_params = serialized
        response = api.call_api(method_, url, header_params=header_params, body=body_, post_params=post_params,
                                _request_timeout=_REQUEST_TIMEOUT)
        raw = response.read()
        status = int(response.status)
    except ApiException as exc:  # some client versions raise for non-2xx inside call_api
        if not exc.status:
            raise KubeApiError(f"Kubernetes API at {_host(api)}: {exc.reason}") from None
        raw, status = exc.body or b"", int(exc.status)
    except urllib3.exceptions.HTTPError as exc:
        raise KubeApiError(
            f"cannot reach the Kubernetes API at {_host(api)} ({_root_cause(exc)}): "
            "check --kubeconfig / --context and that the cluster is up"
        ) from None
    return _Response(status, _decode(raw))


def list_managed(api: ApiClient, kind_name: str, selector: str = DEFAULT_MANAGED_SELECTOR) -> list[dict[str, Any]]:
    """The live objects of a kind that carry `selector`'s labels (e.g. to recover learned IPs).

    Raises KubeApiError when the API server cannot be reached or refuses the list.
    """
    kind = _KINDS[kind_name]
    labels = _parse_equality_selector(selector)
    listed = _request(api, "GET", f"/apis/{CILIUM_API_VERSION}/{kind.plural}", {}, query=[("labelSelector", selector)])
    if not listed.ok or not isinstance(listed.body, dict):
        raise KubeApiError(_api_problem(listed, "list", kind))
    return [
        item for item in listed.body.get("items") or [] if isinstance(item, dict) and _carries_labels(item, labels)
    ]


def _host(api: ApiClient) -> str:
    return str(getattr(getattr(api, "configuration", None), "host", "?"))


def _root_cause(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if isinstance(reason, BaseException) else exc)


def _decode(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return text


_STATUS_WORDS = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 409: "conflict",
                 410: "gone", 415: "unsupported media type", 422: "invalid", 429: "too many requests"}


def _api_problem(response: _Response, action: str, kind: _Kind) -> str:
    """`forbidden: <server message>; <what to do>` from a failed response."""
    body = response.body
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("reason") or "")
    elif isinstance(body, str):
        message = body.strip()[:500]
    word = _STATUS_WORDS.get(response.status) or (
        f"server error (HTTP {response.status})" if response.status >= 500 else f"HTTP {response.status}")
    text = f"{word}: {message}" if message else word
    verb = {"read": "get", "apply": "patch", "list": "list", "delete": "delete"}[action]
    if response.status == 403:
        text += f"; hushflow's credentials need RBAC '{verb}' on {kind.plural}.cilium.io"
    elif response.status == 401:
        text += "; the credentials in the kubeconfig or service account were rejected"
    elif response.status == 409 and action == "apply":
        text += "; another field manager owns a field hushflow sets (hushflow forces only objects labelled as its own)"
    elif response.status == 409 and action == "delete":
        text += "; the object changed since it was listed, run again"
    elif response.status == 404 and action in ("apply", "list"):
        namespace = "does the namespace exist, and " if kind.namespaced else ""
        text += f"; {namespace}is Cilium's {kind.plural}.cilium.io CRD (cilium.io/v2) installed?"
    return text


# -- objects --------------------------------------------------------------------------------------

def _describe(obj: Any, index: int) -> tuple[ObjectRef, str | None]:
    """The object's ref, and why hushflow cannot apply it (None when it can)."""
    if not isinstance(obj, Mapping):
        return ObjectRef("object", f"#{index}"), f"desired object #{index} is not a mapping"
    kind_name = str(obj.get("kind") or "")
    metadata_value = obj.get("metadata")
    metadata: Mapping[str, Any] = metadata_value if isinstance(metadata_value, Mapping) else {}
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    ref = ObjectRef(kind_name or "object", name or f"#{index}", str(namespace) if namespace else None)
    if kind_name not in _KINDS:
        return ref, f"hushflow applies only {', '.join(sorted(_KINDS))}, not {kind_name or 'an object without kind'}"
    if obj.get("apiVersion") != CILIUM_API_VERSION:
        return ref, f"apiVersion is {obj.get('apiVersion')!r}, hushflow applies {CILIUM_API_VERSION}"
    if not name:
        return ref, "metadata.name is missing"
    kind = _KINDS[kind_name]
    if kind.namespaced and not namespace:
        return ref, "metadata.namespace is missing; hushflow does not guess a namespace for a CiliumNetworkPolicy"
    if not kind.namespaced and namespace:
        return ObjectRef(kind_name, name), f"metadata.namespace {namespace!r} set on a cluster-scoped {kind_name}"
    return ref, None


def _apply_body(obj: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """What is sent: the object with hushflow's labels, without status and server-set metadata."""
    body = copy.deepcopy(dict(obj))
    body.pop("status", None)
    metadata = body["metadata"] = dict(body.get("metadata") or {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    return body


def _parse_equality_selector(selector: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        key, sep, value = term.replace("==", "=").partition("=")
        if not sep or "!" in key or not key.strip():
            raise ValueError(f"managed_selector {selector!r}: only key=value terms are supported, got {term!r}")
        labels[key.strip()] = value.strip()
    if not labels:
        raise ValueError("managed_selector is empty: hushflow would not know which objects are its own")
    return labels


def _carries_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    live = (obj.get("metadata") or {}).get("labels") or {}
    return all(live.get(k) == v for k, v in labels.items())


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without status and server-set metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        for key in _SERVER_METADATA:
            metadata.pop(key, None)
    return out


# A "shape" is a tree of the fields to show: a nested dict whose leaves are True (the whole value).
Shape = dict[str, Any]


def _shape_of(obj: Mapping[str, Any]) -> Shape:
    return {k: (_shape_of(v) if isinstance(v, Mapping) and v else True) for k, v in obj.items()}


def _owned_shape(live: Mapping[str, Any], manager: str) -> Shape:
    """The fields `manager` owns according to the live object's managedFields (FieldsV1)."""
    shape: Shape = {}
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping) or entry.get("manager") != manager:
            continue
        if entry.get("fieldsType", "FieldsV1") == "FieldsV1":
            shape = _shape_union(shape, _shape_from_fields(entry.get("fieldsV1") or {}))
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


def _shape_union(a: Shape, b: Shape) -> Shape:
    out: Shape = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if mine is None:
            out[key] = value
        elif mine is True or value is True:
            out[key] = True
        else:
            out[key] = _shape_union(mine, value)
    return out


def _project(obj: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
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


def _unified_diff(ref: ObjectRef, live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> str:
    label = str(ref).replace(" ", "/")
    lines = difflib.unified_diff(
        _to_yaml(live), _to_yaml(desired),
        fromfile=f"live/{label}" if live is not None else "/dev/null",
        tofile=f"desired/{label}" if desired is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
