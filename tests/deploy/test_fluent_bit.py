"""deploy/fluent-bit and deploy/grafana/loki-drops-panel.json: the Fluent Bit config is valid YAML
of Fluent Bit's shape, its Lua (run here in LuaJIT, which Fluent Bit embeds) gives the labels the
docs promise on a real `hushflow run --export` file, and the Grafana panel queries the labels the
config sets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import luajit21  # the test extra: Fluent Bit embeds LuaJIT 2.1 too

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.flow.reader import FlowReader

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "fluent-bit" / "fluent-bit.yaml"
PANEL = ROOT / "deploy" / "grafana" / "loki-drops-panel.json"
EXAMPLE = ROOT / "examples" / "telemetry-block"
PLANNED = "app-explicit-traffic-blocked"
# Fluent Bit's YAML configuration sections (administration/configuring-fluent-bit/yaml).
SECTIONS = {"env", "includes", "service", "parsers", "multiline_parsers", "pipeline", "plugins", "upstream_servers",
            "customs"}
# A Loki label: a fixed value, or a record accessor ($a['b']) whose value Fluent Bit reads per record.
LABEL = re.compile(r"(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)=(?:\$(?P<map>\w+)\['(?P<key>\w+)'\]|(?P<fixed>[\w.-]+))")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def one(config: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    (found,) = [entry for entry in config["pipeline"][kind] if entry["name"] == name]
    return found


def loki_labels(config: dict[str, Any]) -> dict[str, tuple[str, str] | str]:
    """The Loki output's labels: name -> fixed value, or (map, key) of a record accessor."""
    labels: dict[str, tuple[str, str] | str] = {}
    for part in one(config, "outputs", "loki")["labels"].split(","):
        match = LABEL.fullmatch(part.strip())
        assert match, f"not a label Fluent Bit's loki output reads: {part!r}"
        labels[match["name"]] = match["fixed"] or (match["map"], match["key"])
    return labels


def test_the_config_has_fluent_bits_shape(config):
    assert set(config) <= SECTIONS
    for kind in ("inputs", "filters", "outputs"):
        assert all(isinstance(entry, dict) and entry.get("name") for entry in config["pipeline"][kind])
    tail = one(config, "inputs", "tail")
    assert tail["path"].endswith("/export.log")  # the current file only: backups are renamed or gzipped
    parser = tail["parser"]
    assert [p["format"] for p in config["parsers"] if p["name"] == parser] == ["json"]
    assert one(config, "filters", "lua")["match"] == one(config, "outputs", "loki")["match"] == tail["tag"]


def test_the_labels_are_few_and_bounded(config):
    labels = loki_labels(config)
    assert set(labels) == {"job", "verdict", "namespace", "policy_log"}
    assert labels["job"] == "hushflow"
    # Every accessor reads the map the Lua filter sets, which the output then removes from the line.
    assert {value[0] for value in labels.values() if isinstance(value, tuple)} == {"loki"}
    assert one(config, "outputs", "loki")["remove_keys"] == "loki"


@pytest.fixture(scope="module")
def lua_labels(config) -> Any:
    runtime = luajit21.LuaRuntime(unpack_returned_tuples=True)
    lua = one(config, "filters", "lua")
    runtime.execute(lua["code"])
    function = runtime.globals()[lua["call"]]

    def labels(record: dict[str, Any]) -> dict[str, str]:
        code, _timestamp, out = function("hushflow", 0.0, runtime.table_from(record, recursive=True))
        assert code == 2  # record changed, timestamp kept
        return dict(out["loki"].items())

    return labels


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export file: the example replayed by `hushflow run --export`."""
    directory = tmp_path_factory.mktemp("export")
    path = directory / "export.log"
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(str(EXAMPLE / "flows.jsonl"),),
                               out_dir=str(directory / "groups"), resolve=False, clock="flows", export=str(path)))
    assert daemon.run() == 0
    return path


def test_the_lua_labels_of_a_real_export(lua_labels, export_file):
    labelled = [(event.data["flow"], lua_labels(event.data)) for event in FlowReader([str(export_file)])]
    drops = [labels for flow, labels in labelled if flow["verdict"] == "DROPPED"]
    assert sorted(labels["policy_log"] for labels in drops) == [PLANNED] * 9 + ["none"] * 3
    assert {labels["namespace"] for labels in drops} == {"my-namespace"}  # the egress drops' source
    assert {labels["verdict"] for _flow, labels in labelled} == {flow["verdict"] for flow, _ in labelled}


@pytest.mark.parametrize(("record", "expected"), [
    ({"flow": {"verdict": "DROPPED", "traffic_direction": "INGRESS", "source": {"namespace": "a"},
               "destination": {"namespace": "b"}, "policy_log": ["x", "", "y"]}},
     {"verdict": "DROPPED", "namespace": "b", "policy_log": "x,y"}),
    ({"flow": {"verdict": "DROPPED", "policy_log": [""]}},  # Cilium 1.18 writes "" for a rule without log
     {"verdict": "DROPPED", "namespace": "none", "policy_log": "none"}),
    ({"lost_events": {"num_events_lost": "3"}, "node_name": "n"},
     {"verdict": "lost_events", "namespace": "none", "policy_log": "none"}),
])
def test_the_lua_labels_of_odd_records(lua_labels, record, expected):
    assert lua_labels(record) == expected


def test_the_panel_queries_the_labels_fluent_bit_sets(config):
    panel = json.loads(PANEL.read_text())
    assert panel["datasource"]["type"] == "loki" and panel["targets"]
    labels = loki_labels(config)
    for target in panel["targets"]:
        expr = target["expr"]
        assert "sum by (policy_log)" in expr and "{{policy_log}}" in target["legendFormat"]
        selector = re.search(r"\{(?P<matchers>[^}]*)\}", expr)
        assert selector
        matchers = dict(re.findall(r'(\w+)=~?"([^"]*)"', selector["matchers"]))
        assert set(matchers) <= set(labels), "a stream selector on a label Fluent Bit does not set"
        assert matchers["job"] == labels["job"] and matchers["verdict"] == "DROPPED"
