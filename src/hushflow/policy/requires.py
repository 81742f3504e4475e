"""`fromRequires`/`toRequires` from Cilium 1.19 on: removed from the API (cilium#42615).

Cilium 1.17 deprecated them; 1.19 removed what they do (cilium#42615) and kept the fields in
the API only as deprecated ones that must stay empty: `[]string` with `MaxItems=0`
(cilium#43167; v1.19.4 pkg/policy/api/ingress.go, egress.go), so the 1.19 CRD schema has
`maxItems: 0`. The API server then rejects a policy with any entry in them, from every client
(it is a schema check, not strict field validation); `fromRequires: []` stays valid. It is an
error (HF010, the schema code).

`requires_problems` is a check of its own so that the loader can run it whatever schema it
validates with; the loader drops the bundled 1.19+ schema's own problems for these fields
and keeps this message (`requires_message`) for them instead of the generic one.
"""

from __future__ import annotations

from typing import Any

from hushflow.policy.diagnostics import Diagnostic
from hushflow.policy.model import REQUIRES_REMOVED_IN
from hushflow.policy.yamlsource import Manifest

FIELDS = {"ingress": "fromRequires", "ingressDeny": "fromRequires", "egress": "toRequires", "egressDeny": "toRequires"}
HINT = (
    "write the required labels into each from/toEndpoints selector they should narrow "
    "(matchLabels or matchExpressions); lint with --cilium-version 1.18 only if the cluster still runs 1.18"
)


def requires_message(field: str, only_requirements: bool) -> str:
    what = (
        "written without it, the entry is `{}` and selects no peer"
        if only_requirements
        else "written without it, its requirements narrow no rule: peers they kept out are let in"
    )
    return (
        f"{field} takes no entries from Cilium 1.19: cilium#42615 removed what it does and the CRD keeps it "
        f"only as a deprecated field that must stay empty (maxItems: 0, cilium#43167), so the API server "
        f"rejects the policy from any client; {what}"
    )


def requires_problems(manifest: Manifest, cilium_version: tuple[int, int]) -> list[Diagnostic]:
    """An HF010 for every fromRequires/toRequires when the cluster runs Cilium >= 1.19."""
    if cilium_version < REQUIRES_REMOVED_IN:
        return []
    data = manifest.data
    rules: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(data.get("spec"), dict):
        rules.append((("spec",), data["spec"]))
    specs = data.get("specs")
    if isinstance(specs, list):
        rules.extend((("specs", i), spec) for i, spec in enumerate(specs) if isinstance(spec, dict))
    out: list[Diagnostic] = []
    for path, rule in rules:
        for section, field in FIELDS.items():
            entries = rule.get(section)
            if not isinstance(entries, list):
                continue
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict) or field not in entry or entry[field] == []:
                    continue  # an empty list is valid in every version
                only = all(key == field for key in entry)
                out.append(
                    Diagnostic(
                        "HF010",
                        requires_message(field, only),
                        manifest.locate((*path, section, index, field)),
                        HINT,
                    )
                )
    return out
