"""`hushflow suggest`: the fix for an unexpected drop, verified against the recorded flows.

The steps, one direction of data:
1. read the recorded flows (`read_recorded_flows`) or the daemon's unexpected-drop events
   (`read_drop_events`);
2. attribute every flow as `observe --enrich` and `run` do (`make_attributor`): a DROPPED or
   AUDIT flow whose tags name no planned deny (``Attribution.expected is False``) is an
   unexpected drop; group them by (workload, direction, peer, port/protocol) (`find_drop_groups`);
3. for each group, build the "allow" (the narrowest rule that admits exactly those flows) and
   the "block" (an entry in an FQDN deny of the workload, or a new deny with a `log.value`, so
   the next drop is planned) as edits of the policy files (`allow_edit`, `block_edit`), patched
   with ruamel.yaml round-trip so comments, key order and layout stay (`apply_edits`);
4. verify each edit: load the patched copy of the policy set (in memory) and replay every
   recorded flow against both sets (`hushflow.engine.replay`): an allow must turn exactly the
   group's flows to newly-allowed, a block exactly the group's flows to planned drops
   (tag-changed, with the tag), and nothing else may change (`verify`). A suggestion that fails
   is reported with why, never as a fix.

Peers, narrowest first:
- a name a DNS answer in the flows (or Hubble's `destination_names`) gives the peer IP, on
  egress to the world: ``toFQDNs: [{matchName: ...}]``, with the DNS proxy rule the FQDN allow
  needs when no policy of the workload already lets that name through Cilium's DNS proxy;
- a pod: ``toEndpoints``/``fromEndpoints`` with its stable labels (`stable_labels`: per-pod and
  per-revision labels dropped) and its namespace when it is not the policy's;
- a reserved identity other than the world (host, remote-node, kube-apiserver, ...): its entity;
- any other address: the address alone (``/32``, ``/128``), never a wider CIDR, never ``world``.
"""

from __future__ import annotations

import difflib
import io
import ipaddress
import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from hushflow.app.enrich import make_attributor
from hushflow.app.policies import load_job_policies
from hushflow.app.progress import NO_PROGRESS, ProgressReporter
from hushflow.engine.pods import PodIndex
from hushflow.engine.replay import Change, FlowReplay, Replayer, ReplaySummary, summarize
from hushflow.flow.connection import Connection, endpoint_labels, is_policy_outcome, workload_of
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS, EventNormalizer, ProtoJSONError
from hushflow.flow.reader import BadLine, FlowReader, ReadStats
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION, dns_name
from hushflow.policy.labels import endpoint_label_map
from hushflow.policy.loading import LoadedPolicies, load_policies
from hushflow.policy.model import CNP, BuildOptions, PolicySet, Rule
from hushflow.policy.source import printable

ALLOW = "allow"
BLOCK = "block"
ACTIONS = (ALLOW, BLOCK)

#: The tag of a deny `suggest` creates when the workload has no tagged deny to extend.
DEFAULT_BLOCK_TAG = "suggested-block"

#: Labels that change from pod to pod or from rollout to rollout: a selector with one of them
#: stops matching at the next rollout (or matches one pod only). Keys without their source.
PER_POD_LABELS = frozenset({
    "pod-template-hash",                         # Deployment: one value per ReplicaSet
    "controller-revision-hash",                  # StatefulSet / DaemonSet revision
    "pod-template-generation",                   # DaemonSet (legacy)
    "statefulset.kubernetes.io/pod-name",        # one pod of a StatefulSet
    "apps.kubernetes.io/pod-index",              # StatefulSet ordinal (1.28+)
    "controller-uid",                            # Job (legacy)
    "batch.kubernetes.io/controller-uid",        # Job
    "job-name",                                  # Job: a CronJob's jobs each have their own name
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",  # indexed Job: one pod
    "app.kubernetes.io/version",                 # changes with every release
    "helm.sh/chart",                             # chart name-version: changes with every upgrade
    "io.cilium.k8s.policy.cluster",              # Cilium's own; peer selectors get it from the agent
})
#: Cilium's derived labels: the namespace's labels copied onto every pod, and policy metadata.
_DERIVED_PREFIXES = ("io.cilium.k8s.namespace.labels.", "io.cilium.k8s.policy.")
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
_SERVICE_ACCOUNT = "io.cilium.k8s.policy.serviceaccount"
#: Where DNS goes when the flows show no DNS server for the workload (kube-dns, as Cilium's docs).
DEFAULT_DNS_SERVER = {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}
_WORLD_IDENTITIES = frozenset({2, 9, 10})
_ENTITIES = {"host": "host", "remote-node": "remote-node", "kube-apiserver": "kube-apiserver",
             "ingress": "ingress", "health": "health", "init": "init", "unmanaged": "unmanaged"}


class SuggestError(Exception):
    """A user mistake (bad option, unreadable input), worded as one line: exit 2."""


def stable_labels(labels: Iterable[str]) -> dict[str, str]:
    """The labels a selector for this endpoint should use: its Kubernetes labels without the
    per-pod and per-revision ones (`PER_POD_LABELS`), without Cilium's derived ones, and without
    the namespace (the caller adds it when it is not the policy's). The service account is kept
    only when nothing else is left (it is stable, but says less than an app label)."""
    kept: dict[str, str] = {}
    account: str | None = None
    for label in labels:
        source, _, rest = str(label).partition(":")
        if source != "k8s" or "=" not in rest:
            continue  # reserved:, cidr:, fqdn: and other sources are no pod labels
        key, _, value = rest.partition("=")
        if key == _SERVICE_ACCOUNT:
            account = value
            continue
        if key in PER_POD_LABELS or key == NAMESPACE_LABEL or key.startswith(_DERIVED_PREFIXES):
            continue
        kept[key] = value
    if not kept and account is not None:
        kept[_SERVICE_ACCOUNT] = account
    return dict(sorted(kept.items()))


# -- reading --------------------------------------------------------------------------------------

@dataclass(slots=True)
class RecordedFlows:
    """The events read, in order (canonical dicts, never changed), and the bad lines."""

    events: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)

    @property
    def bad(self) -> int:
        return self.stats.bad_lines


def _decided_or_dns(flow: Mapping[str, Any]) -> bool:
    """What the attribution and the replay use: policy outcomes, and DNS records (answers)."""
    l7 = flow.get("l7")
    if isinstance(l7, dict) and "dns" in l7:
        return True
    try:
        return is_policy_outcome(flow)
    except FLOW_SHAPE_ERRORS:
        return True  # the attribution reports it, with its file:line


