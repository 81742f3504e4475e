"""Pod specs, for the one thing a policy needs them for: resolving named ports.

A CNP may write `toPorts: [{ports: [{port: http-alt}]}]`: a name a container of the pod
declares (`spec.containers[].ports[].name`), not a number. A flow carries only numbers, so
hushflow resolves the name from the pods' specs: `--pods FILE` (`kubectl get pods -A -o yaml`
or `-o json`, a List, or Pod documents) for file work, the pod watch of `hushflow run`
(`hushflow.app.pod_watch`) in a cluster. Both feed one `PodIndex`.

How Cilium resolves a named port (what `NamedPortResolver.resolve` mirrors):
- The name: an IANA service name (RFC 6335: 1 to 15 letters, digits and non-consecutive `-`
  not at either end, at least one letter), compared lowercased (pkg/iana/svcname.go IsSvcName;
  pkg/policy/api/rule_validation.go lowercases a policy's named port; pkg/types/portmap.go
  ValidatePortName lowercases a pod's). A container port with another name is
  not a named port (AddPort refuses it): counted here as a bad port, and skipped.
- A container port's protocol defaults to TCP (portmap.go newPortProto); the lookup is
  per protocol: a name declared for TCP does not resolve for a UDP flow
  (ErrIncompatibleProtocol). A rule's `protocol: ANY` is expanded to TCP, UDP and SCTP before
  the lookup (pkg/policy/l4.go), so only the flow's protocol and the declared one must agree.
- Port 0 or out of range never resolves (ErrNamedPortIsZero / newPortProto).
- Ingress: the named ports of the enforcing endpoint's own pod (pkg/endpoint/endpoint.go,
  GetNamedPort: "Ingress only needs the ports of the POD itself", GetK8sPorts). A pod that does
  not declare the name gives no port: the rule is skipped for it (ErrUnknownNamedPort).
- Egress: the named ports of the destination, looked up in the agent's multi-map of every
  pod's named ports by the identities the rule selects (portmap.go NamedPortMultiMap,
  filled from the pod watcher, pkg/k8s/watchers/pod.go, through the ipcache's
  K8sMetadata.NamedPorts). A pod not yet seen is "not scheduled yet" (ErrUnknownNamedPort).
  Since the lookup is by identity (Cilium >= 1.17), a peer outside the cluster (world, CIDR,
  FQDN identities) has no named port: the rule's port never matches it.
  When pods of one identity give the name different numbers, releases differ: older ones
  refuse the name (ErrDuplicateNamedPorts), newer ones (GetNamedPorts by identity) take each
  number. hushflow cannot tell which, so it answers "unknown" there. (It judges by the
  destination's identity only: a release that refuses a name when two identities one rule
  selects disagree is not modelled.)
- `endPort` applies to a named port from the number it resolves to: `port: http-alt` (8080)
  with `endPort: 9000` is 8080-9000, with an `endPort` at or below 8080 just 8080 (pkg/policy/l4.go
  toMapState resolves the name, then PortRangeToMaskedPorts(resolved, EndPort)).

hushflow's own rule, where the answer depends on pods it does not know: **unknown, never
allowed**. No pod index, a destination pod the index does not hold, an egress name none of the
destination's pods declares, or pods of one identity that disagree make the named port
unresolved; `hushflow.engine.decision` turns a rule that would match only through it into the
"unknown" outcome, and the attribution never names such a rule.

Which pod: the flow's destination (the local endpoint on ingress, the peer on egress), by its
namespace and pod name when the flow has them, else by its IP when exactly one live pod has it
(host-network pods share the node's IP and are never found by IP; pods that finished released
theirs). The identity of a pod, for egress, is approximated by its namespace and labels.

Every input is hostile: a document that is not a Pod, or a field of the wrong shape, is counted
and reported with file:line (`PodLoad.problems`), and skipped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from hushflow.flow.connection import Connection
from hushflow.policy.source import Location
from hushflow.policy.yamlsource import Manifest, load_manifests

PROTOCOLS = ("TCP", "UDP", "SCTP")
_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
_FINISHED = ("Succeeded", "Failed")  # their IPs were released and may belong to another pod now


def is_port_name(name: str) -> bool:
    """An IANA service name (pkg/iana IsSvcName), case ignored."""
    return 0 < len(name) <= 15 and _SVC_NAME.match(name.lower()) is not None


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str  # lowercased
    port: int
    protocol: str  # TCP, UDP or SCTP
    where: Location


@dataclass(frozen=True, slots=True)
class PodSpec:
    """What the index keeps of one pod."""

    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted
    ips: tuple[str, ...]
    host_network: bool
    finished: bool
    ports: tuple[NamedPort, ...]
    where: Location
    unreadable_ports: int = 0  # container ports skipped as malformed: the name may be among them

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def identity(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Cilium's identity of the pod, as near as its spec tells: namespace and labels."""
        return self.namespace, self.labels

    def declared(self, name: str) -> tuple[NamedPort, ...]:
        return tuple(port for port in self.ports if port.name == name)


