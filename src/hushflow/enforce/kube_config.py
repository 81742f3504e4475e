"""The Kubernetes client configuration for `hushflow compile --apply` and the daemon.

`load_kube_api` builds an official `kubernetes.client.ApiClient` from a kubeconfig file or, in a
pod, its service account, the way kubectl and client-go find them. Every way this can fail is a
`KubeConfigError` whose message says what to pass instead (`--kubeconfig`, `--context`); what
the client then does with the API is `hushflow.enforce.kube`'s job.
"""

from __future__ import annotations

import os

import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, list_kube_config_contexts, load_incluster_config, load_kube_config

__all__ = ["KubeConfigError", "load_kube_api"]


class KubeConfigError(Exception):
    """No usable Kubernetes client configuration; the message says what to pass instead."""


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