def read_recorded_flows(paths: Sequence[str], progress: ProgressReporter = NO_PROGRESS) -> RecordedFlows:
    """Hubble flows (jsonpb lines, exporter files, gzip, `-`): the policy outcomes and DNS records
    among them, in order (held in memory: each suggestion replays them all); `progress` shows them."""
    from hushflow.flow.reader import FlowReadError

    recorded = RecordedFlows()
    try:
        for event in progress.iterate(FlowReader(list(paths), stats=recorded.stats), "reading flows"):
            flow = event.flow
            if flow is None or not _decided_or_dns(flow):
                continue  # traces and L7 records other than DNS: no decision, nothing to learn
            recorded.events.append(orjson.loads(event.raw))
            recorded.origins.append(event.origin)
    except FlowReadError as err:
        raise SuggestError(str(err)) from None
    return recorded


def read_drop_events(paths: Sequence[str]) -> RecordedFlows:
    """The daemon's unexpected-drop events (`sinks.events`: one JSON object a line, with the
    drop's `flow`): each flow is checked and made canonical like a line of flows."""
    recorded = RecordedFlows()
    normalizer = EventNormalizer()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError as err:
            raise SuggestError(f"{path}: {err.strerror or err}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            recorded.stats.lines += 1
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                recorded.stats.add_bad(BadLine(path, number, f"invalid JSON: {err}"))
                continue
            flow = data.get("flow") if isinstance(data, dict) else None
            if not isinstance(flow, dict):
                recorded.stats.add_bad(BadLine(path, number, "not an unexpected-drop event (no `flow` object)"))
                continue
            try:
                normalized = normalizer.normalize({"flow": flow})
            except (ProtoJSONError, RecursionError) as err:
                recorded.stats.add_bad(BadLine(path, number, f"invalid flow: {err}"))
                continue
            recorded.stats.events += 1
            recorded.events.append(normalized.event)
            recorded.origins.append(f"{path}:{number}")
    return recorded


# -- the unexpected drops ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Peer:
    """Whom a group of drops went to (egress) or came from (ingress), as a rule selects it."""

    kind: str  # "fqdn" | "endpoints" | "entity" | "cidr"
    value: str  # the name, the entity, the CIDR; for endpoints "ns/workload"
    labels: tuple[tuple[str, str], ...] = ()  # endpoints: stable labels (namespace included)

    def __str__(self) -> str:
        return self.value or "(no address)"


@dataclass(slots=True)
class DropGroup:
    """Unexpected drops of one workload to (from) one peer on one port."""

    namespace: str
    workload: str
    direction: str  # "egress" | "ingress"
    peer: Peer
    protocol: str  # TCP, UDP, SCTP, ICMPv4, ICMPv6 or ""
    port: int
    local_labels: dict[str, str]  # the workload's stable labels (a new policy's endpointSelector)
    indices: list[int] = field(default_factory=list)  # positions in RecordedFlows.events
    first: float = 0.0
    last: float = 0.0
    origin: str = ""  # file:line of the first drop
    dns_server: dict[str, str] | None = None  # the DNS server the workload's DNS flows went to
    allowed_now: int = 0  # drops these policies allow (Cilium decided otherwise)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.workload}"

    @property
    def port_text(self) -> str:
        return f"{self.port}/{self.protocol}" if self.protocol else "any port"

    def describe(self) -> str:
        arrow = "->" if self.direction == "egress" else "<-"
        return f"{self.key} {arrow} {self.peer} {self.port_text} ({self.direction})"


def _peer_of(conn: Connection, names: Sequence[str]) -> Peer:
    peer = conn.peer
    labels = conn.peer_labels
    reserved = [label.split(":", 1)[1] for label in labels if label.startswith("reserved:")]
    identity = peer.get("identity")
    namespace = peer.get("namespace")
    if namespace or any(label.startswith("k8s:") for label in labels):
        namespace = str(namespace or endpoint_label_map(labels).get(f"k8s:{NAMESPACE_LABEL}", ""))
        selector = stable_labels(labels)
        if namespace:
            selector = {f"k8s:{NAMESPACE_LABEL}": namespace, **selector}
        name = workload_of(peer) or conn.peer_ip
        return Peer("endpoints", f"{namespace}/{name}" if namespace else name, tuple(selector.items()))
    world = identity in _WORLD_IDENTITIES or any(r.startswith("world") for r in reserved) or not reserved
    if not world:
        entity = _ENTITIES.get(reserved[0])
        if entity is not None:
            return Peer("entity", entity)
    if conn.direction == "egress" and names:
        return Peer("fqdn", dns_name(names[0]))
    try:
        address = ipaddress.ip_address(conn.peer_ip)
    except ValueError:
        return Peer("cidr", "")  # no address: nothing narrow to suggest (verification refuses)
    return Peer("cidr", f"{address}/{address.max_prefixlen}")


def _is_dns_query(conn: Connection) -> bool:
    return conn.direction == "egress" and conn.port == 53 and conn.protocol in ("UDP", "TCP")


@dataclass(slots=True)
class DropScan:
    groups: list[DropGroup]
    unexpected: int  # unexpected drops (flows)
    planned: int  # drops a planned deny explains
    bad: list[BadLine]


def find_drop_groups(
    policy_set: PolicySet,
    recorded: RecordedFlows,
    *,
    expected_logs: Iterable[str] | None = None,
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION,
    pods: PodIndex | None = None,
) -> DropScan:
    """The unexpected drops of `recorded`, grouped, in the order their first drop was seen."""
    attributor = make_attributor(policy_set, expected_logs=expected_logs, cilium_version=cilium_version, pods=pods)
    groups: dict[tuple[Any, ...], DropGroup] = {}
    dns_servers: dict[str, dict[str, str]] = {}
    unexpected = planned = 0
    bad: list[BadLine] = []
    for index, event in enumerate(recorded.events):
        work = orjson.loads(orjson.dumps(event))  # the attribution fills the flow in place
        try:
            dns_server = _dns_server_of(event)
            if dns_server is not None:
                dns_servers.setdefault(dns_server[0], dns_server[1])
            attribution = attributor.observe(work)
        except FLOW_SHAPE_ERRORS as err:
            source, _, line = recorded.origins[index].rpartition(":")
            bad.append(BadLine(source, int(line or 0), f"flow cannot be attributed: {err}"))
            continue
        if attribution is None or attribution.connection is None:
            continue
        conn = attribution.connection
        if _is_dns_query(conn) and attribution.observed == "allowed" and conn.peer.get("namespace"):
            local_key = f"{conn.local.get('namespace', '')}/{workload_of(conn.local)}"
            dns_servers.setdefault(local_key, dict(_peer_of(conn, ()).labels))
        if attribution.expected is None:
            continue
        if attribution.expected:
            planned += 1
            continue
        unexpected += 1
        names = conn.peer_names or _names_learned(attributor, conn)
        peer = _peer_of(conn, names)
        namespace = str(conn.local.get("namespace") or "")
        workload = workload_of(conn.local) or conn.local_ip
        key = (namespace, workload, conn.direction, peer, conn.protocol, conn.port)
        group = groups.get(key)
        if group is None:
            group = groups[key] = DropGroup(
                namespace, workload, conn.direction, peer, conn.protocol, conn.port,
                stable_labels(endpoint_labels(conn.local)), first=conn.time, last=conn.time,
                origin=recorded.origins[index],
            )
        group.indices.append(index)
        if attribution.decision.outcome in ("allowed", "not-enforced"):
            group.allowed_now += 1
        group.first = min(group.first, conn.time)
        group.last = max(group.last, conn.time)
    for group in groups.values():
        group.dns_server = dns_servers.get(group.key)
    return DropScan(list(groups.values()), unexpected, planned, bad)


def _dns_server_of(event: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(the workload, its DNS server's selector labels) of a DNS request Cilium's proxy saw."""
    flow = event.get("flow")
    if not isinstance(flow, dict) or flow.get("traffic_direction") != "EGRESS" or flow.get("is_reply"):
        return None
    l7 = flow.get("l7")
    if not isinstance(l7, dict) or not isinstance(l7.get("dns"), dict) or l7.get("type") != "REQUEST":
        return None
    local, server = flow.get("source"), flow.get("destination")
    if not isinstance(local, dict) or not isinstance(server, dict) or not server.get("namespace"):
        return None
    labels = {f"k8s:{NAMESPACE_LABEL}": str(server["namespace"]), **stable_labels(endpoint_labels(server))}
    return f"{local.get('namespace', '')}/{workload_of(local)}", labels


def _names_learned(attributor: Any, conn: Connection) -> tuple[str, ...]:
    """The names DNS answers seen so far gave the peer IP (at the flow's time)."""
    if not conn.peer_ip:
        return ()
    return tuple(attributor.dns.names_for_ip(conn.peer_ip, conn.time))


# -- edits ----------------------------------------------------------------------------------------

PolicyKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to one policy document: entries appended to a section, or FQDN selectors
    appended to an existing entry (`into`). `new_policy` is the document to create when the
    policy is not in the file yet."""

    file: str
    policy: PolicyKey
    section: str  # egress, ingress, egressDeny, ingressDeny
    entries: tuple[Mapping[str, Any], ...] = ()
    into: int | None = None  # index of the entry of `section` whose toFQDNs get `fqdns`
    fqdns: tuple[Mapping[str, str], ...] = ()
    new_policy: Mapping[str, Any] | None = None

    def describe(self) -> str:
        kind, namespace, name = self.policy
        where = "new file " if self.new_policy is not None else ""
        if self.into is not None:
            what = f"{self.section}[{self.into}].toFQDNs += " + ", ".join(f["matchName"] for f in self.fqdns)
        else:
            what = f"{len(self.entries)} {self.section} rule{'s' if len(self.entries) != 1 else ''}"
        return f"{what} in {kind}/{namespace}/{name} ({where}{self.file})"


def _ports(group: DropGroup) -> dict[str, Any]:
    if group.protocol in ("TCP", "UDP", "SCTP"):
        return {"toPorts": [{"ports": [{"port": str(group.port), "protocol": group.protocol}]}]}
    if group.protocol in ("ICMPv4", "ICMPv6"):
        return {"icmps": [{"fields": [{"family": "IP" + group.protocol[4:], "type": group.port}]}]}
    return {}


def _peer_entry(group: DropGroup, namespace: str) -> dict[str, Any]:
    to = "to" if group.direction == "egress" else "from"
    peer = group.peer
    if peer.kind == "fqdn":
        return {"toFQDNs": [{"matchName": peer.value}]}
    if peer.kind == "endpoints":
        labels = dict(peer.labels)
        if labels.get(f"k8s:{NAMESPACE_LABEL}") == namespace:
            del labels[f"k8s:{NAMESPACE_LABEL}"]  # Cilium: a CNP's peers default to its namespace
        return {f"{to}Endpoints": [{"matchLabels": labels}]}
    if peer.kind == "entity":
        return {f"{to}Entities": [peer.value]}
    return {f"{to}CIDR": [peer.value]}


def _rule_entry(group: DropGroup, namespace: str) -> dict[str, Any]:
    return {**_peer_entry(group, namespace), **_ports(group)}


def _dns_entry(group: DropGroup) -> dict[str, Any]:
    return {
        "toEndpoints": [{"matchLabels": dict(group.dns_server or DEFAULT_DNS_SERVER)}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                     "rules": {"dns": [{"matchName": group.peer.value}]}}],
    }


def _selects(rule: Rule, labels: Mapping[str, str]) -> bool:
    return rule.subject is not None and rule.node_subject is None and rule.subject.matches(labels)


def dns_granted(policy_set: PolicySet, local_labels: Sequence[str], name: str) -> bool:
    """Does a rule of the workload already let `name` through Cilium's DNS proxy (an egress rule
    on port 53 with `rules.dns` selecting the name)? Then an FQDN allow needs no DNS rule."""
    labels = endpoint_label_map(local_labels)
    for rule in policy_set.rules:
        if not _selects(rule, labels):
            continue
        for peer_rule in rule.egress:
            for port_rule in peer_rule.ports or ():
                if port_rule.dns is None:
                    continue
                if not any(p.covers(53) and p.protocol in ("ANY", "UDP") for p in port_rule.ports):
                    continue
                if any(selector.matches(name) for selector in port_rule.dns):
                    return True
    return False


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: Rule
    file: str
    data: Mapping[str, Any]


def _candidates(loaded: LoadedPolicies, group: DropGroup, local_labels: Sequence[str]) -> list[_Candidate]:
    """The CNPs of the workload's namespace, written as one `spec` in a file, whose own
    endpointSelector (not empty) selects the workload."""
    labels = endpoint_label_map(local_labels)
    found: list[_Candidate] = []
    for policy in loaded.policy_set.policies:
        if policy.ref.kind != CNP or policy.ref.namespace != group.namespace or len(policy.rules) != 1:
            continue
        rule = policy.rules[0]
        manifest = loaded.raw.get(id(policy))
        if manifest is None or manifest.prefix or rule.where.path != ("spec",) or manifest.file == "<stdin>":
            continue
        spec = manifest.data.get("spec") or {}
        selector = spec.get("endpointSelector") if isinstance(spec, dict) else None
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            continue  # `{}` selects the whole namespace: a rule added there admits every pod
        if _selects(rule, labels):
            found.append(_Candidate(rule, manifest.file, spec))
    return found


def _selector_size(candidate: _Candidate) -> int:
    selector = candidate.data.get("endpointSelector") or {}
    return len(selector.get("matchLabels") or {}) + len(selector.get("matchExpressions") or ())


def _key(rule: Rule) -> PolicyKey:
    return (rule.policy.kind, rule.policy.namespace, rule.policy.name)


def suggested_file(policy_paths: Sequence[str], group: DropGroup) -> str:
    """Where a new policy for the group's workload goes: `suggested-<workload>.yaml` in the
    policy directory (the first given), or beside the first policy file."""
    base = next((p for p in policy_paths if os.path.isdir(p)), None)
    if base is None:
        first = next((p for p in policy_paths if p != "-"), ".")
        base = os.path.dirname(first) or "."
    safe = re.sub(r"[^a-z0-9.-]+", "-", group.workload.lower()).strip("-.") or "workload"
    return os.path.join(base, f"suggested-{safe}.yaml")


def _new_policy(group: DropGroup, name: str, section: str, entries: list[dict[str, Any]],
                log: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "endpointSelector": {"matchLabels": dict(group.local_labels)},
        section: entries,
    }
    if log is not None:
        spec["log"] = {"value": log}
    return {
        "apiVersion": "cilium.io/v2",
        "kind": CNP,
        "metadata": {"name": name, "namespace": group.namespace},
        "spec": spec,
    }


def _policy_name(group: DropGroup, suffix: str) -> str:
    base = re.sub(r"[^a-z0-9.-]+", "-", group.workload.lower()).strip("-.") or "workload"
    return f"{base[: 253 - len(suffix) - 1]}-{suffix}"


def _local_labels(recorded: RecordedFlows, group: DropGroup) -> tuple[str, ...]:
    event = recorded.events[group.indices[0]]
    flow = event["flow"]
    local = flow.get("source" if group.direction == "egress" else "destination") or {}
    return endpoint_labels(local)


def allow_edit(loaded: LoadedPolicies, recorded: RecordedFlows, group: DropGroup,
               policy_paths: Sequence[str]) -> Edit | str:
    """The "allow" of `group`, or why there is none."""
    if group.peer.kind == "cidr" and not group.peer.value:
        return "the drops carry no peer address to allow"
    local_labels = _local_labels(recorded, group)
    section = group.direction
    entries = [_rule_entry(group, group.namespace)]
    if group.peer.kind == "fqdn" and not dns_granted(loaded.policy_set, local_labels, group.peer.value):
        entries.append(_dns_entry(group))
    candidates = _candidates(loaded, group, local_labels)
    if candidates:
        # An untagged policy first (a tag on allowed flows would mislabel them), then one that
        # already has the section, then the narrowest selector, then file order.
        best = min(candidates, key=lambda c: (c.rule.log_value is not None, section not in c.data,
                                              -_selector_size(c), c.file, c.rule.where.line))
        return Edit(best.file, _key(best.rule), section, tuple(entries))
    if not group.local_labels:
        return "the workload has no stable label to select it by"
    name = _policy_name(group, "suggested-allow")
    return Edit(suggested_file(policy_paths, group), (CNP, group.namespace, name), section, tuple(entries),
                new_policy=_new_policy(group, name, section, entries, None))


def _covers(entry: Mapping[str, Any], group: DropGroup) -> bool:
    """Does a written deny entry's toPorts cover the group's port (or have no toPorts)?"""
    to_ports = entry.get("toPorts")
    if not to_ports:
        return True
    for port_rule in to_ports:
        for port in (port_rule or {}).get("ports") or ():
            protocol = str(port.get("protocol") or "ANY").upper()
            if protocol not in ("ANY", group.protocol):
                continue
            try:
                first = int(str(port.get("port", "0")))
            except ValueError:
                continue
            last = int(port.get("endPort") or first)
            if first == 0 or first <= group.port <= last:
                return True
    return False


def block_edit(loaded: LoadedPolicies, recorded: RecordedFlows, group: DropGroup, policy_paths: Sequence[str],
               tag: str | None = None) -> Edit | str:
    """The "block" of `group`: the peer added to a tagged FQDN deny of the workload, else a new
    entry in a tagged deny of the workload, else a new tagged deny. `tag`: the tag of a new deny."""
    if group.peer.kind == "cidr" and not group.peer.value:
        return "the drops carry no peer address to block"
    local_labels = _local_labels(recorded, group)
    section = f"{group.direction}Deny"
    denies = [c for c in _candidates(loaded, group, local_labels)
              if c.rule.log_value and isinstance(c.data.get(section), list)]
    denies.sort(key=lambda c: (-_selector_size(c), c.file, c.rule.where.line))
    if group.peer.kind == "fqdn":
        for candidate in denies:
            for index, entry in enumerate(candidate.data[section]):
                if isinstance(entry, dict) and isinstance(entry.get("toFQDNs"), list) and _covers(entry, group):
                    return Edit(candidate.file, _key(candidate.rule), section, into=index,
                                fqdns=({"matchName": group.peer.value},))
    entry = _rule_entry(group, group.namespace)
    if denies:
        return Edit(denies[0].file, _key(denies[0].rule), section, (entry,))
    if not group.local_labels:
        return "the workload has no stable label to select it by"
    name = _policy_name(group, "suggested-block")
    return Edit(suggested_file(policy_paths, group), (CNP, group.namespace, name), section, (entry,),
                new_policy=_new_policy(group, name, section, [entry], tag or DEFAULT_BLOCK_TAG))


# -- patching with ruamel.yaml round-trip --------------------------------------------------------------

_DOCUMENT_START = re.compile(r"(?m)^(---[ \t]*(?:#.*)?\n)")


def _guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the file writes them: `key:\\n- item` is offset 0,
    `key:\\n  - item` offset 2."""
    mapping, offset = 2, 0
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found_mapping = found_offset = False
    for previous, line in itertools.pairwise(lines):
        if not previous.rstrip().endswith(":"):
            continue
        before = len(previous) - len(previous.lstrip())
        now = len(line) - len(line.lstrip())
        if line.lstrip().startswith("- "):
            if not found_offset and now >= before:
                offset, found_offset = now - before, True
        elif not found_mapping and now > before:
            mapping, found_mapping = now - before, True
        if found_mapping and found_offset:
            break
    return mapping, offset


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, key order, quotes and flow style kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    mapping, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=mapping + offset, offset=offset)
    return yaml


def _quoted(value: Any) -> Any:
    """New entries as the policies write them: ports as double-quoted strings."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, Mapping):
        return {key: DoubleQuotedScalarString(item) if key == "port" else _quoted(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_quoted(item) for item in value]
    return value


def _split_documents(text: str) -> list[str]:
    return [part for part in _DOCUMENT_START.split(text) if part]


def _document_key(data: Any) -> PolicyKey | None:
    if not isinstance(data, dict):
        return None
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    return (str(data.get("kind", "")), str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


class PatchError(Exception):
    """The document an edit names cannot be patched (not found, or not the expected shape)."""


def _patch_document(spec: Any, edit: Edit) -> None:
    """Append the edit's entries to `spec` (a ruamel CommentedMap: `insert` keeps key order)."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(spec, CommentedMap):
        raise PatchError("spec is not a mapping")
    if edit.into is not None:
        entries = spec.get(edit.section)
        if not isinstance(entries, list) or edit.into >= len(entries) or not isinstance(entries[edit.into], dict):
            raise PatchError(f"spec.{edit.section}[{edit.into}] is not there")
        fqdns = entries[edit.into].get("toFQDNs")
        if not isinstance(fqdns, list):
            raise PatchError(f"spec.{edit.section}[{edit.into}].toFQDNs is not a list")
        fqdns.extend(dict(item) for item in edit.fqdns)
        return
    section = spec.get(edit.section)
    if section is None:
        # A new section goes after the other rule sections (or the selector), before `log` and
        # anything else, as people write a policy.
        keys = list(spec)
        order = ("endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny")
        position = max((keys.index(k) + 1 for k in order if k in spec), default=len(keys))
        spec.insert(position, edit.section, [])
        section = spec[edit.section]
    if not isinstance(section, list):
        raise PatchError(f"spec.{edit.section} is not a list")
    present = [_plain(entry) for entry in section]
    new = [entry for entry in edit.entries if _plain(entry) not in present]  # e.g. one DNS rule for two names
    if not new:
        return
    comment = _take_trailing_comment(section) if section else None
    section.extend(_commented(_quoted(entry)) for entry in new)
    if comment is not None:
        _give_trailing_comment(section, comment)


def _last_slots(node: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) of each last key or item on the way down to the last
    scalar under `node`: ruamel keeps the comment lines that follow a block on one of them (slot 2
    of a mapping key, slot 0 of a sequence item), the deepest first."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    found: list[tuple[Any, Any, int]] = []
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        if isinstance(node, CommentedMap):
            key: Any = list(node)[-1]
            found.append((node, key, 2))
        else:
            key = len(node) - 1
            found.append((node, key, 0))
        node = node[key]
    return found[::-1]


def _take_trailing_comment(section: Any) -> str | None:
    """The whole-line comments after the section's last entry (they introduce the key after the
    section: ruamel keeps them with the entry's last scalar), removed from there. Its end-of-line
    comment stays."""
    for container, key, position in _last_slots(section):
        child = container[key]
        ending = getattr(getattr(child, "ca", None), "end", None)
        if ending and any("#" in getattr(token, "value", "") for token in ending):
            child.ca.end = []  # comments after a nested block: ruamel keeps them at its end
            return "".join(" " * _column(token) + token.value for token in ending)
        entry = container.ca.items.get(key)
        token = entry[position] if entry and len(entry) > position else None
        value = getattr(token, "value", None)
        if token is None or not isinstance(value, str) or "\n" not in value:
            continue
        head, rest = value.split("\n", 1)
        if "#" not in rest:
            return None
        if head.strip():
            token.value = head + "\n"
        else:
            entry[position] = None
        return rest
    return None


def _column(token: Any) -> int:
    mark = getattr(token, "start_mark", None)
    return int(getattr(mark, "column", 0) or 0)


def _give_trailing_comment(section: Any, comment: str) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    slots = _last_slots(section)
    if not slots:
        return
    container, key, position = slots[0]
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    entry[position] = CommentToken("\n" + comment, CommentMark(0))


def _commented(value: Any) -> Any:
    """`value` as ruamel's round-trip types, which can carry comments."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        return CommentedMap((key, _commented(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(item) for item in value)
    return value


def _dump(yaml: Any, data: Any) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def _trailing_comments(document: str) -> tuple[str, str]:
    """(the document, the comment lines at its end that start in the first column): those
    introduce what follows the `---` (a section header), and stay after whatever is appended."""
    lines = document.splitlines(keepends=True)
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "".join(lines[:end]), "".join(lines[end:])


def apply_edit(text: str | None, edit: Edit) -> str:
    """`text` (the file, None when it does not exist yet) with `edit` applied: only the edited
    document is re-written; every other document stays byte for byte."""
    parts = _split_documents(text or "")
    for index, part in enumerate(parts):
        if _DOCUMENT_START.fullmatch(part) or edit.policy[2] not in part:
            continue  # (a document without the policy's name is not parsed)
        body, tail = _trailing_comments(part)
        yaml = _yaml(body)
        data = yaml.load(body)
        if _document_key(data) != edit.policy:
            continue
        _patch_document(data.get("spec"), edit)
        parts[index] = _dump(yaml, data) + tail
        return "".join(parts)
    if edit.new_policy is None:
        raise PatchError(f"{edit.file}: {'/'.join(edit.policy)} is not in the file")
    yaml = _yaml("")
    new = _dump(yaml, _quoted(edit.new_policy))
    header = "# Suggested by `hushflow suggest`: review before applying.\n"
    if not parts:
        return header + new
    body = "".join(parts)
    if not body.endswith("\n"):
        body += "\n"
    return body + "---\n" + new


def apply_edits(texts: Mapping[str, str | None], edits: Iterable[Edit]) -> dict[str, str]:
    """The files' new texts after `edits`, in order (several may edit one file)."""
    out: dict[str, str] = {}
    for edit in edits:
        current = out[edit.file] if edit.file in out else texts.get(edit.file)
        out[edit.file] = apply_edit(current, edit)
    return out


def unified_diff(path: str, old: str | None, new: str) -> str:
    old_lines = (old or "").splitlines(keepends=True)
    return "".join(difflib.unified_diff(
        old_lines, new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else path, tofile=path,
    ))


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


# -- verification --------------------------------------------------------------------------------

def proposed_policies(loaded: LoadedPolicies, patched: Mapping[str, str], options: BuildOptions) -> LoadedPolicies:
    """The policy set with the patched files' texts in place of theirs, loaded in memory (the
    patched documents come through stdin, the others from their files)."""
    unchanged = [path for path in loaded.files if path not in patched]
    stdin = io.StringIO("".join(text if text.endswith("\n") else text + "\n"
                                for text in (f"---\n{patched[p]}" for p in sorted(patched))))
    return load_policies([*unchanged, "-"], options, stdin=stdin)


@dataclass(slots=True)
class Verification:
    ok: bool
    reason: str  # why not (empty when ok)
    summary: ReplaySummary
    answered: int  # the group's flows that changed as the action wants


def _first(replays: Sequence[tuple[int, FlowReplay]], origins: Sequence[str]) -> str:
    index, replay = replays[0]
    return (f"{origins[index]}: {replay.workload} {replay.direction.lower()} {replay.peer} "
            f"{replay.port or ''} {replay.current.describe()} -> {replay.proposed.describe()}").replace("  ", " ")


def verify(action: str, group: DropGroup, current: PolicySet, proposed: PolicySet, recorded: RecordedFlows,
           *, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION, pods: PodIndex | None = None,
           tag: str | None = None) -> Verification:
    """Replay every recorded flow against `current` and `proposed`: an allow must turn each of the
    group's flows newly-allowed; a block each of them into a planned drop (tag-changed, with
    `tag`); and no other flow may change in any way."""
    expected = dict.fromkeys(group.indices, (action, tag))
    return verify_changes(expected, current, proposed, recorded, cilium_version=cilium_version, pods=pods)


def verify_changes(expected: Mapping[int, tuple[str, str | None]], current: PolicySet, proposed: PolicySet,
                   recorded: RecordedFlows, *, cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION,
                   pods: PodIndex | None = None) -> Verification:
    """`verify` for several groups at once: `expected` maps each answered flow's position to its
    (action, tag); every other flow must stay unchanged."""
    replayer = Replayer(current, proposed, cilium_version=cilium_version, pods=pods)
    replays: list[FlowReplay] = []
    missed: list[tuple[int, FlowReplay]] = []
    others: list[tuple[int, FlowReplay]] = []
    not_replayed = 0
    answered = 0
    for index, event in enumerate(recorded.events):
        replay = replayer.replay(event)
        wants = expected.get(index)
        if replay is None:
            if wants is not None:
                not_replayed += 1
            continue
        replays.append(replay)
        if wants is not None:
            action, tag = wants
            wanted = (replay.change is Change.NEWLY_ALLOWED if action == ALLOW
                      else replay.change is Change.TAG_CHANGED and bool(tag) and tag in replay.proposed.tags)
            if wanted:
                answered += 1
            else:
                missed.append((index, replay))
        elif replay.change is not Change.UNCHANGED:
            others.append((index, replay))
    summary = summarize(replays)
    reasons: list[str] = []
    if others:
        kinds = Counter(replay.change.value for _, replay in others)
        reasons.append("it would also change " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
                       + f" flow(s) beyond the drops it answers (first: {_first(others, recorded.origins)})")
    if missed:
        actions = {action for action, _ in expected.values()}
        tags = sorted({tag or "" for action, tag in expected.values() if action == BLOCK})
        want = "newly allowed" if actions == {ALLOW} else f"a planned drop tagged {', '.join(tags)}"
        reasons.append(f"{len(missed)} of the group's flows would not be {want} "
                       f"(first: {_first(missed, recorded.origins)})")
    if not_replayed:
        reasons.append(f"{not_replayed} of the group's flows cannot be replayed")
    return Verification(not reasons, "; ".join(reasons), summary, answered)


# -- the job ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Suggestion:
    action: str
    group: DropGroup
    edit: Edit | None
    verified: bool
    reason: str  # why it is not a fix ("" when verified)
    diff: str = ""
    patched: dict[str, str] = field(default_factory=dict)  # file -> new text (this edit alone)
    originals: dict[str, str | None] = field(default_factory=dict)
    summary: ReplaySummary | None = None
    answered: int = 0
    shared_with: list[DropGroup] = field(default_factory=list)  # groups the same edit answers too

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "verified": self.verified}
        if self.shared_with:
            out["shared_with"] = [group.describe() for group in self.shared_with]
        if self.reason:
            out["reason"] = self.reason
        if self.edit is not None:
            kind, namespace, name = self.edit.policy
            out["file"] = self.edit.file
            out["new_file"] = self.originals.get(self.edit.file) is None
            out["policy"] = {"kind": kind, "namespace": namespace, "name": name}
            out["section"] = self.edit.section
            if self.edit.into is not None:
                out["into"] = self.edit.into
                out["fqdns"] = [dict(f) for f in self.edit.fqdns]
            else:
                out["rules"] = [_plain(entry) for entry in self.edit.entries]
        if self.verified:
            out["diff"] = self.diff
        if self.summary is not None:
            out["replay"] = {
                "counts": {change.value: self.summary.counts.get(change, 0) for change in Change},
                "answered": self.answered,
                "changed": [g.as_dict() for g in self.summary.sorted_groups(include_unchanged=False)],
            }
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, int | float | bool) or value is None else str(value)


