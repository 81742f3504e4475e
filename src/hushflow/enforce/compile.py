"""Compile FQDN denies into what Cilium runs: `toCIDRSet` + `cidrGroupSelector` + CiliumCIDRGroups.

Each `egressDeny` entry with `toFQDNs` becomes, in the same policy, an `egressDeny` entry with
`toCIDRSet: [{cidrGroupSelector: {matchLabels: {hushflow.io/deny: <deny id>}}}]` and the same
`toPorts`; the policy's `log` stays. Nothing else in the policy changes. The IPs live in
CiliumCIDRGroup objects labelled with that deny id, `/32` and `/128` entries, sorted, at most
`group_cap` per group. Groups are sharded by a hash of the IP (the lowest bits of its CRC-32,
as many bits as needed to keep every shard under the cap), so learning one IP rewrites one group.
"""

from __future__ import annotations

import copy
import ipaddress
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hushflow.enforce.denies import FqdnDeny, fit_label, fqdn_denies
from hushflow.enforce.state import DenyState, ip_sort_key
from hushflow.policy.loading import LoadedPolicies
from hushflow.policy.yamlsource import Manifest

MANAGED_BY = {"app.kubernetes.io/managed-by": "hushflow"}
DENY_LABEL = "hushflow.io/deny"
#: Who wrote an object, and so who may prune it: `compile` for `hushflow compile`, `run.<instance>`
#: for a `hushflow run` (`run.run` without --instance). Each writer prunes only its own.
OWNER_LABEL = "hushflow.io/owner"
COMPILE_OWNER = "compile"
#: The instance name of a `hushflow run` started without --instance (relay mode).
DEFAULT_RUN_INSTANCE = "run"
DEFAULT_GROUP_CAP = 1000
_MAX_SHARD_BITS = 12
_LIVE_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


@dataclass(frozen=True, slots=True)
class CompileOptions:
    group_cap: int = DEFAULT_GROUP_CAP


@dataclass(slots=True)
class CompileOutput:
    policies: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    denies: list[FqdnDeny] = field(default_factory=list)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [*self.policies, *self.groups]


def _cidr(ip: str) -> str:
    return f"{ip}/32" if ipaddress.ip_address(ip).version == 4 else f"{ip}/128"


def shard_bits(ips: Sequence[str], cap: int) -> int:
    """The fewest hash bits that keep every shard at or under `cap` IPs."""
    for bits in range(_MAX_SHARD_BITS + 1):
        counts: dict[int, int] = {}
        for ip in ips:
            shard = zlib.crc32(ip.encode()) & ((1 << bits) - 1)
            counts[shard] = counts.get(shard, 0) + 1
        if not counts or max(counts.values()) <= cap:
            return bits
    return _MAX_SHARD_BITS


def shard_of(ip: str, bits: int) -> int:
    return zlib.crc32(ip.encode()) & ((1 << bits) - 1)


INSTANCE_LABEL = "hushflow.io/instance"


def owner_of(instance: str) -> str:
    """The owner label value of a writer: `compile` (no instance), else `run.<instance>`."""
    return fit_label(f"run.{instance}") if instance else COMPILE_OWNER


def group_name(deny_id: str, shard: int, bits: int, instance: str = "") -> str:
    """`hushflow.<deny>[.<instance>][.<shard>]`: stable, and distinct per writing instance (a long
    instance name is shortened with a hash, so the name stays within Kubernetes' 253 characters)."""
    base = f"hushflow.{deny_id}" + (f".{fit_label(instance)}" if instance else "")
    return f"{base}.{shard:0{max(1, (bits + 3) // 4)}x}" if bits else base


