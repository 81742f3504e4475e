"""deploy/kubernetes read as `kubectl apply -k` would apply it, without kubectl.

The kustomizations use `resources` only (files and directories with their own
kustomization.yaml), so rendering them is reading those files in order; `render` refuses
anything else, and what kustomize itself refuses (a missing resource, a file outside its
kustomization's directory, a directory without a kustomization, the same object twice), so a
kustomization these tests accept builds with kustomize too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KUBERNETES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MODES = ("relay", "per-node")
WORKLOAD_KIND = {"relay": "Deployment", "per-node": "DaemonSet"}
KUSTOMIZATION_API = ("kustomize.config.k8s.io/v1beta1", "Kustomization")


class KustomizeError(Exception):
    """What kustomize would refuse to build, or a field this renderer does not implement."""


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES_DIR.rglob("*.yaml") if path.name != "kustomization.yaml")


def object_id(item: dict[str, Any]) -> tuple[str, str, str, str]:
    """kustomize's resource id: group/version, kind, namespace, name."""
    metadata = item.get("metadata") or {}
    return item["apiVersion"], item["kind"], metadata.get("namespace", ""), metadata["name"]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k directory` applies."""
    objects: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str, str], Path] = {}
    for path, item in _resources(directory.resolve()):
        key = object_id(item)
        if key in seen:
            raise KustomizeError(f"{path}: {key} is already in {seen[key]}")
        seen[key] = path
        objects.append(item)
    return objects


def _resources(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    file = directory / "kustomization.yaml"
    if not file.is_file():
        raise KustomizeError(f"{directory}: a directory resource needs a kustomization.yaml")
    kustomization = yaml.safe_load(file.read_text())
    if (kustomization.get("apiVersion"), kustomization.get("kind")) != KUSTOMIZATION_API:
        raise KustomizeError(f"{file}: not a {KUSTOMIZATION_API[0]} Kustomization")
    unknown = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unknown:
        raise KustomizeError(f"{file}: {sorted(unknown)} are not rendered here: extend tests/deploy/manifests.py")
    found: list[tuple[Path, dict[str, Any]]] = []
    listed = kustomization.get("resources") or []
    if len(set(listed)) != len(listed):
        raise KustomizeError(f"{file}: a resource is listed twice")
    for resource in listed:
        path = (directory / resource).resolve()
        if path.is_dir():
            found.extend(_resources(path))
        elif path.is_file():
            # kustomize's default load restrictor: files only from the kustomization's own tree.
            if directory not in path.parents:
                raise KustomizeError(f"{file}: {resource} is outside {directory}")
            found.extend((path, item) for item in documents(path))
        else:
            raise KustomizeError(f"{file}: {resource} does not exist")
    return found


def mode(name: str) -> list[dict[str, Any]]:
    return render(KUBERNETES_DIR / name)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [item for item in objects if item["kind"] == kind]
    return found


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [item for item in objects if item["kind"] == kind and item["metadata"]["name"] == name]
    return found


def workload(name: str) -> dict[str, Any]:
    return one(mode(name), WORKLOAD_KIND[name])


def containers(item: dict[str, Any]) -> list[dict[str, Any]]:
    spec = item["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads() -> list[tuple[str, dict[str, Any]]]:
    """Every object with a pod template in deploy/kubernetes, with its file."""
    kinds = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}
    return [(str(path.relative_to(KUBERNETES_DIR)), item)
            for path in manifest_files() for item in documents(path) if item["kind"] in kinds]
