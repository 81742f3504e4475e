"""deploy/prometheus: the rules load, every alert is tested firing and not firing, and the rules
only select metrics of the contract (src/hushflow/sinks/metric_names.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hushflow.sinks.metric_names import contract_series_names
from tests.deploy.promql import metric_names, require_tool, selects_by_name_label

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "hushflow-rules.yaml"
UNIT_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yaml"))
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up"})


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR, check=False)


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = _run([promtool, "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    assert UNIT_TEST_FILES, "no promtool unit tests in deploy/prometheus/tests/"
    result = _run([promtool, "test", "rules", *map(str, UNIT_TEST_FILES)])
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def test_unit_tests_use_the_rules_file() -> None:
    for path in UNIT_TEST_FILES:
        document = yaml.safe_load(path.read_text())
        rule_files = [(path.parent / name).resolve() for name in document["rule_files"]]
        assert rule_files == [RULES_FILE], f"{path.name}: rule_files must be [../{RULES_FILE.name}]"


def _alert_tests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for alert_test in test.get("alert_rule_test", []):
                found.append((path.name, alert_test))
    return found


@pytest.mark.parametrize("alert", [rule["alert"] for rule in _alerts()])
def test_every_alert_is_tested_firing_and_not_firing(alert: str) -> None:
    cases = [case for _file, case in _alert_tests() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert}: no promtool test where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no promtool test where it stays quiet"


def test_unit_tests_name_only_existing_alerts() -> None:
    names = {rule["alert"] for rule in _alerts()}
    unknown = sorted({case["alertname"] for _file, case in _alert_tests()} - names)
    assert not unknown, f"promtool tests for alerts that do not exist: {unknown}"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule.get("alert") or rule["record"])
def test_rules_select_only_contract_metrics(rule: dict[str, Any]) -> None:
    recorded = {other["record"] for other in _rules() if "record" in other}
    allowed = contract_series_names() | PROMETHEUS_SERIES | recorded
    assert not selects_by_name_label(rule["expr"])
    unknown = sorted(metric_names(rule["expr"]) - allowed)
    assert not unknown, f"{rule.get('alert') or rule['record']}: metrics outside the contract: {unknown}"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_says_what_to_do(alert: dict[str, Any]) -> None:
    # The kube-prometheus / kubernetes-mixin conventions: severity, a one-line summary without
    # templating (the labels go in the description), a description, a runbook_url.
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    summary = alert["annotations"]["summary"]
    assert summary.strip() and "\n" not in summary.strip() and "{{" not in summary, summary
    assert len(alert["annotations"]["description"]) > 100, "the description must say how to investigate"
    assert alert["annotations"]["runbook_url"].startswith("https://")
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}


# Alerts that fire on their first evaluation, and why: a loss of flows is never a flap.
FIRE_AT_ONCE = {"HushflowHubbleLostEvents"}


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_waits_before_firing(alert: dict[str, Any]) -> None:
    assert ("for" in alert) != (alert["alert"] in FIRE_AT_ONCE), f"{alert['alert']}: `for:` missing"


def test_unexpected_drops_alert_is_per_workload_and_points_to_explain() -> None:
    (alert,) = [rule for rule in _alerts() if rule["alert"] == "HushflowUnexpectedDrops"]
    (recorded,) = [rule for rule in _rules() if rule.get("record") == alert["expr"].split(" ")[0]]
    assert "by (namespace, workload, direction)" in recorded["expr"]
    # One drop keeps a 5m rate above 0 for 5 minutes: a `for` longer than that never pages on it.
    assert "[5m]" in recorded["expr"] and alert["expr"].endswith("> 0") and alert["for"] == "10m"
    # The false positives are left out: replies (cilium#41045) and an instance's restart window.
    assert 'reply!="true"' in recorded["expr"]
    assert "unless on (instance) instance:hushflow_source_restarted:last10m" in recorded["expr"]
    assert "hushflow explain" in alert["annotations"]["description"]