@dataclass(slots=True)
class PodProblem:
    message: str
    where: Location
    code: str = ""  # the lint code of a file-level problem (hushflow.policy.yamlsource), else ""

    @property
    def whole_file(self) -> bool:
        """The file (or the rest of it) could not be read: unreadable, not YAML, a template."""
        return self.code in ("HF001", "HF003", "HF004")

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def pod_from_object(obj: Mapping[str, Any], where: Location, problems: list[PodProblem],
                    locate: Any = None) -> PodSpec | None:
    """A `PodSpec` from one Pod object (a file's or the API server's), or None when unusable.

    `locate(path)` gives the Location of a field (file input); without it every problem points
    at `where`. Bad container ports are reported and skipped; the pod is kept."""

    def at(*path: str | int) -> Location:
        return locate(path) if locate is not None else where

    if obj.get("kind", "Pod") != "Pod":
        problems.append(PodProblem(f"a {obj.get('kind')!r} object, not a Pod: skipped", at("kind")))
        return None
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        problems.append(PodProblem("a Pod without metadata.name: skipped", at("metadata")))
        return None
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        problems.append(PodProblem("metadata.namespace is not a name: skipped", at("metadata", "namespace")))
        return None
    raw_labels = metadata.get("labels") or {}
    if not isinstance(raw_labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_labels.items()
    ):
        problems.append(PodProblem("metadata.labels is not a map of strings: skipped", at("metadata", "labels")))
        return None
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(spec, dict) or not isinstance(status, dict):
        problems.append(PodProblem("spec or status is not a mapping: skipped", at()))
        return None
    before = len(problems)
    ports = _container_ports(spec, at, problems)
    unreadable = len(problems) - before
    return PodSpec(
        namespace=namespace,
        name=metadata["name"],
        labels=tuple(sorted(raw_labels.items())),
        ips=_pod_ips(status, at, problems),
        host_network=spec.get("hostNetwork") is True,
        finished=status.get("phase") in _FINISHED,
        ports=ports,
        where=where,
        unreadable_ports=unreadable,
    )


def _pod_ips(status: Mapping[str, Any], at: Any, problems: list[PodProblem]) -> tuple[str, ...]:
    found: list[str] = []
    candidates: list[tuple[Any, Location]] = [(status.get("podIP"), at("status", "podIP"))]
    pod_ips = status.get("podIPs")
    if isinstance(pod_ips, list):
        candidates += [
            (item.get("ip") if isinstance(item, dict) else item, at("status", "podIPs", index))
            for index, item in enumerate(pod_ips)
        ]
    for value, where in candidates:
        if value is None:
            continue
        try:
            text = str(ipaddress.ip_address(value)) if isinstance(value, str) else None
        except ValueError:
            text = None
        if text is None:
            problems.append(PodProblem(f"{value!r} is not an IP address: ignored", where))
        elif text not in found:
            found.append(text)
    return tuple(found)


