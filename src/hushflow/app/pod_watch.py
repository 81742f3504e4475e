"""The pod watch of `hushflow run --watch-pods`: the cluster's pod specs, for named ports.

Lists `GET /api/v1/pods` (pages of `PAGE_SIZE`), puts them in the daemon's `PodIndex` at once,
then watches from the list's resourceVersion (`watch=true`, bookmarks on): ADDED and MODIFIED
pods replace their entry, DELETED ones leave. A watch that ends (the server's timeout) is
resumed from the last resourceVersion seen (events and bookmarks); one the server answers 410
Gone ("too old resource version") is started again with a fresh list. A request that fails
(unreachable, 5xx, 403) is retried after a backoff that doubles from `BACKOFF_FIRST` to
`BACKOFF_MAX` seconds, and reported. The RBAC it needs: list and watch on pods, nothing more.

Every object is hostile: a line that is not JSON, an event of an unknown type, or a pod of the
wrong shape is counted (`PodWatchStats.bad_objects`), reported (the first `_REPORTED`), and
skipped; a pod that turned bad leaves the index (its old spec would be stale), so its named
ports answer "unknown" rather than an old number. A line longer than `MAX_LINE_BYTES` ends the
watch (it is resumed). The index is changed under the daemon's lock, the one the pipeline holds
per flow, so a decision never sees half an update.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from hushflow.engine.pods import PodIndex, PodProblem, PodSpec, pod_from_object
from hushflow.policy.source import Location

PODS_PATH = "/api/v1/pods"
PAGE_SIZE = 500
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
WATCH_TIMEOUT = 300  # seconds the server keeps one watch open
MAX_LINE_BYTES = 16 << 20
_REQUEST_TIMEOUT = 30.0
_REPORTED = 10


class PodWatchError(Exception):
    """A request of the watch failed; it is retried."""


class _Expired(Exception):
    """410 Gone: the resourceVersion is too old; list again."""


@dataclass(slots=True)
class PodWatchStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    bad_objects: int = 0
    retries: int = 0
    relists: int = 0  # after 410 Gone


class PodWatch:
    """List then watch the cluster's pods into `index`, until `stopping` is set."""

    def __init__(
        self,
        api: Any,  # a kubernetes.client.ApiClient
        index: PodIndex,
        lock: threading.Lock,
        stopping: threading.Event,
        *,
        report: Callable[[str], None] = lambda _line: None,
        wait: Callable[[float], bool] | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        """`wait(seconds)` sleeps between retries and returns True when stopping (tests pass a
        fake that records the delays)."""
        self.api = api
        self.index = index
        self.lock = lock
        self.stopping = stopping
        self.report = report
        self.wait = wait or stopping.wait
        self.watch_timeout = watch_timeout
        self.stats = PodWatchStats()
        self.synced = threading.Event()  # the first list is in the index
        self.up = False  # listed and watching; False while requests fail (hushflow_pod_watch_up)

    def run(self) -> None:
        delay = BACKOFF_FIRST
        version: str | None = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                delay = BACKOFF_FIRST
            except _Expired:
                self.stats.relists += 1
                version = None
            except PodWatchError as exc:
                self.up = False
                self.stats.retries += 1
                self.report(f"pod watch: {exc}; retrying in {delay:g} s (named ports use the pods known so far)")
                if self.wait(delay):
                    return
                delay = min(delay * 2, BACKOFF_MAX)

    # -- list ------------------------------------------------------------------------------------

    def _list(self) -> str:
        pods: list[PodSpec] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            status, body = self._get(query)
            if status == 410:
                raise _Expired  # the continue token expired
            if status != 200 or not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise PodWatchError(_problem(status, body, "list pods"))
            for item in body["items"]:
                pod = self._pod(item)
                if pod is not None:
                    pods.append(pod)
            metadata = _mapping(body.get("metadata"))
            token = _text(metadata.get("continue"))
            if not token:
                version = metadata.get("resourceVersion")
                break
        with self.lock:
            self.index.replace_all(pods)
        self.stats.lists += 1
        self.synced.set()
        return version if isinstance(version, str) and version else "0"

    # -- watch -----------------------------------------------------------------------------------

    def _watch(self, version: str) -> str:
        query = [("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(self.watch_timeout))]
        response = self._open(query, read_timeout=self.watch_timeout + _REQUEST_TIMEOUT)
        try:
            status = int(response.status)
            if status == 410:
                raise _Expired
            if status != 200:
                raise PodWatchError(_problem(status, _json(response.read()), "watch pods"))
            self.stats.watches += 1
            self.up = True
            for line in _lines(response.response):  # the urllib3 response, not read yet
                if self.stopping.is_set():
                    break
                version = self._event(line, version)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PodWatchError(f"the watch of pods broke off: {exc}") from None
        finally:
            response.response.release_conn()
        return version

    def _event(self, line: bytes, version: str) -> str:
        event = _json(line)
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == 410:
                raise _Expired
            raise PodWatchError(_problem(code if isinstance(code, int) else 0, obj, "watch pods"))
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
            self._bad(f"not a watch event: {line[:80]!r}")
            return version
        metadata = _mapping(obj.get("metadata"))
        new_version = metadata.get("resourceVersion")
        if isinstance(new_version, str) and new_version:
            version = new_version
        self.stats.events += 1
        if kind == "BOOKMARK":
            return version
        namespace, name = metadata.get("namespace", "default"), metadata.get("name")
        pod = self._pod(obj) if kind != "DELETED" else None
        with self.lock:
            if pod is not None:
                self.index.upsert(pod)
            elif isinstance(namespace, str) and isinstance(name, str):
                self.index.remove(namespace, name)  # deleted, or turned bad: its old spec is stale
        return version

    # -- objects and requests ----------------------------------------------------------------------

    def _pod(self, item: Any) -> PodSpec | None:
        if not isinstance(item, dict):
            self._bad(f"a {type(item).__name__} where a Pod was expected")
            return None
        metadata = _mapping(item.get("metadata"))
        where = Location(f"{PODS_PATH} {metadata.get('namespace', '?')}/{metadata.get('name', '?')}")
        problems: list[PodProblem] = []
        pod = pod_from_object({"kind": "Pod", **item}, where, problems)
        for problem in problems:
            self._bad(str(problem))
        return pod

    def _bad(self, what: str) -> None:
        self.stats.bad_objects += 1
        if self.stats.bad_objects <= _REPORTED:
            self.report(f"pod watch: skipped {what}")

    def _get(self, query: list[tuple[str, str]]) -> tuple[int, Any]:
        response = self._open(query, read_timeout=_REQUEST_TIMEOUT)
        try:
            return int(response.status), _json(response.read())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PodWatchError(f"cannot read the pod list: {exc}") from None
        finally:
            response.response.release_conn()

    def _open(self, query: list[tuple[str, str]], *, read_timeout: float) -> Any:
        api = self.api
        try:
            method, url, headers, body, post = api.param_serialize(
                method="GET", resource_path=PODS_PATH, query_params=query,
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            )
            return api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                _request_timeout=(_REQUEST_TIMEOUT, read_timeout))
        except ApiException as exc:
            raise PodWatchError(f"the Kubernetes API answered {exc.status} {exc.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            host = getattr(getattr(api, "configuration", None), "host", "?")
            raise PodWatchError(f"cannot reach the Kubernetes API at {host} ({exc})") from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated lines of a streamed response, each at most MAX_LINE_BYTES."""
    pending = b""
    for chunk in response.stream(1 << 16, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
        if len(pending) > MAX_LINE_BYTES:
            raise PodWatchError(f"a watch event longer than {MAX_LINE_BYTES} bytes")
    if pending.strip():
        yield pending


def _problem(status: int, body: Any, action: str) -> str:
    message = body.get("message") if isinstance(body, dict) else None
    words = {401: "unauthorized", 403: "forbidden (the service account needs list and watch on pods)",
             404: "not found"}.get(status, f"HTTP {status}" if status else "an error")
    return f"cannot {action}: {words}" + (f": {message}" if isinstance(message, str) and message else "")
