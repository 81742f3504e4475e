"""docs/runbooks.md: every alert of deploy/prometheus/hushflow-rules.yaml has a section, its
runbook_url points at that section, and every section says how to check (names a command)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "hushflow-rules.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Where the runbooks are published: the repository's docs/runbooks.md on main.
RUNBOOK_BASE_URL = "https://github.com/hushflow/hushflow/blob/main/docs/runbooks.md"
# A command a reader can run: hushflow, hubble, kubectl (in a code span or a code block).
COMMAND = re.compile(r"`[^`]*\b(hushflow|hubble|kubectl) [^`]+`|```\n\s*(hushflow|hubble|kubectl) ")


def _alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def sections(markdown: str) -> dict[str, str]:
    """Each `## ` section's anchor -> its text (up to the next `## `)."""
    found: dict[str, str] = {}
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        found[github_anchor(heading)] = body
    return found


def test_github_anchor_matches_githubs_rules() -> None:
    assert github_anchor("HushflowUnexpectedDrops") == "hushflowunexpecteddrops"
    assert github_anchor("False positives left out by default") == "false-positives-left-out-by-default"
    assert github_anchor("Cilium's ICMP deny `cilium_drop_count_total`") == "ciliums-icmp-deny-cilium_drop_count_total"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_section_its_url_points_at(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    url = alert["annotations"].get("runbook_url", "")
    assert url == f"{RUNBOOK_BASE_URL}#{name.lower()}", f"{name}: runbook_url is {url!r}"
    found = sections(RUNBOOKS.read_text())
    assert name.lower() in found, f"docs/runbooks.md has no '## {name}' section"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_every_runbook_section_says_what_it_means_how_to_check_and_fix(alert: dict[str, Any]) -> None:
    body = sections(RUNBOOKS.read_text())[alert["alert"].lower()]
    severity = alert["labels"]["severity"]
    assert body.lstrip().startswith(f"*{severity}.*"), f"{alert['alert']}: the section starts with its severity"
    assert "Check" in body and "Fix" in body, f"{alert['alert']}: no 'Check' or 'Fix' part"
    assert COMMAND.search(body), f"{alert['alert']}: the section names no hushflow, hubble or kubectl command"


def test_sections_without_an_alert_are_only_the_general_ones() -> None:
    alerts = {rule["alert"].lower() for rule in _alerts()}
    extra = set(sections(RUNBOOKS.read_text())) - alerts
    assert extra == {"false-positives-left-out-by-default"}, f"sections for alerts that do not exist: {extra}"


def test_the_exclusions_and_the_icmp_deny_response_are_documented() -> None:
    text = RUNBOOKS.read_text()
    for needle in ("cilium#41045", 'reply="true"', "cilium#48282", "policy-deny-response: icmp",
                   "cilium_drop_count_total", "instance:hushflow_source_restarted:last10m"):
        assert needle in text, needle
