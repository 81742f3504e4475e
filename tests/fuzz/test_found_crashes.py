"""Crashes the fuzz targets found, each as the smallest input that shows it.

A crash in a file another session owns is an xfail (strict) test here, with its owner in the
reason, and a `harness.KNOWN` entry so the fuzz targets go on past it; when the fix lands the
test passes, strict xfail turns that into a failure, and both the mark and the entry go.
"""

from __future__ import annotations

import io

import pytest

from hushflow.flow.reader import FlowReader, ReadStats
from hushflow.policy.lint import lint_paths


def _lint(text: str) -> list[str]:
    report = lint_paths(["-"], stdin=io.StringIO(text))
    return [f"{d.code} {d.location}" for d in report.diagnostics]


@pytest.mark.xfail(strict=True, raises=TypeError, reason="policy/loading.py (hostile-inputs helper): "
                   "_fqdn_deny_message iterates toPorts/ports of a toFQDNs deny without checking they are lists")
def test_fqdn_deny_with_toports_not_a_list_is_diagnosed() -> None:
    text = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
            "spec:\n  endpointSelector: {}\n  egressDeny:\n  - toFQDNs: []\n    toPorts: true\n")
    found = _lint(text)
    assert any(line.startswith("HF010 <stdin>:8") for line in found), found


# -- flow/reader.py: the line layer --------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_an_overlong_line_is_a_line_whatever_the_chunks(chunk_size: int) -> None:
    # Found by test_fuzz_flow_lines: a line longer than max_line_bytes that did not end in the
    # chunk it started in was a bad line but not a line (lines != events + bad_lines).
    doc = b'{"flow":{}}\n' + b"x" * 100 + b"\n" + b'{"flow":{}}'
    stats = ReadStats()
    events = list(FlowReader(["-"], stdin=io.BytesIO(doc), stats=stats, chunk_size=chunk_size, max_line_bytes=80))
    assert [e.line for e in events] == [1, 3]
    assert [b.line for b in stats.reported] == [2]
    assert (stats.lines, stats.events, stats.bad_lines) == (3, 2, 1)