ALREADY_ALLOWED = ("these policies already allow the flows Cilium dropped: the cluster runs other policies "
                   "(or the drops were recorded before a change); no change to these files answers them")


@dataclass(slots=True)
class SuggestOptions:
    policies: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    from_events: tuple[str, ...] = ()
    actions: tuple[str, ...] = ACTIONS
    expected_logs: tuple[str, ...] | None = None
    block_tag: str | None = None
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    cluster_name: str | None = None
    default_local_cluster: bool | None = None
    pods: PodIndex | None = None


@dataclass(slots=True)
class SuggestResult:
    suggestions: list[Suggestion]
    scan: DropScan
    recorded: RecordedFlows
    loaded: LoadedPolicies
    write_refused: str = ""  # why --write wrote nothing (the suggestions together failed the replay)

    @property
    def bad_input(self) -> int:
        return self.recorded.bad + len(self.scan.bad)

    def bad_lines(self) -> list[str]:
        return self.recorded.stats.report_lines() + [f"warning: {bad}" for bad in self.scan.bad]

    @property
    def every_group_fixed(self) -> bool:
        """Every suggestion asked for was verified (and, with --write, written)."""
        return not self.write_refused and all(suggestion.verified for suggestion in self.suggestions)

    def by_group(self) -> Iterator[tuple[DropGroup, list[Suggestion]]]:
        seen: dict[int, list[Suggestion]] = {}
        order: list[DropGroup] = []
        for suggestion in self.suggestions:
            key = id(suggestion.group)
            if key not in seen:
                seen[key] = []
                order.append(suggestion.group)
            seen[key].append(suggestion)
        for group in order:
            yield group, seen[id(group)]


