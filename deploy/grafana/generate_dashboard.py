"""Generate deploy/grafana/hushflow-dashboard.json, the hushflow Grafana dashboard.

    .venv/bin/python deploy/grafana/generate_dashboard.py           # rewrite the JSON
    .venv/bin/python deploy/grafana/generate_dashboard.py --check   # exit 1 if it is stale

The JSON is committed so it can be imported as is; edit this script, never the JSON
(tests/deploy/test_grafana_dashboard.py fails when they differ). Every query uses only
metrics of the contract in src/hushflow/sinks/metric_names.py and works without the
recording rules of deploy/prometheus, so the dashboard also works where those are not loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "hushflow-dashboard.json"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query is limited to the hushflow job and the chosen namespaces where the metric has one.
JOB = 'job="$job"'
NS = 'namespace=~"$namespace"'
DROPS = 'verdict=~"DROPPED|AUDIT"'
PLANNED = 'expected="true"'
UNPLANNED = 'expected="false"'
TAGGED = 'tag!=""'
# Replies Cilium dropped after losing their conntrack entry (cilium#41045) are left out of the
# unexpected drops, as the alert rules leave them out; the "Reply-direction drops" panel shows them.
NOT_REPLY = 'reply!="true"'
UNEXPECTED = f"hushflow_unexpected_drops_total{{{JOB}, {NS}, {NOT_REPLY}}}"
REPLIES = f'hushflow_unexpected_drops_total{{{JOB}, {NS}, reply="true"}}'
UNEXPLAINED = f"hushflow_unexplained_destinations_total{{{JOB}, {NS}}}"
GRID_WIDTH = 24
LEAK_BUCKETS = f"hushflow_leak_window_seconds_bucket{{{JOB}}}"


def rate(selector: str) -> str:
    return f"rate({selector}[$__rate_interval])"


def verdicts(*matchers: str) -> str:
    return "hushflow_policy_verdicts_total{" + ", ".join((JOB, NS, *matchers)) + "}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | bargauge | stat | table | text (no queries; options.content in Markdown)
    queries: tuple[Query, ...]
    description: str
    width: int = 12
    height: int = 8
    unit: str = "short"
    options: dict[str, Any] = field(default_factory=dict)
    field_config: dict[str, Any] = field(default_factory=dict)


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


ICMP_DENY_RESPONSE_NOTE = (
    "**Cilium's ICMP deny response hides egress denies from Cilium's own metrics.** With "
    "`policy-deny-response: icmp` (Cilium 1.19, experimental), egress policy denies are no longer counted in "
    "`cilium_drop_count_total` nor shown by `cilium monitor -t drop` "
    "([cilium#48282](https://github.com/cilium/cilium/issues/48282)); Hubble still reports them, and so do the "
    "hushflow panels below, which are built from Hubble's flows. Do not compare them with "
    "`cilium_drop_count_total` there. Reply-direction drops (cilium#41045) and an agent restart's first 10 "
    "minutes are left out of the alerts: see docs/runbooks.md."
)

DROPS_ROW = (
    Panel(
        "Note: drops Cilium's metrics miss, false positives left out",
        "text",
        (),
        "What these panels count that Cilium's own drop metrics may not (ICMP deny response, cilium#48282), "
        "and which drops the alerts leave out (docs/runbooks.md).",
        width=24,
        height=3,
        options={"mode": "markdown", "content": ICMP_DENY_RESPONSE_NOTE},
    ),
    Panel(
        "Policy drops: expected vs unexpected",
        "timeseries",
        (
            Query(f"sum({rate(verdicts(DROPS, PLANNED))})",
                  "expected (planned)"),
            Query(f"sum({rate(verdicts(DROPS, UNPLANNED))})",
                  "unexpected"),
        ),
        "DROPPED and AUDIT verdicts per second after attribution. Expected drops come from rules whose "
        "log value is listed as expected; unexpected ones are what HushflowUnexpectedDrops alerts on (less the "
        "reply-direction drops of the panel below).",
        width=24,
        unit="ops",
        field_config={"custom": {"drawStyle": "line", "fillOpacity": 20, "stacking": {"mode": "normal"}}},
    ),
    Panel(
        "Top unexpected drops by workload",
        "bargauge",
        (
            Query(f"topk(10, sum by (namespace, workload, direction) "
                  f"(increase({UNEXPECTED}[$__range])))",
                  "{{namespace}}/{{workload}} ({{direction}})", instant=True),
        ),
        "Unplanned drops over the dashboard's time range, by enforcing workload. Investigate with "
        "`hushflow explain --verdict DROPPED --pod <namespace>/<workload>` (docs/operations.md).",
        options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True},
    ),
    Panel(
        "Top unexpected drops by destination",
        "bargauge",
        (
            Query(f"topk(10, sum by (destination) "
                  f"(increase({UNEXPECTED}[$__range])))",
                  "{{destination}}", instant=True),
        ),
        "Unplanned drops over the time range, by peer: its FQDN when hushflow learned one, else the "
        "peer namespace/workload, else world.",
        options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True},
    ),
    Panel(
        "Triage: top unexpected drops (last hour)",
        "table",
        (
            Query(f"topk(10, sum by (namespace, workload, destination) "
                  f"(increase({UNEXPECTED}[1h])))",
                  "{{namespace}}/{{workload}} → {{destination}}", instant=True),
        ),
        "What `hushflow report` lists from recorded flows, from the metrics: the 10 workload and peer pairs "
        "with the most unplanned drops over the last hour (peer: its FQDN, else namespace/workload, else "
        "world). For the port, the rule and a suggested fix, run `hushflow report` on the flows "
        "(docs/report.md).",
        width=24,
        options={"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
    ),
    Panel(
        "Blocks by tag",
        "timeseries",
        (
            Query(f"sum by (tag) ({rate(verdicts(DROPS, TAGGED))})",
                  "{{tag}}"),
        ),
        "DROPPED and AUDIT verdicts per second by the rule's log value (policy_log, several joined by ','). "
        "Drops of rules without a log value are not shown.",
        unit="ops",
    ),
    Panel(
        "Verdicts by verdict and direction",
        "timeseries",
        (
            Query(f"sum by (verdict, direction) ({rate(verdicts())})",
                  "{{verdict}} {{direction}}"),
        ),
        "Every attributed policy verdict per second, planned or not.",
        unit="ops",
    ),
    Panel(
        "Reply-direction drops (left out of the alerts)",
        "timeseries",
        (
            Query(f"sum by (namespace, workload, destination) "
                  f"({rate(REPLIES)})",
                  "{{namespace}}/{{workload}} ← {{destination}}"),
        ),
        "Unplanned drops of packets that continue a connection (TCP ACK/RST/FIN, UDP from a port below 1024 to "
        "an ephemeral one): replies Cilium dropped after losing the connection's conntrack entry "
        "(cilium#41045). Left out of the other drop panels and of HushflowUnexpectedDrops; many of them point at "
        "Cilium's conntrack, not at the policy.",
        width=24,
        unit="ops",
    ),
)

ENFORCEMENT_ROW = (
    Panel(
        "Leak window (DNS answer → CIDR group written)",
        "timeseries",
        (
            Query(f"histogram_quantile(0.5, sum by (le) ({rate(LEAK_BUCKETS)}))",
                  "p50"),
            Query(f"histogram_quantile(0.99, sum by (le) ({rate(LEAK_BUCKETS)}))",
                  "p99"),
        ),
        "Time during which a pod can still reach a denied name's newly learned IPs. "
        "HushflowLeakWindowSlow fires when the p99 stays above 1s.",
        unit="s",
        field_config={"thresholds": _thresholds((None, "green"), (1, "red")),
                      "custom": {"thresholdsStyle": {"mode": "line"}}},
    ),
    Panel(
        "CIDR group fill (IPs / capacity)",
        "bargauge",
        (
            Query(f"max by (group) (sum by (instance, group) (hushflow_cidr_group_ips{{{JOB}}})) / on (group) "
                  f"max by (group) (hushflow_cidr_group_capacity{{{JOB}}})",
                  "{{group}}", instant=True),
        ),
        "How full each CiliumCIDRGroup is. Above 90% HushflowCIDRGroupNearCapacity fires; at 100% new "
        "IPs of denied names are not denied.",
        unit="percentunit",
        options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True},
        field_config={"min": 0, "max": 1,
                      "thresholds": _thresholds((None, "green"), (0.9, "orange"), (1, "red"))},
    ),
    Panel(
        "Learned IPs per group vs capacity",
        "timeseries",
        (
            Query(f"sum by (group, policy) (hushflow_cidr_group_ips{{{JOB}}})", "{{group}} ({{policy}})"),
            Query(f"max by (group) (hushflow_cidr_group_capacity{{{JOB}}})", "{{group}} capacity"),
        ),
        "IPs written to each CIDR group, and the group's cap (dashed).",
        field_config={"overrides": [{
            "matcher": {"id": "byRegexp", "options": ".* capacity$"},
            "properties": [{"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}}],
        }]},
    ),
    Panel(
        "Shared IPs kept out of denies",
        "timeseries",
        (Query(f"max by (policy) (hushflow_shared_ips_skipped{{{JOB}}})", "{{policy}}"),),
        "IPs of denied names left out of the deny because an allowed name resolves to them too (CDNs). "
        "Traffic to the denied names through them still passes.",
    ),
    Panel(
        "DNS answers learned",
        "timeseries",
        (Query(f"sum(rate(hushflow_dns_answers_total{{{JOB}}}[$__rate_interval]))", "answers/s"),),
        "DNS answers read from Hubble: what keeps FQDN denies and destinations up to date.",
        unit="ops",
    ),
    Panel(
        "Unexplained destinations by workload (blindness alarm)",
        "timeseries",
        (Query(f"sum by (namespace, workload) "
               f"({rate(UNEXPLAINED)})",
               "{{namespace}}/{{workload}}"),),
        "Connections per second that workloads an FQDN deny selects opened on the denied ports to IPs no DNS "
        "answer hushflow saw explains: hushflow cannot see the name they used (NodeLocal DNSCache, DNS over "
        "HTTPS, a hard-coded IP), so the deny may be leaking. HushflowUnexplainedDestinations fires when it "
        "lasts 15 minutes (docs/runbooks.md).",
        width=24,
        unit="ops",
    ),
)

HEALTH_ROW = (
    Panel(
        "Source connected",
        "stat",
        (Query(f"min by (instance, source) (hushflow_source_connected{{{JOB}}})", "{{instance}} {{source}}",
               instant=True),),
        "1 while connected to Hubble Relay or the node's Hubble socket. HushflowSourceDisconnected fires "
        "after a minute at 0.",
        width=8,
        options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        field_config={
            "mappings": [{"type": "value", "options": {
                "0": {"text": "disconnected", "color": "red", "index": 0},
                "1": {"text": "connected", "color": "green", "index": 1},
            }}],
            "thresholds": _thresholds((None, "red"), (1, "green")),
        },
    ),
    Panel(
        "Source lag",
        "timeseries",
        (Query(f"max by (instance, source) (hushflow_source_lag_seconds{{{JOB}}})", "{{instance}} {{source}}"),),
        "Seconds between a flow's timestamp and hushflow reading it.",
        width=8,
        unit="s",
    ),
    Panel(
        "Source reconnects",
        "timeseries",
        (Query(f"sum by (instance, source) (increase(hushflow_source_reconnects_total{{{JOB}}}[$__rate_interval]))",
               "{{instance}} {{source}}"),),
        "Reconnections to the flow source.",
        width=8,
    ),
    Panel(
        "Hubble lost events",
        "timeseries",
        (Query(f"sum by (instance, source) (rate(hushflow_hubble_lost_events_total{{{JOB}}}[$__rate_interval]))",
               "{{instance}} {{source}}"),),
        "Events Hubble dropped before hushflow read them: flows (and DNS answers) never seen.",
        width=8,
        unit="ops",
    ),
    Panel(
        "Malformed input",
        "timeseries",
        (Query(f"sum by (source) (rate(hushflow_malformed_input_total{{{JOB}}}[$__rate_interval]))", "{{source}}"),),
        "Flow records hushflow could not parse and skipped.",
        width=8,
        unit="ops",
    ),
    Panel(
        "Node status changes",
        "timeseries",
        (Query(f"sum by (state) (increase(hushflow_node_status_changes_total{{{JOB}}}[$__rate_interval]))",
               "{{state}}"),),
        "Hubble Relay node events: nodes connecting, becoming unavailable.",
        width=8,
    ),
    Panel(
        "Queue depth",
        "timeseries",
        (Query(f"max by (instance, queue) (hushflow_queue_depth{{{JOB}}})", "{{instance}} {{queue}}"),),
        "Unexpected-drop events waiting for their webhook.",
        width=8,
    ),
    Panel(
        "Pipeline busy",
        "timeseries",
        (Query(f"sum by (instance) (rate(hushflow_pipeline_busy_seconds_total{{{JOB}}}[$__rate_interval]))",
               "{{instance}}"),),
        "Share of one core the flow pipeline spends processing (1 = saturated: hushflow falls behind "
        "Hubble, and lost events follow).",
        width=8,
        unit="percentunit",
    ),
    Panel(
        "Flows read by type",
        "timeseries",
        (Query(f"sum by (type) (rate(hushflow_flows_total{{{JOB}}}[$__rate_interval]))", "{{type}}"),),
        "Hubble flows read per second.",
        width=8,
        unit="ops",
    ),
    Panel(
        "Attribution disagreements with Cilium",
        "timeseries",
        (Query(f"sum by (kind) (rate(hushflow_attribution_disagreements_total{{{JOB}}}[$__rate_interval]))",
               "{{kind}}"),),
        "Flows where Cilium filled policy fields differently from hushflow's attribution (Cilium's win).",
        width=8,
        unit="ops",
    ),
    Panel(
        "Events emitted",
        "timeseries",
        (Query(f"sum by (sink, outcome) (rate(hushflow_events_emitted_total{{{JOB}}}[$__rate_interval]))",
               "{{sink}} {{outcome}}"),),
        "Alert events handed to sinks, by outcome.",
        width=8,
        unit="ops",
    ),
    Panel(
        "Running versions",
        "table",
        (Query(f"count by (version) (hushflow_build_info{{{JOB}}})", "{{version}}", instant=True),),
        "hushflow instances per version.",
        width=8,
        options={"showHeader": True},
    ),
)



def staged_panel(change: str, title: str, description: str) -> Panel:
    """A Staged policies panel: the rate of one `change` by workload."""
    selector = f'hushflow_staged_verdicts_total{{{JOB}, {NS}, change="{change}"}}'
    return Panel(f"Staged: {title} by workload", "timeseries",
                 (Query(f"sum by (namespace, workload) ({rate(selector)})", "{{namespace}}/{{workload}}"),),
                 description, width=8, unit="ops")


STAGED_ROW = (
    staged_panel(
        "newly-dropped", "newly dropped",
        "Flows per second the enforced policies allow that the staged ones (`hushflow run --staged`) would "
        "drop: what applying the staged set would break. Zero for the whole staging period (a week of normal "
        "traffic) before applying a tightening change.",
    ),
    staged_panel(
        "newly-allowed", "newly allowed",
        "Flows per second the enforced policies drop that the staged ones would allow: what applying the "
        "staged set would open. Only the drops the change means to fix should show here.",
    ),
    staged_panel(
        "tag-lost", "planned drops losing their tag",
        "Drops that stay drops under the staged policies but lose the log value that marks them planned: "
        "after applying, they would page as unexpected drops.",
    ),
)

ROWS = (("Drops", DROPS_ROW), ("Staged policies", STAGED_ROW), ("Enforcement", ENFORCEMENT_ROW),
        ("Health", HEALTH_ROW))

TEMPLATE_VARIABLES = [
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    },
    {
        "name": "job",
        "label": "Job",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": "label_values(hushflow_build_info, job)", "refId": "job"},
        "definition": "label_values(hushflow_build_info, job)",
        "current": {"selected": True, "text": "hushflow", "value": "hushflow"},
        "hide": 0,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "regex": "",
    },
    {
        "name": "namespace",
        "label": "Namespace",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": 'label_values(hushflow_policy_verdicts_total{job="$job"}, namespace)', "refId": "namespace"},
        "definition": 'label_values(hushflow_policy_verdicts_total{job="$job"}, namespace)',
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "refresh": 2,
        "sort": 1,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "regex": "",
    },
]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, query in enumerate(panel.queries):
        targets.append({
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "instant": query.instant,
            "range": not query.instant,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + index),
        })
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": _thresholds((None, "green"))}
    defaults.update({key: value for key, value in panel.field_config.items() if key != "overrides"})
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
                              **defaults.get("custom", {})}
    options: dict[str, Any] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if panel.kind == "timeseries":
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    options.update(panel.options)
    if panel.kind == "text":
        return {"id": panel_id, "type": "text", "title": panel.title, "description": panel.description,
                "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y}, "options": dict(panel.options)}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": panel.field_config.get("overrides", [])},
        "options": options,
    }


def build_dashboard() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict; the same input always gives the same output."""
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "__inputs": [],
        "__requires": [
            {"id": "grafana", "name": "Grafana", "type": "grafana", "version": "10.0.0"},
            {"id": "prometheus", "name": "Prometheus", "type": "datasource", "version": "1.0.0"},
        ],
        "annotations": {"list": []},
        "description": "hushflow: expected vs unexpected policy drops, FQDN deny enforcement, and hushflow's own "
                       "health. Generated by deploy/grafana/generate_dashboard.py.",
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["hushflow", "cilium", "hubble"],
        "templating": {"list": TEMPLATE_VARIABLES},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "hushflow",
        "uid": "hushflow",
        "version": 1,
    }


def render_dashboard() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {OUTPUT.name} is not up to date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    text = render_dashboard()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
