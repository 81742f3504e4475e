"""The public API: every name in `hushflow.__all__` is there, and `import hushflow` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hushflow


@pytest.mark.parametrize("name", hushflow.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(hushflow, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        hushflow.nothing_here  # noqa: B018


def test_import_hushflow_loads_no_stage():
    code = "import sys, hushflow; print(sorted(m for m in sys.modules if m.startswith('hushflow.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_story_in_the_docstring_runs(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "telemetry-block"
    loaded = hushflow.load_policies([str(example / "policies")], hushflow.BuildOptions())
    attributor = hushflow.Attributor(loaded.policy_set)
    keep = hushflow.compile_filters([{"verdict": ["DROPPED"]}], [])
    tags = []
    for event in hushflow.FlowReader([str(example / "flows.jsonl")]):
        findings = attributor.observe(event.data)
        if findings is not None and keep(event.data):
            tags.append(findings.policy_log)
    assert ("app-explicit-traffic-blocked",) in tags
