"""A real Prometheus (Debian's package, installed by `make test`) scrapes a running hushflow.

Prometheus listens on loopback, scrapes the daemon's /metrics every second, and the test asks
Prometheus's HTTP API for the series the dashboard and the alert rules rely on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.http import serve_http
from tests.processes import free_tcp_port, running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is not installed: `make test` installs it (apt-get install prometheus)")
    return binary


def test_prometheus_scrapes_the_daemon(tmp_path, prometheus_binary):
    live = tmp_path / "flows.jsonl"
    live.write_bytes((EXAMPLE / "flows.jsonl").read_bytes())
    daemon = Daemon(RunOptions(policies=(str(EXAMPLE),), input_files=(str(live),), follow=True, resolve=False,
                               out_dir=str(tmp_path / "groups"), clock="flows"))
    server = serve_http(daemon, "127.0.0.1:0")
    target = f"127.0.0.1:{server.server_address[1]}"
    worker = threading.Thread(target=daemon.run)
    worker.start()
    prom_port = free_tcp_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n- job_name: hushflow\n  static_configs: [{{targets: ['{target}']}}]\n"
    )

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    try:
        with running(
            [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            ready=ready, what="prometheus", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ):
            check_series(prom_port)
    finally:
        daemon.stop()
        worker.join(20)
        server.shutdown()


def check_series(prom_port: int) -> None:
    expr = 'hushflow_policy_verdicts_total{tag="app-explicit-traffic-blocked",expected="true"}'
    found: list[dict] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not found:  # until the first scrapes are stored
        found = query(prom_port, expr)
        if not found:
            time.sleep(0.5)
    assert found, "Prometheus never saw the hushflow series"
    (series,) = found
    assert series["metric"]["namespace"] == "my-namespace" and series["metric"]["job"] == "hushflow"
    assert float(series["value"][1]) == 9
    unexpected = query(prom_port, "sum(hushflow_unexpected_drops_total)")
    assert float(unexpected[0]["value"][1]) == 3
    assert query(prom_port, 'up{job="hushflow"}')[0]["value"][1] == "1"
    assert query(prom_port, "hushflow_cidr_group_ips")[0]["value"][1] == "3"