def _build_options(options: SuggestOptions) -> BuildOptions:
    if options.cluster_name is None:
        return BuildOptions.for_cluster(options.cilium_version, default_local_cluster=options.default_local_cluster)
    return BuildOptions.for_cluster(options.cilium_version, options.cluster_name, options.default_local_cluster)


def _block_tag(loaded: LoadedPolicies, edit: Edit, options: SuggestOptions) -> str | None:
    if edit.new_policy is not None:
        return str(edit.new_policy["spec"]["log"]["value"])
    for policy in loaded.policy_set.policies:
        if (policy.ref.kind, policy.ref.namespace, policy.ref.name) == edit.policy and policy.rules:
            return policy.rules[0].log_value
    return options.block_tag


def suggest(options: SuggestOptions, progress: ProgressReporter = NO_PROGRESS) -> SuggestResult:
    """Every unexpected drop's suggestions, each verified by a replay (`progress` shows the flows
    read). Raises `PolicyError` for policies a job refuses, `SuggestError` for input that cannot be
    read at all."""
    build = _build_options(options)
    loaded = load_job_policies(options.policies, build)
    recorded = (read_drop_events(options.from_events) if options.from_events
                else read_recorded_flows(options.inputs, progress))
    scan = find_drop_groups(loaded.policy_set, recorded, expected_logs=options.expected_logs,
                            cilium_version=options.cilium_version, pods=options.pods)
    suggestions: list[Suggestion] = []
    for group in scan.groups:
        for action in options.actions:
            if group.allowed_now == len(group.indices):
                suggestions.append(Suggestion(action, group, None, False, ALREADY_ALLOWED))
                continue
            if action == ALLOW:
                made = allow_edit(loaded, recorded, group, options.policies)
            else:
                made = block_edit(loaded, recorded, group, options.policies, options.block_tag)
            if isinstance(made, str):
                suggestions.append(Suggestion(action, group, None, False, made))
                continue
            suggestions.append(_verified(action, group, made, loaded, recorded, build, options))
    _share_identical_edits(suggestions, loaded, recorded, build, options)
    return SuggestResult(suggestions, scan, recorded, loaded)