def _container_ports(spec: Mapping[str, Any], at: Any, problems: list[PodProblem]) -> tuple[NamedPort, ...]:
    out: list[NamedPort] = []
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        problems.append(PodProblem("spec.containers is not a list: no named ports", at("spec", "containers")))
        return ()
    for c_index, container in enumerate(containers):
        ports = container.get("ports") if isinstance(container, dict) else None
        if not isinstance(ports, list):
            continue
        for p_index, port in enumerate(ports):
            path = ("spec", "containers", c_index, "ports", p_index)
            if not isinstance(port, dict) or port.get("name") in (None, ""):
                continue  # an unnamed port is no named port
            name, number, protocol = port.get("name"), port.get("containerPort"), port.get("protocol") or "TCP"
            if not isinstance(name, str) or not is_port_name(name):
                problems.append(PodProblem(f"port name {name!r} is not an IANA service name: skipped", at(*path)))
            elif type(number) is not int or not 0 < number <= 65535:
                problems.append(PodProblem(f"containerPort {number!r} is not a port 1-65535: skipped", at(*path)))
            elif protocol not in PROTOCOLS:
                problems.append(PodProblem(f"protocol {protocol!r} is not TCP, UDP or SCTP: skipped", at(*path)))
            else:
                out.append(NamedPort(name.lower(), number, protocol, at(*path)))
    return tuple(out)


