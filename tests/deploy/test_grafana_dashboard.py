"""deploy/grafana: the committed dashboard is what the generator makes, its queries select only
metrics of the contract, and every query is valid PromQL for a real Prometheus."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from hushflow.sinks.metric_names import contract_series_names
from tests.deploy.promql import metric_names, require_tool, selects_by_name_label
from tests.processes import free_tcp_port, running

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "hushflow-dashboard.json"
GENERATOR = GRAFANA_DIR / "generate_dashboard.py"
# Grafana's variables, replaced by a value of the right kind before Prometheus sees the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": "hushflow", "$namespace": ".*"}
PROMETHEUS_START_TIMEOUT = 30.0
# Grafana's variable query `label_values(selector, label)`: not PromQL, but its selector is.
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+), *(?P<label>[a-zA-Z_]\w*)\)")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hushflow_generate_dashboard", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module runs.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel.get("targets", [])]


def _variable_queries() -> list[str]:
    queries = []
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def _as_prometheus_sees_it(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def test_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD_FILE.read_text() == _generator().render_dashboard(), (
        "deploy/grafana/hushflow-dashboard.json is stale: run .venv/bin/python deploy/grafana/generate_dashboard.py"
    )


def test_generator_check_mode() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    with tempfile.TemporaryDirectory() as tmp:
        stale = Path(tmp) / "dashboard.json"
        stale.write_text("{}\n")
        result = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output", str(stale)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1 and "stale" in result.stderr


def test_generation_is_deterministic() -> None:
    generator = _generator()
    assert generator.render_dashboard() == generator.render_dashboard()


@pytest.mark.parametrize("expr", _exprs() + _variable_queries())
def test_queries_select_only_contract_metrics(expr: str) -> None:
    assert not selects_by_name_label(expr)
    label_values = LABEL_VALUES.fullmatch(expr)
    names = metric_names(label_values.group("selector") if label_values else expr)
    assert names, f"no metric in {expr}"
    unknown = sorted(names - contract_series_names())
    assert not unknown, f"metrics outside the contract (src/hushflow/sinks/metric_names.py): {unknown} in {expr}"


def test_dashboard_covers_what_operators_asked_for() -> None:
    titles = {panel["title"] for panel in _panels()}
    for wanted in (
        "Policy drops: expected vs unexpected", "Top unexpected drops by workload", "Top unexpected drops by destination",
        "Blocks by tag", "Leak window (DNS answer → CIDR group written)", "Learned IPs per group vs capacity",
        "Source connected", "Source lag", "Hubble lost events", "Malformed input", "Queue depth",
    ):
        assert wanted in titles
    leak = next(panel for panel in _panels() if panel["title"].startswith("Leak window"))
    assert [target["legendFormat"] for target in leak["targets"]] == ["p50", "p99"]


def _rows() -> dict[str, list[dict[str, Any]]]:
    """Each row's title -> its panels, in order."""
    rows: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return rows


@pytest.mark.parametrize("panel", _panels(), ids=lambda panel: panel["title"])
def test_every_panel_has_a_description(panel: dict[str, Any]) -> None:
    # Grafana shows it behind the (i) of the panel's title: what it counts and what to do about it.
    description = panel.get("description", "")
    assert len(description) >= 20 and description != panel["title"], panel["title"]


def test_the_blindness_alarm_and_the_staged_verdicts_have_panels() -> None:
    rows = _rows()
    (blind,) = [panel for panel in rows["Enforcement"] if "blindness alarm" in panel["title"]]
    assert "hushflow_unexplained_destinations_total" in blind["targets"][0]["expr"]
    assert "HushflowUnexplainedDestinations" in blind["description"]
    staged = rows["Staged policies"]
    assert {target["expr"].split('change="')[1].split('"')[0] for panel in staged for target in panel["targets"]} == {
        "newly-dropped", "newly-allowed", "tag-lost"}


def test_unexpected_drops_panels_leave_replies_out_and_show_them_apart() -> None:
    for panel in _panels():
        for target in panel.get("targets", []):
            if "hushflow_unexpected_drops_total" in target["expr"]:
                assert 'reply!="true"' in target["expr"] or "Reply-direction" in panel["title"], panel["title"]
    (replies,) = [panel for panel in _panels() if panel["title"].startswith("Reply-direction drops")]
    assert 'reply="true"' in replies["targets"][0]["expr"] and "cilium#41045" in replies["description"]


def test_the_icmp_deny_response_note_is_a_text_panel_on_top_of_the_drops() -> None:
    first = _rows()["Drops"][0]
    assert first["type"] == "text"
    content = first["options"]["content"]
    for needle in ("policy-deny-response: icmp", "cilium_drop_count_total", "cilium#48282", "Hubble"):
        assert needle in content, needle


def test_layout_is_sane() -> None:
    panels = _dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in _panels():
        if panel["type"] == "text":
            assert panel["options"]["content"] and "targets" not in panel, panel["title"]
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_queries_parse_with_promtool() -> None:
    """promtool parses and type-checks rule expressions: every query, as a recording rule."""
    promtool = require_tool("promtool")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query:{index}", "expr": _as_prometheus_sees_it(expr)}
        for index, expr in enumerate(_exprs())
    ]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard-queries.yaml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 0, f"a dashboard query is not valid PromQL:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def prometheus_url() -> Iterator[str]:
    """A real Prometheus on loopback with an empty TSDB, always stopped at the end."""
    binary = require_tool("prometheus")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        port = free_tcp_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "prometheus.log"

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        with log_path.open("w") as log, running(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={Path(tmp) / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            ready=ready, what="prometheus", timeout=PROMETHEUS_START_TIMEOUT, details=log_path.read_text,
            stdout=log, stderr=subprocess.STDOUT,
        ):
            yield url


def _query(url: str, expr: str) -> tuple[int, dict[str, Any]]:
    request = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_prometheus_rejects_a_broken_query(prometheus_url: str) -> None:
    # The check below means something only if a parse error really comes back as 400.
    status, body = _query(prometheus_url, "sum by (le (rate(hushflow_flows_total[5m]))")
    assert status == 400 and body["errorType"] == "bad_data"


@pytest.mark.parametrize("expr", _exprs())
def test_prometheus_evaluates_every_query(prometheus_url: str, expr: str) -> None:
    status, body = _query(prometheus_url, _as_prometheus_sees_it(expr))
    assert status == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
