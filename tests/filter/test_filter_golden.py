"""Every filter case recorded from the real `hubble observe` 1.19.4 (shared golden data) must select
exactly the same input lines here, and the bytes pre-check must never drop one of them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from hushflow.filter import compile_filters

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hubble-1.19.4-golden"
WINDOW_FLAGS = ("--since", "--until", "--first", "--last")



def _cases() -> list[dict[str, Any]]:
    if not GOLDEN.is_dir():
        return []
    cases: list[dict[str, Any]] = json.loads((GOLDEN / "cases.json").read_text())["cases"]
    return cases


@pytest.fixture(scope="module")
def corpus() -> tuple[list[bytes], list[dict[str, Any]]]:
    lines = gzip.decompress((GOLDEN / "flows-4k.jsonl.gz").read_bytes()).splitlines()
    return lines, [orjson.loads(line) for line in lines]


def _raw_filters(case: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    loaded = YAML(typ="safe").load(case["print_raw_filters"]["stdout"]) or {}
    return (
        [json.loads(s) for s in loaded.get("allowlist") or []],
        [json.loads(s) for s in loaded.get("denylist") or []],
    )


def _filter_only_cases() -> list[dict[str, Any]]:
    """The cases whose result depends on the filters alone. The others (flags Hubble rejects, and
    --since/--until/--first/--last windows) run end to end in tests/cli/test_observe.py."""
    return [
        case
        for case in _cases()
        if case["exit_code"] == 0 and not any(flag in case["args"] for flag in WINDOW_FLAGS)
    ]


@pytest.mark.parametrize("case", _filter_only_cases(), ids=lambda c: " ".join(c["args"]))
def test_hubble_golden_case(case: dict[str, Any], corpus: tuple[list[bytes], list[dict[str, Any]]]) -> None:
    lines, events = corpus
    allow, deny = _raw_filters(case)
    compiled = compile_filters(allow, deny)
    got = [n for n, event in enumerate(events, 1) if compiled(event)]
    assert got == case["matching_input_lines"]
    may_match = {n for n, line in enumerate(lines, 1) if compiled.line_may_match(line)}
    assert set(got) <= may_match