def _edit_key(action: str, edit: Edit) -> str:
    return orjson.dumps([action, edit.file, list(edit.policy), edit.section, _plain(list(edit.entries)), edit.into,
                         _plain(list(edit.fqdns))], option=orjson.OPT_SORT_KEYS).decode()


def _share_identical_edits(suggestions: list[Suggestion], loaded: LoadedPolicies, recorded: RecordedFlows,
                           build: BuildOptions, options: SuggestOptions) -> None:
    """Groups whose suggestions are one and the same edit (workloads a policy selects together, such
    as a Deployment and its canary sharing the label the policy selects by, dropped on the same peer
    and port): each failed alone because the edit also answers the others. Replayed once for all
    of them, the edit is their common fix when it changes their flows as wanted and nothing else."""
    buckets: dict[str, list[Suggestion]] = {}
    for suggestion in suggestions:
        if suggestion.edit is not None and not suggestion.verified and suggestion.summary is not None:
            buckets.setdefault(_edit_key(suggestion.action, suggestion.edit), []).append(suggestion)
    for members in buckets.values():
        if len(members) < 2:
            continue
        first = members[0]
        assert first.edit is not None
        proposed = proposed_policies(loaded, first.patched, build)
        tag = _block_tag(loaded, first.edit, options) if first.action == BLOCK else None
        expected = {index: (first.action, tag) for member in members for index in member.group.indices}
        verification = verify_changes(expected, loaded.policy_set, proposed.policy_set, recorded,
                                      cilium_version=options.cilium_version, pods=options.pods)
        if not verification.ok:
            continue
        for member in members:
            member.verified, member.reason = True, ""
            member.summary, member.answered = verification.summary, verification.answered
            member.shared_with = [other.group for other in members if other is not member]


