"""`fromRequires`/`toRequires` from Cilium 1.19 on: removed from the API (cilium#42615).

Cilium 1.17 deprecated them; 1.19 removed the fields from its Go types, so the 1.19 CRD
schema has no such property. `kubectl apply` (strict field validation) rejects the policy;
a client that does not validate strictly has the field pruned, and the entry loses its
requirements (an entry that had only requirements becomes `{}`). Either way it is an error
(HF010, the schema code: the field is not in the 1.19 schema).

`requires_problems` is a check of its own so that the loader can run it whatever schema it
validates with; when the bundled 1.19 schema reports these fields as unknown, the loader
should keep this message (`requires_message`) for them instead of the generic one.
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
        "the entry then selects no peer (it becomes `{}`)"
        if only_requirements
        else "its requirements then narrow no rule: peers they kept out are let in"
    )
    return (
        f"{field} was removed in Cilium 1.19 (cilium#42615): the CRD has no such field, so kubectl apply "
        f"rejects the policy; clients that do not validate strictly prune it and {what}"
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
                if not isinstance(entry, dict) or field not in entry:
                    continue
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
