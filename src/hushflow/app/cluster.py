"""The apply step: hushflow's objects in a Kubernetes cluster, for `compile --apply` and `run --apply`.

Both jobs connect the same way (a kubeconfig, else the in-cluster service account), label what
they write `app.kubernetes.io/managed-by=hushflow` and, explicitly, with its owner
(`hushflow.io/owner=compile` for `compile --apply`, `run.<instance>` for a `run --apply`), and
apply, prune and delete only what carries their own owner label: `compile --apply` never prunes
the groups a running daemon keeps, nor one node's daemon another's. Both read back
what they applied before (the cluster is state too: a pod that lost its state file takes its
learned IPs back from the CiliumCIDRGroups it applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hushflow.enforce.compile import OWNER_LABEL, owner_of
from hushflow.enforce.kube import (
    DEFAULT_MANAGED_SELECTOR,
    ApplyResult,
    KubeApiError,
    apply_objects,
    delete_named,
    list_managed,
)
from hushflow.enforce.kube_config import KubeConfigError, load_kube_api

GROUP_KIND = "CiliumCIDRGroup"


class ClusterError(Exception):
    """The cluster cannot be reached or refused a request, worded for the user."""


@dataclass(frozen=True, slots=True)
class Cluster:
    api: Any  # a kubernetes.client.ApiClient
    selector: str  # the labels of the objects this hushflow instance owns (equality terms)

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None = None, *, instance: str = "") -> Cluster:
        """A kubeconfig file (and context), or the in-cluster service account when none is given;
        `instance` names the `run` instance (empty: `compile`), whose objects this one owns."""
        try:
            api = load_kube_api(kubeconfig, context, in_cluster=kubeconfig is None)
        except KubeConfigError as exc:
            raise ClusterError(str(exc)) from None
        return cls(api, f"{DEFAULT_MANAGED_SELECTOR},{OWNER_LABEL}={owner_of(instance)}")

    def applied_groups(self) -> list[dict[str, Any]]:
        """The CiliumCIDRGroups this instance applied earlier (their IPs seed the state)."""
        try:
            return list_managed(self.api, GROUP_KIND, self.selector)
        except KubeApiError as exc:
            raise ClusterError(f"cannot read the CiliumCIDRGroups hushflow already applied: {exc}") from None

    def apply(self, objects: Sequence[dict[str, Any]], *, prune: bool = True, dry_run: bool = False) -> ApplyResult:
        """Server-side apply `objects`; with `prune`, delete this instance's CIDR groups not among them."""
        try:
            return apply_objects(
                self.api, list(objects), managed_selector=self.selector, dry_run=dry_run,
                prune_kinds=(GROUP_KIND,) if prune else (),
            )
        except KubeApiError as exc:
            raise ClusterError(f"cannot reach the Kubernetes API: {exc}") from None

    def delete_groups(self, names: Sequence[str]) -> ApplyResult:
        """Delete this instance's CIDR groups named `names` (another owner's are refused)."""
        try:
            return delete_named(self.api, GROUP_KIND, list(names), managed_selector=self.selector)
        except KubeApiError as exc:
            raise ClusterError(f"cannot reach the Kubernetes API: {exc}") from None
