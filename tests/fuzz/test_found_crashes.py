"""Crashes the fuzz targets found, each as the smallest input that shows it.

A crash in a file another session owns is an xfail (strict) test here, with its owner in the
reason, and a `harness.KNOWN` entry so the fuzz targets go on past it; when the fix lands the
test passes, strict xfail turns that into a failure, and both the mark and the entry go.
"""

from __future__ import annotations

import io

import pytest

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