def _verified(action: str, group: DropGroup, edit: Edit, loaded: LoadedPolicies, recorded: RecordedFlows,
              build: BuildOptions, options: SuggestOptions) -> Suggestion:
    original = read_text(edit.file)
    originals = {edit.file: original}
    try:
        patched = apply_edits(originals, [edit])
    except PatchError as err:
        return Suggestion(action, group, edit, False, f"cannot patch {edit.file}: {err}", originals=originals)
    from hushflow.policy.diagnostics import Severity

    proposed = proposed_policies(loaded, patched, build)
    errors = [d for d in proposed.diagnostics if d.level == Severity.ERROR and d.code != "HF020"]
    before = {(d.code, d.message) for d in loaded.diagnostics if d.level == Severity.ERROR}
    new_errors = [d for d in errors if (d.code, d.message) not in before]
    if new_errors:
        first = new_errors[0]
        why = f"the patched policy does not load: [{first.code}] {first.message}"
        return Suggestion(action, group, edit, False, why, patched=patched, originals=originals)
    tag = _block_tag(loaded, edit, options) if action == BLOCK else None
    if tag is not None and options.expected_logs is not None and tag not in options.expected_logs:
        why = (f"the deny's tag {tag} is not one of --expected-log ({', '.join(options.expected_logs)}): "
               "the next drop would still be unexpected")
        return Suggestion(action, group, edit, False, why, patched=patched, originals=originals)
    verification = verify(action, group, loaded.policy_set, proposed.policy_set, recorded,
                          cilium_version=options.cilium_version, pods=options.pods, tag=tag)
    diff = unified_diff(edit.file, original, patched[edit.file])
    return Suggestion(action, group, edit, verification.ok, verification.reason, diff, patched, originals,
                      verification.summary, verification.answered)


