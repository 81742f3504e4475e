"""Kubernetes server-side apply of compiled Cilium objects (`hushflow compile --apply`).

hushflow writes three cilium.io/v2 kinds: CiliumNetworkPolicy (namespaced),
CiliumClusterwideNetworkPolicy and CiliumCIDRGroup (cluster-scoped). `apply_objects` sends each
desired object as a server-side apply (SSA) patch under the field manager "hushflow" and prunes
the CIDR groups hushflow created earlier that are no longer desired.

Ownership is by label: hushflow touches only objects that carry the managed-by label(s) of
`managed_selector`. An object of the same name that exists without them belongs to someone else
and is refused, never overwritten; this is also why `force=true` (take over fields another
manager owns) is sent only for objects that already carry hushflow's label.

The Kubernetes client is passed in (`hushflow.enforce.kube_config.load_kube_api` builds one from
a kubeconfig or the pod's service account); requests go through `ApiClient.param_serialize` /
`ApiClient.call_api`, so authentication, TLS and proxies are the official client's. What an
object is, how it is cleaned and diffed, lives in `hushflow.enforce.kube_objects`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from hushflow.enforce.kube_objects import (
    CILIUM_API_VERSION,
    KINDS,
    Kind,
    ObjectProblem,
    ObjectRef,
    apply_body,
    clean,
    describe,
    owned_shape,
    project,
    shape_of,
    shape_union,
    unified_diff,
)

__all__ = [
    "ApplyResult",
    "KubeApiError",
    "apply_objects",
    "list_managed",
]

APPLY_PATCH_CONTENT_TYPE = "application/apply-patch+yaml"
DEFAULT_MANAGED_SELECTOR = "app.kubernetes.io/managed-by=hushflow"

# Seconds per request (connect + read): a hung API server must not hang `hushflow compile --apply`.
_REQUEST_TIMEOUT = 30.0


class KubeApiError(Exception):
    """The Kubernetes API cannot be used at all (unreachable, TLS failure); the message says where."""


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
        if prune_kind not in KINDS:
            managed = ", ".join(sorted(KINDS))
            raise ValueError(f"prune_kinds: hushflow does not manage {prune_kind!r} (it manages: {managed})")
    run = _ApplyRun(api, labels, managed_selector, field_manager, ApplyResult(dry_run=dry_run))

    planned: list[tuple[ObjectRef, Kind, dict[str, Any]]] = []
    for index, obj in enumerate(desired):
        ref, problem = describe(obj, index)
        if problem is not None:
            run.result.failed.append(ObjectProblem(ref, problem))
            continue
        if ref in run.desired_refs:
            run.result.failed.append(ObjectProblem(ref, "appears more than once in the desired objects; applied once"))
            continue
        run.desired_refs.add(ref)
        planned.append((ref, KINDS[ref.kind], apply_body(obj, labels)))
    planned.sort(key=lambda item: item[1].apply_rank)

    for ref, kind, body in planned:
        run.apply_one(ref, kind, body)
    for kind_name in prune_kinds:
        run.prune(kind_name)

    run.result.diff = "".join(run.diffs)
    return run.result


def delete_named(
    api: ApiClient,
    kind_name: str,
    names: Sequence[str],
    *,
    field_manager: str = "hushflow",
    managed_selector: str = DEFAULT_MANAGED_SELECTOR,
) -> ApplyResult:
    """Delete the cluster-scoped objects of `kind_name` named `names`, each only when it carries
    the labels of `managed_selector` (one without them is refused and left alone); an object
    already gone counts as deleted. Raises `KubeApiError` when the API server cannot be reached."""
    labels = _parse_equality_selector(managed_selector)
    kind = KINDS[kind_name]
    run = _ApplyRun(api, labels, managed_selector, field_manager, ApplyResult())
    for name in names:
        ref = ObjectRef(kind_name, name)
        path, path_params = _object_path(kind, ref)
        got = _request(api, "GET", path, path_params)
        if got.status == 404:
            run.result.deleted.append(ref)
            continue
        if not got.ok or not isinstance(got.body, dict):
            run.result.failed.append(ObjectProblem(ref, _api_problem(got, "read", kind), got.status))
            continue
        if not _carries_labels(got.body, labels):
            run.result.refused.append(ObjectProblem(ref, run._foreign_message(ref, kind)))
            continue
        before = len(run.result.failed)
        run._delete(ref, kind, got.body)
        if len(run.result.failed) == before and ref not in run.result.deleted:
            run.result.deleted.append(ref)  # gone meanwhile (404 on delete): what the deletion was for holds
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

    def apply_one(self, ref: ObjectRef, kind: Kind, body: dict[str, Any]) -> None:
        path, path_params = _object_path(kind, ref)
        got = _request(self.api, "GET", path, path_params)
        if got.status == 404:
            live = None
        elif got.ok and isinstance(got.body, dict):
            live = got.body
        else:
            self.result.failed.append(ObjectProblem(ref, _api_problem(got, "read", kind), got.status))
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
            self.result.failed.append(ObjectProblem(ref, _api_problem(applied, "apply", kind), applied.status))
            return

        if live is None:
            self.result.created.append(ref)
            self.diffs.append(unified_diff(ref, None, clean(body)))
            return
        if isinstance(applied.body, dict) and clean(applied.body) == clean(live):
            self.result.unchanged.append(ref)
            return
        self.result.updated.append(ref)
        # Live side: the fields hushflow sets now plus those it set before (SSA removes the latter).
        shown = shape_union(shape_of(body), owned_shape(live, self.field_manager))
        before, after = project(clean(live), shown), clean(body)
        # The server may have changed the object only outside those fields: then there is no diff to show.
        if before != after:
            self.diffs.append(unified_diff(ref, before, after))

    def _foreign_message(self, ref: ObjectRef, kind: Kind) -> str:
        wanted = ",".join(f"{k}={v}" for k, v in self.labels.items())
        namespace_flag = f"-n {ref.namespace} " if ref.namespace else ""
        label_args = " ".join(f"{k}={v}" for k, v in self.labels.items())
        hand_over = f"kubectl label {namespace_flag}{kind.plural}.cilium.io {ref.name} {label_args}"
        return (f"exists and is not managed by hushflow (no label {wanted}); left untouched: "
                f"rename it in the hushflow output, or hand it over to hushflow with `{hand_over}`")

    def prune(self, kind_name: str) -> None:
        kind = KINDS[kind_name]
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

    def _delete(self, ref: ObjectRef, kind: Kind, live: dict[str, Any]) -> None:
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
            self.result.failed.append(ObjectProblem(ref, _api_problem(deleted, "delete", kind), deleted.status))
            return
        self.result.deleted.append(ref)
        owned = owned_shape(live, self.field_manager)
        self.diffs.append(unified_diff(ref, project(clean(live), owned) if owned else clean(live), None))


# -- HTTP through the official client -------------------------------------------------------------

@dataclass(frozen=True)
class _Response:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _object_path(kind: Kind, ref: ObjectRef) -> tuple[str, dict[str, str]]:
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
    kind = KINDS[kind_name]
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


def _api_problem(response: _Response, action: str, kind: Kind) -> str:
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


# -- ownership labels -----------------------------------------------------------------------------

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
