"""Enrich a stream of Hubble events: learn DNS, attribute verdicts, keep the flows valid Hubble.

The flow itself only ever gains the fields Hubble defines (`policy_log`, `*_allowed_by`,
`*_denied_by`), re-encoded in proto declaration order so `-o jsonpb` stays readable by
`hubble observe --input-file`. hushflow's own findings (which rule, file:line, expected or not,
disagreements) go in a separate `hushflow` object next to `flow` in the event wrapper; it is
written to jsonpb output only when asked for (`--with-findings`). Its fields:

    decision       denied | allowed | default-deny | not-enforced | unknown (what the policies say;
                   unknown: a rule that may apply has a named port the pod specs, `--pods`, do not resolve)
    observed       allowed | denied | default-deny | audit | dropped (what Cilium did)
    agrees         whether the two match
    expected       DROPPED/AUDIT only: true when a responsible rule's log value is expected
    rules          [{policy, kind, rule, file, line, log?}] the responsible rules
    default_deny_by  policies that put the endpoint in default-deny (default-deny only)
    policy_log     the tags of the flow after enrichment
    filled         the flow fields hushflow filled
    note           a disagreement with Cilium, in words
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import orjson

from hushflow.engine.attribution import Attributor
from hushflow.engine.explain import render
from hushflow.engine.pods import PodIndex, load_pods
from hushflow.flow.connection import connection_of
from hushflow.flow.protojson import encode_event
from hushflow.flow.reader import FlowEvent
from hushflow.flow.times import flow_time
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.model import PolicySet
from hushflow.proto import FLOW_DESCRIPTOR
from hushflow.sinks.hubble_format import FINDINGS_KEY


@cache
def _flow_field_order() -> dict[str, int]:
    return {field.name: index for index, field in enumerate(FLOW_DESCRIPTOR.fields)}


def reorder_flow(flow: dict[str, Any]) -> dict[str, Any]:
    """The flow with its keys in Flow's declaration order (only top-level keys are ever added)."""
    order = _flow_field_order()
    return dict(sorted(flow.items(), key=lambda item: order.get(item[0], 1 << 30)))


class Enricher:
    """Callable applied to each event, in stream order."""

    def __init__(self, attributor: Attributor, *, with_findings: bool = False, explain: bool = False) -> None:
        self.attributor = attributor
        self.with_findings = with_findings
        self.explain = explain
        #: Problems found in the inputs beside the flows (documents of a --pods file skipped):
        #: the run goes on, and a command exits 2 at the end, as for a bad flow line.
        self.input_problems = 0

    def __call__(self, event: FlowEvent) -> FlowEvent:
        data = event.data
        attribution = self.attributor.observe(data, explain=self.explain)
        if attribution is None:
            return event
        raw = event.raw
        if attribution.filled:
            data["flow"] = reorder_flow(data["flow"])
            raw = encode_event(data)
        if self.explain or self.with_findings:
            findings = attribution.findings()
            if self.explain:
                flow = data["flow"]
                conn = connection_of(flow, flow_time(flow, data))
                if conn is not None:
                    findings["explain"] = render(self.attributor, flow, conn, attribution, event.origin)
            data[FINDINGS_KEY] = findings
            if self.with_findings:
                raw = raw[:-1] + b',"' + FINDINGS_KEY.encode() + b'":' + orjson.dumps(findings) + b"}"
        elif not attribution.filled:
            return event
        return FlowEvent(raw, data, event.source, event.line)


def expected_predicate_from_cel(expressions: list[str]) -> Callable[[dict[str, Any]], bool]:
    """A flow predicate from CEL expressions over `_flow` (ORed), compiled once."""
    from hushflow.filter import compile_filters

    compiled = compile_filters([{"experimental": {"cel_expression": expressions}}], [])

    def predicate(flow: dict[str, Any]) -> bool:
        return bool(compiled.matches({"flow": flow}))

    return predicate


def make_attributor(
    policy_set: PolicySet,
    *,
    expected_logs: Iterable[str] | None = None,
    expected_cel: Sequence[str] = (),
    attribute_default_deny: bool = False,
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION,
    pods: PodIndex | None = None,
) -> Attributor:
    """The attributor `run` and `observe --enrich` use: drops are planned when their tag is one of
    `expected_logs` (default: the deny rules' log values) or `expected_cel` matches them.
    `cilium_version` (`--cilium-version`) decides whether Cilium's drop fields are completed
    (up to 1.19) or checked (1.20, see hushflow.engine.attribution). `pods` (`--pods`, the pod
    watch of `run`) resolves named ports; without it every named port is unresolved ("unknown").
    Raises ValueError, worded for the user, for an expression that does not compile."""
    predicate = None
    if expected_cel:
        from hushflow.filter import FilterError

        try:
            predicate = expected_predicate_from_cel(list(expected_cel))
        except FilterError as err:
            raise ValueError(f"--expected-cel: {err}") from None
    return Attributor(
        policy_set,
        expected_logs=expected_logs,
        expected_predicate=predicate,
        attribute_default_deny=attribute_default_deny,
        cilium_version=cilium_version,
        pods=pods,
    )


class PodSpecsError(ValueError):
    """A `--pods` file that cannot be used at all, worded for the user."""


def load_pod_specs(paths: Sequence[str]) -> tuple[PodIndex, list[str]]:
    """The pod index of `--pods FILE...` (`kubectl get pods -A -o yaml` or `-o json`), and the
    documents skipped, each with file:line. Raises PodSpecsError when a file cannot be read or
    parsed, or holds no pod at all: an incomplete index would answer "unknown" for pods that
    are there, and the user would not know why."""
    loaded = load_pods(paths)
    fatal = [str(p) for p in loaded.problems if p.whole_file]
    if fatal:
        raise PodSpecsError("; ".join(fatal))
    if not len(loaded.index):
        raise PodSpecsError(f"{', '.join(loaded.files) or ', '.join(paths)}: no Pod found "
                            "(expected `kubectl get pods -A -o yaml` or `-o json` output)")
    return loaded.index, [str(problem) for problem in loaded.problems]

