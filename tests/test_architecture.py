"""The rules of the house (docs/architecture.md) hold, and the tool that checks them would notice
a break: `lint-imports` (import-linter, the real tool) on the tree, then on a copy with one
forbidden import planted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "hushflow", tmp_path / "src" / "hushflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"), symlinks=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("sinks/records.py", "from hushflow.engine import attribution", "Sinks take finished values"),
        ("engine/explain.py", "from hushflow.app import daemon", "Nothing but cli"),
        ("policy/model.py", "from hushflow.flow import connection", "Policy knows no flows"),
        ("flow/reader.py", "from hushflow.filter import flow_filter", "Layers"),
        ("enforce/state.py", "from hushflow.sinks import records", "Layers"),
        ("flow/times.py", "import pytest", "A normal install imports nothing"),
    ],
)
def test_a_planted_violation_breaks_a_contract(tree: Path, module: str, planted: str, broken: str) -> None:
    path = tree / "src" / "hushflow" / module
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text
    path.write_text(text.replace(marker, f"{marker}\n{planted}  # planted\n", 1))
    done = lint_imports(tree)
    assert done.returncode != 0
    report = done.stdout.split("Broken contracts", 1)[-1]
    assert broken in report, done.stdout
