"""The bundled example ships with the package: `hushflow run` with no source finds it installed."""

from __future__ import annotations

from pathlib import Path

from hushflow.app.example import example_dir

REPOSITORY_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"


def test_the_installed_example_is_the_repositorys():
    example = example_dir()
    assert example is not None
    assert (example / "flows.jsonl").read_bytes() == (REPOSITORY_EXAMPLE / "flows.jsonl").read_bytes()
    shipped = sorted(path.name for path in (example / "policies").glob("*.yaml"))
    written = sorted(path.name for path in (REPOSITORY_EXAMPLE / "policies").glob("*.yaml"))
    assert shipped == written, "add a link in src/hushflow/example/policies/ for every example policy"
    for name in shipped:
        assert (example / "policies" / name).read_bytes() == (REPOSITORY_EXAMPLE / "policies" / name).read_bytes()


def test_run_with_no_source_replays_the_installed_example(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "hushflow", "run", "--metrics-address", "127.0.0.1:0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"replaying the bundled example {example_dir()}" in done.stderr
    assert "25 flows, 17 policy verdicts/drops attributed, 3 IPs learned" in done.stdout
    assert sorted(path.name for path in (tmp_path / "hushflow-demo").rglob("*.yaml"))  # the CIDR groups