def run_suggest(options: SuggestOptions, *, write: bool = False,
                progress: ProgressReporter = NO_PROGRESS) -> tuple[SuggestResult, list[str]]:
    """`suggest`, and with `write` the verified suggestions applied (`write_suggestions`)."""
    if options.block_tag is not None and not _TAG.fullmatch(options.block_tag):
        raise SuggestError(f"--block-tag {options.block_tag!r}: a log.value is 1 to 32 printable ASCII characters")
    if write and len(options.actions) != 1:
        raise SuggestError("--write applies one fix per drop: choose --action allow or --action block")
    result = suggest(options, progress)
    if not write:
        return result, []
    together = verify_together(result, options)
    if together is not None and not together.ok:
        result.write_refused = f"the verified suggestions together are not a fix, nothing written: {together.reason}"
        return result, []
    return result, write_suggestions(result.suggestions)


def verify_together(result: SuggestResult, options: SuggestOptions) -> Verification | None:
    """The verified suggestions applied all at once, replayed like one (None when there is at most
    one: it was verified alone)."""
    chosen = [s for s in result.suggestions if s.verified and s.edit is not None]
    if len(chosen) < 2:
        return None
    edits = [s.edit for s in chosen if s.edit is not None]
    patched = apply_edits({edit.file: read_text(edit.file) for edit in edits}, edits)
    build = _build_options(options)
    proposed = proposed_policies(result.loaded, patched, build)
    expected: dict[int, tuple[str, str | None]] = {}
    for suggestion in chosen:
        assert suggestion.edit is not None
        tag = _block_tag(result.loaded, suggestion.edit, options) if suggestion.action == BLOCK else None
        expected.update(dict.fromkeys(suggestion.group.indices, (suggestion.action, tag)))
    return verify_changes(expected, result.loaded.policy_set, proposed.policy_set, result.recorded,
                          cilium_version=options.cilium_version, pods=options.pods)