@dataclass(slots=True)
class PodIndex:
    """Pods by namespace/name and by IP; `version` changes with every change (decision caches)."""

    _by_name: dict[tuple[str, str], PodSpec] = field(default_factory=dict)
    _by_ip: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    _by_identity: dict[tuple[str, tuple[tuple[str, str], ...]], set[tuple[str, str]]] = field(default_factory=dict)
    version: int = 0

    def __len__(self) -> int:
        return len(self._by_name)

    def upsert(self, pod: PodSpec) -> None:
        key = (pod.namespace, pod.name)
        self.remove(*key)
        self._by_name[key] = pod
        if not pod.host_network and not pod.finished:
            for ip in pod.ips:
                self._by_ip.setdefault(ip, set()).add(key)
        self._by_identity.setdefault(pod.identity, set()).add(key)
        self.version += 1

    def remove(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        old = self._by_name.pop(key, None)
        if old is None:
            return
        for ip in old.ips:
            holders = self._by_ip.get(ip)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._by_ip[ip]
        same = self._by_identity.get(old.identity)
        if same is not None:
            same.discard(key)
            if not same:
                del self._by_identity[old.identity]
        self.version += 1

    def replace_all(self, pods: Iterable[PodSpec]) -> None:
        """The index holds exactly `pods` (a fresh list from the API server)."""
        self._by_name.clear()
        self._by_ip.clear()
        self._by_identity.clear()
        for pod in pods:
            self.upsert(pod)
        self.version += 1

    def get(self, namespace: str, name: str) -> PodSpec | None:
        return self._by_name.get((namespace, name))

    def pods(self) -> list[PodSpec]:
        """Every pod, by namespace and name."""
        return [self._by_name[key] for key in sorted(self._by_name)]

    def find(self, endpoint: Mapping[str, Any], ip: str) -> tuple[PodSpec | None, str]:
        """The pod of a flow endpoint, or None and why not."""
        namespace, name = endpoint.get("namespace"), endpoint.get("pod_name")
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            pod = self._by_name.get((namespace, name))
            return (pod, "") if pod is not None else (None, f"pod {namespace}/{name} is not in the pod specs")
        if not ip:
            return None, "the flow names no pod and no IP for it"
        holders = self._by_ip.get(ip, set())
        if len(holders) == 1:
            return self._by_name[next(iter(holders))], ""
        if holders:
            return None, f"{len(holders)} pods have IP {ip}"
        return None, f"no pod with IP {ip} is in the pod specs"

    def same_identity(self, pod: PodSpec) -> list[PodSpec]:
        return [self._by_name[key] for key in sorted(self._by_identity.get(pod.identity, ()))]


@dataclass(frozen=True, slots=True)
class NamedPortAnswer:
    """`ports`: the numbers the name stands for (empty: the rule's port does not match);
    `resolved` False: hushflow cannot know, `reason` says why."""

    resolved: bool
    ports: frozenset[int] = frozenset()
    reason: str = ""


NO_PODS = "no pod specs were given (--pods FILE, or the pod watch of `hushflow run`)"


class NamedPortResolver:
    """Resolves a rule's named port for one connection, from a `PodIndex` (or none)."""

    def __init__(self, pods: PodIndex | None) -> None:
        self.pods = pods

    @property
    def version(self) -> int:
        return -1 if self.pods is None else self.pods.version

    def resolve(self, name: str, conn: Connection) -> NamedPortAnswer:
        """The numbers `name` (lowercased) stands for at the connection's destination."""
        if self.pods is None:
            return NamedPortAnswer(False, reason=NO_PODS)
        if conn.protocol not in PROTOCOLS:
            return NamedPortAnswer(True, reason=f"{conn.protocol or 'no L4'} has no ports")
        endpoint, ip = (conn.local, conn.local_ip) if conn.direction == "ingress" else (conn.peer, conn.peer_ip)
        pod, why = self.pods.find(endpoint, ip)
        if pod is None:
            return NamedPortAnswer(False, reason=why)
        if conn.direction == "ingress":
            # Cilium: the endpoint's own pod only; a name it does not declare is skipped.
            return _answer(name, conn.protocol, [pod], pod, missing_known=True)
        return _answer(name, conn.protocol, self.pods.same_identity(pod) or [pod], pod, missing_known=False)


def _answer(name: str, protocol: str, pods: Sequence[PodSpec], pod: PodSpec, *, missing_known: bool) -> NamedPortAnswer:
    declared = [port for each in pods for port in each.declared(name)]
    numbers = frozenset(port.port for port in declared if port.protocol == protocol)
    if len(numbers) > 1:
        owners = ", ".join(sorted({f"{p.where.file}:{p.where.line}" if p.where.line else p.where.file
                                   for p in declared if p.protocol == protocol}))
        return NamedPortAnswer(
            False,
            reason=f"pods of {pod.ref}'s identity give {name} different numbers "
                   f"({', '.join(str(n) for n in sorted(numbers))}; {owners}): Cilium's answer depends on its release",
        )
    if numbers:
        return NamedPortAnswer(True, numbers, f"{name} is {next(iter(numbers))}/{protocol} in pod {pod.ref}")
    if declared:
        other = ", ".join(sorted({f"{p.port}/{p.protocol}" for p in declared}))
        return NamedPortAnswer(True, reason=f"pod {pod.ref} declares {name} as {other}, not for {protocol}")
    unreadable = [each.ref for each in pods if each.unreadable_ports]
    if unreadable:
        return NamedPortAnswer(
            False, reason=f"{name} is not among the ports of {', '.join(unreadable)} hushflow could read "
                          "(some were malformed and skipped)"
        )
    if missing_known:
        return NamedPortAnswer(True, reason=f"pod {pod.ref} declares no port named {name}")
    return NamedPortAnswer(
        False, reason=f"no pod of {pod.ref}'s identity in the pod specs declares a port named {name}"
    )


@dataclass(slots=True)
class PodLoad:
    index: PodIndex
    problems: list[PodProblem]
    files: list[str]


def load_pods(paths: Sequence[str], stdin: IO[str] | None = None) -> PodLoad:
    """Read pods from files (`kubectl get pods -A -o yaml`/`-o json`, Lists or Pod documents).
    Problems are collected with file:line, never raised; what is readable is kept."""
    read = load_manifests(paths, stdin)
    problems = [PodProblem(p.message, p.location, p.code) for p in read.problems]
    index = PodIndex()
    for manifest in read.manifests:
        pod = _pod_of_manifest(manifest, problems)
        if pod is not None:
            if index.get(pod.namespace, pod.name) is not None:
                problems.append(PodProblem(f"pod {pod.ref} is written twice: the later one is kept", pod.where))
            index.upsert(pod)
    return PodLoad(index, problems, read.files)


def _pod_of_manifest(manifest: Manifest, problems: list[PodProblem]) -> PodSpec | None:
    return pod_from_object(manifest.data, manifest.locate(), problems, manifest.locate)
