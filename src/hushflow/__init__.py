"""hushflow: a companion to Cilium and Hubble.

Write the policy you meant (FQDN denies included), see which rule produced every verdict, and
alert only on the drops nobody planned. What a Python program uses, in the pipeline's order::

    import hushflow

    loaded = hushflow.load_policies(["policies/"], hushflow.BuildOptions(cilium_version=(1, 18)))
    problems = hushflow.lint_paths(["policies/"])                 # line-numbered diagnostics
    attributor = hushflow.Attributor(loaded.policy_set)
    keep = hushflow.compile_filters([{"verdict": ["DROPPED"]}], [])
    for event in hushflow.FlowReader(["flows.jsonl"]):            # or HubbleSource("localhost:4245")
        findings = attributor.observe(event.data)                   # fills policy_log on drops
        if findings is not None and keep(event.data):
            ...

What a policy change would do to recorded flows is `Replayer(current, proposed).replay(event)`
(`hushflow replay`). The daemon (`hushflow run`) is `Daemon(RunOptions(...))` with `run_daemon`; the FQDN-deny
compiler (`hushflow compile`) is `run_compile(CompileJob(...))`. Names load on first use, so
``import hushflow`` stays cheap (the CLI imports only what a command needs). Everything not
listed in ``__all__`` is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # policies: load, validate, lint
    "BuildOptions": "hushflow.policy.model",
    "PolicySet": "hushflow.policy.model",
    "LoadedPolicies": "hushflow.policy.loading",
    "load_policies": "hushflow.policy.loading",
    "Diagnostic": "hushflow.policy.diagnostics",
    "Severity": "hushflow.policy.diagnostics",
    "LintReport": "hushflow.policy.lint",
    "lint_paths": "hushflow.policy.lint",
    "lint_policy_set": "hushflow.policy.lint",
    # flows: read them, and what they carry
    "FlowEvent": "hushflow.flow.reader",
    "FlowReader": "hushflow.flow.reader",
    "FlowSource": "hushflow.flow.sources",
    "FileSource": "hushflow.flow.sources",
    "HubbleSource": "hushflow.flow.sources",
    "Connection": "hushflow.flow.connection",
    "connection_of": "hushflow.flow.connection",
    "DnsAnswer": "hushflow.flow.dns",
    "dns_answer_of": "hushflow.flow.dns",
    # filters: Hubble's FlowFilter semantics and CEL
    "FilterError": "hushflow.filter.field_filter",
    "compile_filters": "hushflow.filter.flow_filter",
    # attribution
    "Attribution": "hushflow.engine.attribution",
    "Attributor": "hushflow.engine.attribution",
    "DnsKnowledge": "hushflow.engine.dns_knowledge",
    # what a policy change would do to recorded flows (`hushflow replay`)
    "Change": "hushflow.engine.replay",
    "FlowReplay": "hushflow.engine.replay",
    "Replayer": "hushflow.engine.replay",
    "ReplaySummary": "hushflow.engine.replay",
    "Verdict": "hushflow.engine.replay",
    "summarize": "hushflow.engine.replay",
    # the jobs
    "CompileJob": "hushflow.app.compile",
    "CompileReport": "hushflow.app.compile",
    "run_compile": "hushflow.app.compile",
    "Daemon": "hushflow.app.daemon",
    "RunOptions": "hushflow.app.daemon",
    "run_daemon": "hushflow.app.daemon",
}

__all__ = [
    "Attribution",
    "Attributor",
    "BuildOptions",
    "Change",
    "CompileJob",
    "CompileReport",
    "Connection",
    "Daemon",
    "Diagnostic",
    "DnsAnswer",
    "DnsKnowledge",
    "FileSource",
    "FilterError",
    "FlowEvent",
    "FlowReader",
    "FlowReplay",
    "FlowSource",
    "HubbleSource",
    "LintReport",
    "LoadedPolicies",
    "PolicySet",
    "ReplaySummary",
    "Replayer",
    "RunOptions",
    "Severity",
    "Verdict",
    "__version__",
    "compile_filters",
    "connection_of",
    "dns_answer_of",
    "lint_paths",
    "lint_policy_set",
    "load_policies",
    "run_compile",
    "run_daemon",
    "summarize",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hushflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from hushflow.app.compile import CompileJob, CompileReport, run_compile
    from hushflow.app.daemon import Daemon, RunOptions, run_daemon
    from hushflow.engine.attribution import Attribution, Attributor
    from hushflow.engine.dns_knowledge import DnsKnowledge
    from hushflow.engine.replay import Change, FlowReplay, Replayer, ReplaySummary, Verdict, summarize
    from hushflow.filter.field_filter import FilterError
    from hushflow.filter.flow_filter import compile_filters
    from hushflow.flow.connection import Connection, connection_of
    from hushflow.flow.dns import DnsAnswer, dns_answer_of
    from hushflow.flow.reader import FlowEvent, FlowReader
    from hushflow.flow.sources import FileSource, FlowSource, HubbleSource
    from hushflow.policy.diagnostics import Diagnostic, Severity
    from hushflow.policy.lint import LintReport, lint_paths, lint_policy_set
    from hushflow.policy.loading import LoadedPolicies, load_policies
    from hushflow.policy.model import BuildOptions, PolicySet