_TAG = re.compile(r"[ -~]{1,32}")


def write_suggestions(suggestions: Sequence[Suggestion]) -> list[str]:
    """Apply every verified suggestion to its file (several edits of one file in order), each file
    replaced atomically; returns the files written."""
    from hushflow.enforce.atomic_file import write_atomic

    edits = [s.edit for s in suggestions if s.verified and s.edit is not None]
    texts = {edit.file: read_text(edit.file) for edit in edits}
    new = apply_edits(texts, edits)
    for path in sorted(new):
        write_atomic(path, new[path].encode("utf-8"))
    return sorted(new)


# -- output ---------------------------------------------------------------------------------------

def _time(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _counts(summary: ReplaySummary) -> str:
    return ", ".join(f"{summary.counts[c]} {c.value}" for c in Change if summary.counts.get(c))


def render_text(result: SuggestResult, written: Sequence[str] = ()) -> str:
    """For people. Names, labels and reasons come from the flows and the files: each line is
    made printable (`printable`), so no control character of theirs reaches a terminal raw."""
    out: list[str] = []
    scan = result.scan
    out.append(f"{scan.unexpected} unexpected drop(s) in {len(scan.groups)} group(s); "
               f"{scan.planned} planned drop(s) left alone")
    numbers = {id(group): number for number, (group, _) in enumerate(result.by_group(), 1)}
    for number, (group, suggestions) in enumerate(result.by_group(), 1):
        flows = len(group.indices)
        out.append("")
        out.append(f"[{number}] {group.describe()}: {flows} flow(s), {_time(group.first)} .. {_time(group.last)}, "
                   f"first at {group.origin}")
        for suggestion in suggestions:
            if suggestion.edit is None:
                out.append(f"  {suggestion.action}: no suggestion: {suggestion.reason}")
                continue
            summary = suggestion.summary
            replay = f"replay: {_counts(summary)}" if summary is not None else "replay: not run"
            if suggestion.verified:
                out.append(f"  {suggestion.action}: {suggestion.edit.describe()}")
                if suggestion.shared_with:
                    others = ", ".join(f"[{numbers[id(other)]}]" for other in suggestion.shared_with)
                    out.append(f"    the same change answers {others} too: the policy selects those workloads together")
                out.append(f"    {replay}: verified (the {suggestion.answered} drop(s) answered, nothing else changes)")
                out.extend("    " + line for line in suggestion.diff.rstrip("\n").split("\n"))
            else:
                out.append(f"  {suggestion.action}: not a fix: {suggestion.reason}")
                if summary is not None:
                    out.append(f"    {replay}")
    if written:
        out.append("")
        out.extend(f"wrote {path}" for path in written)
    if result.write_refused:
        out.append("")
        out.append(result.write_refused)
    return "".join(printable(line) + "\n" for line in out)


def render_json(result: SuggestResult, written: Sequence[str] = ()) -> str:
    groups = []
    for group, suggestions in result.by_group():
        groups.append({
            "workload": group.key,
            "direction": group.direction.upper(),
            "peer": {"kind": group.peer.kind, "value": group.peer.value,
                     **({"labels": dict(group.peer.labels)} if group.peer.labels else {})},
            "port": group.port_text if group.protocol else "",
            "flows": len(group.indices),
            "first": _time(group.first),
            "last": _time(group.last),
            "origin": group.origin,
            "suggestions": [s.as_dict() for s in suggestions],
        })
    document = {
        "unexpected_drops": result.scan.unexpected,
        "planned_drops": result.scan.planned,
        "bad_input": result.bad_input,
        "groups": groups,
        "written": list(written),
        **({"write_refused": result.write_refused} if result.write_refused else {}),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


__all__ = [
    "ACTIONS", "ALLOW", "BLOCK", "PER_POD_LABELS", "DropGroup", "Edit", "SuggestError", "SuggestOptions",
    "SuggestResult", "Suggestion", "allow_edit", "apply_edit", "apply_edits", "block_edit",
    "find_drop_groups", "read_drop_events", "read_recorded_flows", "render_json",
    "render_text", "run_suggest", "stable_labels", "suggest", "verify", "write_suggestions",
]