def group_object(
    deny: FqdnDeny, shard: int, bits: int, members: Iterable[str], instance: str = ""
) -> dict[str, Any]:
    """The CiliumCIDRGroup of one shard of a deny.

    `instance` names the writer when several hushflow instances (one per node) fill groups
    for the same deny: each writes only its own groups, and the policy's cidrGroupSelector,
    which matches the deny label alone, selects all of them together.
    """
    ref = deny.rule.policy
    labels = {**MANAGED_BY, OWNER_LABEL: owner_of(instance), DENY_LABEL: deny.id,
              "hushflow.io/policy": fit_label(ref.name)}
    if instance:
        labels[INSTANCE_LABEL] = fit_label(instance)
    if ref.namespace:
        labels["hushflow.io/policy-namespace"] = ref.namespace
    annotations = {
        "hushflow.io/rule": deny.describe(),
        "hushflow.io/names": ", ".join(str(selector) for selector in deny.selectors),
        "hushflow.io/shard": f"{shard + 1}/{1 << bits}",
    }
    if deny.rule.log_value:
        annotations["hushflow.io/log"] = deny.rule.log_value
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumCIDRGroup",
        "metadata": {
            "name": group_name(deny.id, shard, bits, instance),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"externalCIDRs": [_cidr(ip) for ip in sorted(members, key=ip_sort_key)]},
    }


def shard_members(ips: Iterable[str], bits: int) -> dict[int, set[str]]:
    shards: dict[int, set[str]] = {shard: set() for shard in range(1 << bits)}
    for ip in ips:
        shards[shard_of(ip, bits)].add(ip)
    return shards


def cidr_groups(deny: FqdnDeny, ips: Sequence[str], cap: int = DEFAULT_GROUP_CAP) -> list[dict[str, Any]]:
    """The CiliumCIDRGroup objects holding `ips` for one deny (one empty group when none)."""
    bits = shard_bits(ips, cap)
    return [group_object(deny, shard, bits, members) for shard, members in sorted(shard_members(ips, bits).items())]


def _compiled_policy(manifest: Manifest, denies: list[FqdnDeny]) -> dict[str, Any]:
    data = copy.deepcopy(manifest.data)
    data.pop("status", None)
    metadata = data.setdefault("metadata", {})
    for key in _LIVE_METADATA:
        metadata.pop(key, None)
    metadata["labels"] = {**(metadata.get("labels") or {}), **MANAGED_BY, OWNER_LABEL: COMPILE_OWNER}
    location = manifest.locate()
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        "hushflow.io/compiled-from": f"{location.file}:{location.line}",
    }
    for deny in denies:
        path = deny.peer.where.path
        entry = data
        for part in path:
            entry = entry[part]
        entry.pop("toFQDNs", None)
        # Cilium: a deny entry takes one L3 kind; the CIDR groups stand in for the names.
        entry["toCIDRSet"] = [{"cidrGroupSelector": {"matchLabels": {DENY_LABEL: deny.id}}}]
        # Keep the user's key order readable: L3 first, then toPorts.
        if "toPorts" in entry:
            entry["toPorts"] = entry.pop("toPorts")
    return data


def compile_policies(
    loaded: LoadedPolicies, state: DenyState, options: CompileOptions | None = None
) -> CompileOutput:
    """The Cilium-runnable objects for every policy that has FQDN denies, with their groups."""
    options = options or CompileOptions()
    output = CompileOutput(denies=fqdn_denies(loaded.policy_set))
    owner_of = {id(rule): policy for policy in loaded.policy_set.policies for rule in policy.rules}
    by_policy: dict[int, list[FqdnDeny]] = {}
    for deny in output.denies:
        by_policy.setdefault(id(owner_of[id(deny.rule)]), []).append(deny)
    for policy in loaded.policy_set.policies:
        denies = by_policy.get(id(policy))
        if denies:
            output.policies.append(_compiled_policy(loaded.raw[id(policy)], denies))
    for deny in output.denies:
        output.groups.extend(cidr_groups(deny, state.ips(deny.id), options.group_cap))
    output.policies.sort(key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    output.groups.sort(key=lambda o: o["metadata"]["name"])
    return output
