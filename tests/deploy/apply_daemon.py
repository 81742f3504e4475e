"""`hushflow run --apply --watch-pods` against the Kubernetes API server double, for the deploy
tests that check the manifests against what the daemon really sends and writes (RBAC, admission)."""

from __future__ import annotations

from pathlib import Path

import yaml

from hushflow.app.daemon import Daemon, RunOptions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"


def run_apply(tmp_path: Path, url: str, *, instance: str, group_cap: int) -> None:
    """One daemon run over the example's flows, applying its CIDR groups to the server at `url`."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "hushflow", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "hushflow"}}],
    }))
    daemon = Daemon(RunOptions(
        policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),), apply=True,
        kubeconfig=str(kubeconfig), instance=instance, resolve=False, clock="flows", group_cap=group_cap,
        watch_pods=True,
    ))
    assert daemon.run() == 0
