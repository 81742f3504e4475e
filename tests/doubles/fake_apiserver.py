"""A test double for the few Kubernetes API endpoints hushflow uses.

No Kubernetes API server can run where hushflow's tests run, so this module serves, in-process
over real HTTP on 127.0.0.1, just enough of the API for hushflow's server-side apply
(`hushflow.enforce.kube.apply_objects`) to be exercised through the official `kubernetes`
client exactly as in production:

- `GET /version`, `GET /apis`, `GET /apis/cilium.io/v2` (discovery, for clients that ask);
- for the three cilium.io/v2 resources (`ciliumnetworkpolicies`, namespaced;
  `ciliumclusterwidenetworkpolicies` and `ciliumcidrgroups`, cluster-scoped):
  GET / PATCH / DELETE of one object and LIST with an equality-based `labelSelector`.

It is *not* a Kubernetes API server. PATCH accepts only server-side apply
(`application/apply-patch+yaml`) and implements it minimally: the applied fields replace the live
ones, fields this field manager applied before and no longer applies are removed, fields another
manager owns with a different value are a 409 conflict unless `force=true`, and
`metadata.uid` / `resourceVersion` / `creationTimestamp` / `generation` / `managedFields` are
kept the way the real server keeps them (lists are atomic, as in CRDs without list-type markers).
`dryRun=All` computes the answer without storing it. DELETE honours `dryRun` and
`preconditions.uid` / `preconditions.resourceVersion`. There is no admission, no schema
validation, no authentication (the Authorization header is only recorded).

Core v1 pods, for the pod watch of `hushflow run` (`hushflow.app.pod_watch`): `GET /api/v1/pods`
lists them (with the collection's `resourceVersion`; `limit` is honoured with `continue`
tokens), and `GET /api/v1/pods?watch=true&resourceVersion=N` streams, one JSON event a line
(chunked), the ADDED / MODIFIED / DELETED events after N, then waits for more until
`timeoutSeconds` (at most `WATCH_WAIT_MAX`) or `end_pod_watches()`. A resourceVersion older than
what `compact_pod_events()` kept is answered like the real server: an ERROR event carrying a 410
`Status` ("too old resource version"). Tests change pods with `put_pod` / `delete_pod`, and
`push_pod_watch_line` sends any bytes (hostile lines) to the watches.

Every request is recorded (`FakeApiServer.requests`) so tests can assert on the wire format, and
`FakeApiServer.fail` makes chosen requests answer with an error status (403, 409, 422, ...).

    with FakeApiServer() as server:
        api = ApiClient(Configuration(host=server.url))
        ...
        assert server.requests[-1].content_type == "application/apply-patch+yaml"
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GROUP = "cilium.io"
VERSION = "v2"
API_VERSION = f"{GROUP}/{VERSION}"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class FakeResource:
    """One resource type the double serves."""

    kind: str
    plural: str
    namespaced: bool


RESOURCES: tuple[FakeResource, ...] = (
    FakeResource("CiliumNetworkPolicy", "ciliumnetworkpolicies", namespaced=True),
    FakeResource("CiliumClusterwideNetworkPolicy", "ciliumclusterwidenetworkpolicies", namespaced=False),
    FakeResource("CiliumCIDRGroup", "ciliumcidrgroups", namespaced=False),
)
_BY_PLURAL = {r.plural: r for r in RESOURCES}
_BY_KIND = {r.kind: r for r in RESOURCES}

# Fields the server owns or that identify the object; a field manager never owns them.
_SYSTEM_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
     "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}
)

FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the double received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed YAML/JSON body, None when empty
    raw_body: bytes

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _FailureRule:
    status: int
    method: str | None
    name: str | None
    plural: str | None
    message: str | None
    remaining: int | None  # None: forever


@dataclass
class _Reply:
    status: int
    body: dict[str, Any]
    stream: Callable[[Callable[[bytes], None]], None] | None = None  # a watch: writes its events


#: Seconds a pod watch waits for events at most before it ends (the client then reconnects).
WATCH_WAIT_MAX = 30.0


@dataclass
class _Store:
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    resource_version: Iterator[int] = field(default_factory=lambda: itertools.count(1000))


class FakeApiServer:
    """In-process HTTP test double of the cilium.io/v2 endpoints hushflow uses.

    Use as a context manager: the server listens on a free port of 127.0.0.1 in a background
    thread while the `with` block runs.
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._pods_changed = threading.Condition(self._lock)
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._pod_events: list[tuple[int, bytes]] = []  # (resourceVersion, one event line)
        self._pod_events_from = 0  # watches from an older resourceVersion get 410 Gone
        self._watch_generation = 0  # end_pod_watches() ends every open watch
        self._store = _Store()
        self._failures: list[_FailureRule] = []
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FakeApiServer already started")
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-apiserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is None:
            return
        self.end_pod_watches()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeApiServer not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- test controls ---------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        name: str | None = None,
        method: str | None = None,
        plural: str | None = None,
        message: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching requests with a Kubernetes `Status` error of HTTP `status`.

        `name` matches the object name of single-object requests (LIST requests have none);
        `method` is an HTTP method or "LIST"; `plural` a resource plural. None matches anything.
        `times` limits how many requests fail (None: all of them).
        """
        with self._lock:
            self._failures.append(
                _FailureRule(status, method.upper() if method else None, name, plural, message, times)
            )

    def put(self, obj: Mapping[str, Any], *, manager: str | None = "kubectl") -> dict[str, Any]:
        """Store `obj` as if `manager` had created it with an Update (not an apply); return the stored copy."""
        resource = _BY_KIND[obj["kind"]]
        stored = copy.deepcopy(dict(obj))
        metadata = stored.setdefault("metadata", {})
        key = (resource.plural, metadata.get("namespace") if resource.namespaced else None, metadata["name"])
        with self._lock:
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata["resourceVersion"] = str(next(self._store.resource_version))
            metadata.setdefault("creationTimestamp", self._timestamp())
            metadata.setdefault("generation", 1)
            if manager is not None and "managedFields" not in metadata:
                metadata["managedFields"] = [
                    self._managed_entry(manager, "Update", _leaf_paths(_ownable(stored)))
                ]
            self._store.objects[key] = stored
            return copy.deepcopy(stored)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """A copy of the stored object, or None."""
        resource = _BY_KIND[kind]
        with self._lock:
            obj = self._store.objects.get((resource.plural, namespace if resource.namespaced else None, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Copies of every stored object (of `kind`), sorted by plural, namespace, name."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._store.objects.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))
                if kind is None or obj.get("kind") == kind
            ]

    # -- core v1 pods (the pod watch) ----------------------------------------------------------

    def put_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a pod (ADDED or MODIFIED for the watches); return the stored copy."""
        stored = copy.deepcopy(dict(pod))
        stored.setdefault("apiVersion", "v1")
        stored.setdefault("kind", "Pod")
        metadata = stored.setdefault("metadata", {})
        key = (metadata.setdefault("namespace", "default"), metadata["name"])
        with self._lock:
            kind = "MODIFIED" if key in self._pods else "ADDED"
            metadata.setdefault("uid", str(uuid.uuid4()))
            version = next(self._store.resource_version)
            metadata["resourceVersion"] = str(version)
            self._pods[key] = stored
            self._pod_event(version, kind, stored)
            return copy.deepcopy(stored)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            pod = self._pods.pop((namespace, name))
            version = next(self._store.resource_version)
            pod["metadata"]["resourceVersion"] = str(version)
            self._pod_event(version, "DELETED", pod)

    def push_pod_watch_line(self, line: bytes) -> None:
        """Send `line` (a newline is added) to every watch, as the next event."""
        with self._lock:
            self._pod_events.append((next(self._store.resource_version), line + b"\n"))
            self._pods_changed.notify_all()

    def compact_pod_events(self) -> None:
        """Forget the events so far: a watch from an older resourceVersion gets 410 Gone."""
        with self._lock:
            self._pod_events_from = next(self._store.resource_version)
            self._pod_events.clear()

    def end_pod_watches(self) -> None:
        """End every open watch (as the server does at its timeout); clients reconnect."""
        with self._lock:
            self._watch_generation += 1
            self._pods_changed.notify_all()

    def _pod_event(self, version: int, kind: str, pod: dict[str, Any]) -> None:
        line = json.dumps({"type": kind, "object": pod}).encode() + b"\n"
        self._pod_events.append((version, line))
        self._pods_changed.notify_all()

    def _list_pods(self, request: RecordedRequest) -> _Reply:
        items = [copy.deepcopy(self._pods[key]) for key in sorted(self._pods)]
        start = int(request.param("continue") or 0)
        limit = int(request.param("limit") or 0) or len(items) or 1
        metadata: dict[str, Any] = {"resourceVersion": str(next(self._store.resource_version))}
        if start + limit < len(items):
            metadata["continue"] = str(start + limit)
        return _Reply(200, {"apiVersion": "v1", "kind": "PodList", "metadata": metadata,
                            "items": items[start:start + limit]})

    def _watch_pods(self, request: RecordedRequest, write: Callable[[bytes], None]) -> None:
        """Stream the pod events after the request's resourceVersion (called without the lock)."""
        since = int(request.param("resourceVersion") or 0)
        wait = min(float(request.param("timeoutSeconds") or WATCH_WAIT_MAX), WATCH_WAIT_MAX)
        with self._lock:
            generation = self._watch_generation
            oldest = self._pod_events_from
        if since and since < oldest:
            gone = _status_reply(410, "Expired", f"too old resource version: {since} ({oldest})")
            write(json.dumps({"type": "ERROR", "object": gone.body}).encode() + b"\n")
            return
        sent = since
        deadline = threading.Event()

        def time_is_up() -> None:
            with self._lock:
                deadline.set()
                self._pods_changed.notify_all()

        timer = threading.Timer(wait, time_is_up)
        timer.daemon = True
        timer.start()
        try:
            while True:
                with self._lock:
                    pending = [(version, line) for version, line in self._pod_events if version > sent]
                    if not pending:
                        if deadline.is_set() or generation != self._watch_generation:
                            return
                        self._pods_changed.wait()
                        continue
                for version, line in pending:
                    write(line)
                    sent = version
        finally:
            timer.cancel()

    def mutating_requests(self) -> list[RecordedRequest]:
        """The recorded PATCH, POST, PUT and DELETE requests."""
        return [r for r in self.requests if r.method in ("PATCH", "POST", "PUT", "DELETE")]

    # -- request handling (called from the handler threads) --------------------------------------

    def _timestamp(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _handle(self, request: RecordedRequest) -> _Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/") if p]
        with self._lock:
            self.requests.append(request)
            if request.method == "GET" and parts == ["api", "v1", "pods"] and request.param("watch") in ("true", "1"):
                failure = self._take_failure("WATCH", "pods", None)
                return failure or _Reply(200, {}, lambda write: self._watch_pods(request, write))
            if request.method == "GET" and parts == ["api", "v1", "pods"]:
                failure = self._take_failure("LIST", "pods", None)
                return failure if failure is not None else self._list_pods(request)
            if request.method == "GET" and parts == ["version"]:
                return _Reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-hushflow-test-double",
                                    "platform": "linux/amd64"})
            if request.method == "GET" and parts == ["apis"]:
                return _Reply(200, _api_group_list())
            if request.method == "GET" and parts == ["apis", GROUP, VERSION]:
                return _Reply(200, _api_resource_list())
            route = _route(parts)
            if route is None:
                return _status_reply(404, "NotFound", f"the test double does not serve {request.method} {request.path}")
            resource, namespace, name = route
            method = "LIST" if request.method == "GET" and name is None else request.method
            failure = self._take_failure(method, resource.plural, name)
            if failure is not None:
                return failure
            if method == "LIST":
                return self._list(resource, namespace, request)
            assert name is not None
            key = (resource.plural, namespace, name)
            if method == "GET":
                obj = self._store.objects.get(key)
                if obj is None:
                    return _not_found(resource, name)
                return _Reply(200, copy.deepcopy(obj))
            if method == "PATCH":
                return self._apply(resource, key, request)
            if method == "DELETE":
                return self._delete(resource, key, request)
            return _status_reply(405, "MethodNotAllowed", f"the test double does not implement {request.method}")

    def _take_failure(self, method: str, plural: str, name: str | None) -> _Reply | None:
        for rule in self._failures:
            if rule.remaining == 0:
                continue
            if rule.method is not None and rule.method != method:
                continue
            if rule.plural is not None and rule.plural != plural:
                continue
            if rule.name is not None and rule.name != name:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            reason = _REASONS.get(rule.status, HTTPStatus(rule.status).phrase.replace(" ", ""))
            target = f'{plural}.{GROUP} "{name}"' if name else f"{plural}.{GROUP}"
            message = rule.message or f"{target} {reason.lower()} (injected by the test double)"
            return _status_reply(rule.status, reason, message, name=name, kind=plural)
        return None

    def _list(self, resource: FakeResource, namespace: str | None, request: RecordedRequest) -> _Reply:
        selector = request.param("labelSelector") or ""
        try:
            matches = _compile_selector(selector)
        except ValueError as exc:
            return _status_reply(400, "BadRequest", str(exc))
        items = [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self._store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
            if plural == resource.plural
            and (namespace is None or ns == namespace)
            and matches(obj.get("metadata", {}).get("labels") or {})
        ]
        return _Reply(200, {
            "apiVersion": API_VERSION,
            "kind": f"{resource.kind}List",
            "metadata": {"resourceVersion": str(next(self._store.resource_version))},
            "items": items,
        })

    def _apply(self, resource: FakeResource, key: tuple[str, str | None, str], request: RecordedRequest) -> _Reply:
        _, namespace, name = key
        content_type = (request.content_type or "").split(";")[0].strip()
        if content_type != APPLY_PATCH:
            return _status_reply(
                415, "UnsupportedMediaType",
                f"the test double implements only server-side apply ({APPLY_PATCH}), got {content_type!r}")
        manager = request.param("fieldManager")
        if not manager:
            return _status_reply(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                                 "Required value: is required for apply patch")
        dry_run = request.param("dryRun")
        if dry_run not in (None, "All"):
            return _bad_dry_run(dry_run)
        force = request.param("force") == "true"
        applied = request.body
        if not isinstance(applied, dict):
            return _status_reply(400, "BadRequest", "the apply patch body is not a YAML/JSON object")
        problem = _identity_problem(resource, namespace, name, applied)
        if problem is not None:
            return _status_reply(400, "BadRequest", problem)

        old = self._store.objects.get(key)
        new: dict[str, Any] = copy.deepcopy(old) if old is not None else {
            "apiVersion": API_VERSION, "kind": resource.kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        }
        ownership = _ownership(new)
        applied_paths = _leaf_paths(_ownable(applied))
        conflicts: list[tuple[str, FieldPath]] = []
        for other, paths in ownership.items():
            if other == manager:
                continue
            for path in sorted(paths & applied_paths):
                if _get_path(new, path) != _get_path(applied, path):
                    conflicts.append((other, path))
        if conflicts and not force:
            described = ", ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts)
            return _status_reply(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {described}",
                                 name=name, kind=resource.plural)
        for other, path in conflicts:
            ownership[other].discard(path)
        still_owned: set[FieldPath] = set().union(*(paths for m, paths in ownership.items() if m != manager))
        for path in sorted(ownership.get(manager, set()) - applied_paths, reverse=True):
            if path not in still_owned:
                _delete_path(new, path)
        for path in applied_paths:
            _set_path(new, path, copy.deepcopy(_get_path(applied, path)))
        ownership[manager] = applied_paths
        ownership = {m: p for m, p in ownership.items() if p}

        old_entries = {e.get("manager"): e for e in (old or {}).get("metadata", {}).get("managedFields") or []}
        entries = []
        for m in sorted(ownership):
            previous = old_entries.get(m)
            if previous is not None and _paths_from_fields(previous.get("fieldsV1") or {}) == ownership[m]:
                entries.append(previous)
            else:
                operation = "Apply" if m == manager else (previous or {}).get("operation", "Update")
                entries.append(self._managed_entry(m, operation, ownership[m]))
        metadata = new["metadata"]
        metadata["managedFields"] = entries

        if old is not None and _comparable(old) == _comparable(new):
            return _Reply(200, copy.deepcopy(old))
        metadata["resourceVersion"] = str(next(self._store.resource_version))
        if old is None:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = self._timestamp()
            metadata["generation"] = 1
        elif {k: v for k, v in old.items() if k not in ("metadata", "status")} != {
            k: v for k, v in new.items() if k not in ("metadata", "status")
        }:
            metadata["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run is None:
            self._store.objects[key] = new
        return _Reply(201 if old is None else 200, copy.deepcopy(new))

    def _delete(self, resource: FakeResource, key: tuple[str, str | None, str], request: RecordedRequest) -> _Reply:
        _, _, name = key
        obj = self._store.objects.get(key)
        if obj is None:
            return _not_found(resource, name)
        dry_run = request.param("dryRun")
        if dry_run not in (None, "All"):
            return _bad_dry_run(dry_run)
        options = request.body if isinstance(request.body, dict) else {}
        preconditions = options.get("preconditions") or {}
        metadata = obj.get("metadata", {})
        for field_name in ("uid", "resourceVersion"):
            wanted = preconditions.get(field_name)
            if wanted is not None and wanted != metadata.get(field_name):
                return _status_reply(
                    409, "Conflict",
                    f"Precondition failed: {field_name.capitalize() if field_name == 'uid' else field_name} "
                    f"in precondition: {wanted}, {field_name} in object meta: {metadata.get(field_name)}",
                    name=name, kind=resource.plural)
        if dry_run is None:
            del self._store.objects[key]
        return _Reply(200, copy.deepcopy(obj))

    def _managed_entry(self, manager: str, operation: str, paths: set[FieldPath]) -> dict[str, Any]:
        return {
            "manager": manager,
            "operation": operation,
            "apiVersion": API_VERSION,
            "time": self._timestamp(),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_from_paths(paths),
        }


# -- HTTP plumbing -------------------------------------------------------------------------------

def _make_handler(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one segment: with keep-alive, two small writes would wait on
        # the peer's delayed ACK (~40 ms per request).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = yaml.safe_load(raw) if raw else None
                reply = server._handle(RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    content_type=self.headers.get("Content-Type"),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    raw_body=raw,
                ))
            except yaml.YAMLError as exc:
                reply = _status_reply(400, "BadRequest", f"cannot parse the request body: {exc}")
            payload = json.dumps(reply.body).encode()
            if reply.stream is not None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()  # the headers now: the first event may be long in coming

                def write(data: bytes) -> None:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                try:
                    reply.stream(write)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True  # the client went away
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # Tests read `FakeApiServer.requests`; stderr noise helps nobody.
            return

    return Handler


def _route(parts: list[str]) -> tuple[FakeResource, str | None, str | None] | None:
    """(resource, namespace, name) for a cilium.io/v2 resource path, None when not served."""
    if parts[:3] != ["apis", GROUP, VERSION]:
        return None
    rest = parts[3:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2:
        return None
    resource = _BY_PLURAL.get(rest[0])
    if resource is None or (namespace is not None and not resource.namespaced):
        return None
    name = rest[1] if len(rest) == 2 else None
    if name is not None and resource.namespaced and namespace is None:
        return None
    return resource, namespace, name


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 500: "InternalError", 503: "ServiceUnavailable"}


def _status_reply(status: int, reason: str, message: str, *, name: str | None = None,
                  kind: str | None = None) -> _Reply:
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": status,
    }
    if name is not None or kind is not None:
        body["details"] = {k: v for k, v in (("name", name), ("group", GROUP), ("kind", kind)) if v is not None}
    return _Reply(status, body)


