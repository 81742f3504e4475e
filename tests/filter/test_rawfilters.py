"""Raw FlowFilters: the byte-exact `--print-raw-filters` YAML and the compact JSON inside it.

Parsing `--allowlist/--denylist` is covered by the flag tables of test_flags.py (rows `raw ...`).
"""

from __future__ import annotations

import pytest

from hushflow.filter.rawfilters import FlowFilters, flow_filter_json, format_raw_filters

PRINT_ROWS = [
    ("nothing", FlowFilters(), "{}\n"),
    ("denylist only", FlowFilters((), ({"verdict": ["AUDIT"]},)), "denylist:\n    - '{\"verdict\":[\"AUDIT\"]}'\n"),
    ("quote doubled", FlowFilters(({"uuid": ["it's"]},)), "allowlist:\n    - '{\"uuid\":[\"it''s\"]}'\n"),
    ("html escaped", FlowFilters(({"uuid": ["<a&b>"]},)),
     "allowlist:\n    - '{\"uuid\":[\"\\u003ca\\u0026b\\u003e\"]}'\n"),
    ("control characters JSON-escaped", FlowFilters(({"uuid": ["a\tb\x01"]},)),
     "allowlist:\n    - '{\"uuid\":[\"a\\tb\\u0001\"]}'\n"),
    ("unicode kept", FlowFilters(({"uuid": ["é\u2028"]},)), "allowlist:\n    - '{\"uuid\":[\"é\\u2028\"]}'\n"),
    ("non-printable forces double quotes", FlowFilters(({"uuid": ["\x80"]},)),
     'allowlist:\n    - "{\\"uuid\\":[\\"\\x80\\"]}"\n'),
]


@pytest.mark.parametrize(("filters", "text"), [row[1:] for row in PRINT_ROWS], ids=[row[0] for row in PRINT_ROWS])
def test_format_raw_filters(filters: FlowFilters, text: str) -> None:
    assert format_raw_filters(filters) == text


def test_flow_filter_json_is_compact() -> None:
    assert flow_filter_json({"verdict": ["DROPPED"], "event_type": [{"type": 5}]}) == (
        '{"verdict":["DROPPED"],"event_type":[{"type":5}]}'
    )
