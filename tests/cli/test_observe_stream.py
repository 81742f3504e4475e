"""`hushflow observe --enrich DIR --input-file - -o jsonpb` is a pipeline stage: each line written
to its stdin comes out enriched before the next one is written (it streams, it does not read
stdin to its end first), and stdin closing ends it cleanly."""

from __future__ import annotations

import selectors
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
PLANNED = "app-explicit-traffic-blocked"


def test_each_line_comes_out_enriched_before_the_next_goes_in():
    lines = (EXAMPLE / "flows.jsonl").read_bytes().splitlines()
    process = subprocess.Popen(
        [sys.executable, "-c", "from hushflow.cli import main; main()", "observe", "--enrich", str(EXAMPLE),
         "--input-file", "-", "-o", "jsonpb"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    out: list[dict] = []
    try:
        for line in lines:
            process.stdin.write(line + b"\n")
            process.stdin.flush()
            # Waits for this line's answer with stdin still open (a stage that slurped stdin would
            # answer nothing here). The bound only keeps a broken build from hanging the suite.
            assert selector.select(timeout=60), f"no answer to line {len(out) + 1} while stdin is open"
            out.append(orjson.loads(process.stdout.readline()))
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        selector.close()
    assert len(out) == len(lines)
    tags = [event["flow"].get("policy_log") for event in out if event["flow"]["verdict"] == "DROPPED"]
    assert tags.count([PLANNED]) == 9