def _bad_dry_run(value: str) -> _Reply:
    return _status_reply(400, "BadRequest", f'dryRun: Unsupported value: {value!r}: supported values: "All"')


def _not_found(resource: FakeResource, name: str) -> _Reply:
    return _status_reply(404, "NotFound", f'{resource.plural}.{GROUP} "{name}" not found', name=name,
                         kind=resource.plural)


def _api_group_list() -> dict[str, Any]:
    version = {"groupVersion": API_VERSION, "version": VERSION}
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": GROUP, "versions": [version], "preferredVersion": version}]}


def _api_resource_list() -> dict[str, Any]:
    verbs = ["delete", "get", "list", "patch"]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
            "resources": [{"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                           "kind": r.kind, "verbs": verbs} for r in RESOURCES]}


def _identity_problem(resource: FakeResource, namespace: str | None, name: str, applied: dict[str, Any]) -> str | None:
    if applied.get("apiVersion") != API_VERSION or applied.get("kind") != resource.kind:
        return (f"apply patch must carry apiVersion {API_VERSION} and kind {resource.kind}, "
                f"got {applied.get('apiVersion')!r} {applied.get('kind')!r}")
    metadata = applied.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("name") != name:
        return "the name of the object does not match the name on the URL"
    if resource.namespaced and metadata.get("namespace") not in (None, namespace):
        return "the namespace of the provided object does not match the namespace sent on the request"
    return None


# -- label selectors -----------------------------------------------------------------------------

def _compile_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Equality-based label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated)."""
    terms: list[tuple[str, str, str]] = []  # (operator, key, value)
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"the test double supports only equality-based label selectors, got {term!r}")
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif term.startswith("!"):
            terms.append(("!", term[1:].strip(), ""))
        else:
            terms.append(("exists", term, ""))

    def matches(labels: Mapping[str, str]) -> bool:
        for operator, key, value in terms:
            if operator == "=" and labels.get(key) != value:
                return False
            if operator == "!=" and labels.get(key) == value:
                return False
            if operator == "!" and key in labels:
                return False
            if operator == "exists" and key not in labels:
                return False
        return True

    return matches


# -- field ownership (a minimal FieldsV1) ------------------------------------------------------

def _ownable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an object a field manager can own: no identity, system metadata or status."""
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status", "metadata")}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SYSTEM_METADATA}
    if metadata:
        out["metadata"] = metadata
    return out


def _leaf_paths(obj: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """Paths to every non-mapping value (lists are atomic, as in CRDs without list-type markers)."""
    paths: set[FieldPath] = set()
    for key, value in obj.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            paths |= _leaf_paths(value, path)
        else:
            paths.add(path)
    return paths


def _fields_from_paths(paths: set[FieldPath]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def _paths_from_fields(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    children = {k: v for k, v in fields.items() if k.startswith("f:")}
    if not children:
        return {prefix} if prefix else set()
    for key, value in children.items():
        paths |= _paths_from_fields(value or {}, (*prefix, key[2:]))
    return paths


def _ownership(obj: Mapping[str, Any]) -> dict[str, set[FieldPath]]:
    owners: dict[str, set[FieldPath]] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        owners.setdefault(entry.get("manager", ""), set()).update(_paths_from_fields(entry.get("fieldsV1") or {}))
    return owners


_MISSING = object()


def _get_path(obj: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _set_path(obj: dict[str, Any], path: FieldPath, value: Any) -> None:
    for part in path[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[path[-1]] = value


def _delete_path(obj: dict[str, Any], path: FieldPath) -> None:
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for part in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return
        parents.append((node, part))
        node = node[part]
    node.pop(path[-1], None)
    # A mapping emptied by the removal goes too (the real server does not keep `spec: {}` it did not get).
    for parent, part in reversed(parents):
        if parent[part] == {} and part != "metadata":
            del parent[part]
        else:
            break


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what changes on every write (resourceVersion, managedFields timestamps)."""
    out = copy.deepcopy(dict(obj))
    metadata = out.get("metadata", {})
    metadata.pop("resourceVersion", None)
    metadata["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"} for entry in metadata.get("managedFields") or []
    ]
    return out
