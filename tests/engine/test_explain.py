"""explain_flow: the words for one verdict, whatever valid protojson the flow spells it in."""

from __future__ import annotations

from hushflow.engine.attribution import Attributor
from hushflow.engine.explain import explain_flow
from tests.engine.conftest import WORLD, flow, pod
from tests.engine.test_decision import FQDN_ALLOW, FQDN_DENY

APP = pod("shop", "web", 1001)
TELEMETRY = {"dst_ip": "198.51.100.1", "names": ["a.telemetry.example.com"]}


def test_a_drop_is_explained_with_its_verdict_and_reason(policies):
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    text = explain_flow(Attributor(policies(FQDN_DENY, FQDN_ALLOW)), event, "flows.json:7")
    assert text is not None
    assert "flows.json:7" in text
    assert "policy-verdict EGRESS DROPPED (POLICY_DENY)" in text


def test_enum_numbers_protojson_leaves_as_numbers_are_printed_not_a_crash(policies):
    # proto3 enums are open: a verdict or drop reason newer than hushflow's proto stays a number.
    event = flow(APP, WORLD, verdict="DROPPED", drop="POLICY_DENY", **TELEMETRY)
    event["flow"]["verdict"] = 12345
    event["flow"]["drop_reason_desc"] = 999
    text = explain_flow(Attributor(policies(FQDN_DENY, FQDN_ALLOW)), event, "flows.json:8")
    assert text is not None
    assert "policy-verdict EGRESS 12345 (999)" in text
