"""`hushflow report`: the triage report of recorded flows: which unexpected drops, where, how often.

The flows are attributed exactly as `hushflow run` and `observe --enrich` attribute them (one
`make_attributor`, the same `--expected-log` / `--expected-cel`), so a drop is "unexpected"
here when, and only when, the daemon would count it in `hushflow_unexpected_drops_total` and
send an event for it. Unexpected drops are grouped by the workload that dropped them, the peer
(its DNS name when Hubble or an earlier DNS answer in the flows names it, else the pod's
namespace/workload, else the IP), the port and the deciding rule; planned drops are counted
apart, by tag. Each group carries a one-line suggestion: `hushflow suggest`'s verified allow and
block (`suggestions_of`), or any other through the `suggest` hook of :func:`build_report`.

Outputs are deterministic (groups by count, then by their keys; JSON with sorted keys), so a
report can be committed and diffed.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from hushflow.app.progress import NO_PROGRESS, ProgressReporter
from hushflow.engine.attribution import Attribution, Attributor
from hushflow.engine.replay import peer_name, workload_name
from hushflow.flow.connection import Connection
from hushflow.flow.reader import FlowEvent
from hushflow.policy.model import BuildOptions, Rule

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # as observe: bad lines or flows were skipped, or the policies/input cannot be used
FORMATS = ("text", "json", "markdown")
DEFAULT_TOP = 10


class ReportError(Exception):
    """A report that cannot be made (policies refused, an input missing), worded for the user."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    policies: tuple[str, ...]
    input_files: tuple[str, ...]
    output: str = "text"  # text | json | markdown
    top: int = DEFAULT_TOP
    expected_logs: tuple[str, ...] | None = None  # --expected-log (None: the deny rules' log values)
    expected_cel: tuple[str, ...] = ()
    attribute_default_deny: bool = False
    cilium_version: tuple[int, int] = (1, 18)
    cluster_name: str = "default"
    default_local_cluster: bool | None = None
    suggestions: bool = True  # each group's fix from `hushflow suggest` (--no-suggest: none)


@dataclass(frozen=True, slots=True, order=True)
class DropKey:
    """What one group of unexpected drops has in common."""

    workload: str  # "namespace/workload" of the endpoint that dropped them
    peer: str  # DNS name, else pod "namespace/workload", else IP
    port: str  # "443/TCP" ("" when the flow has none)
    direction: str  # "egress" | "ingress"
    rule: str  # the deciding rule(s) "Kind/namespace/name", or the outcome when none decides: "default-deny"
    default_deny_by: tuple[str, ...] = ()  # default-deny: the policies that select the endpoint


@dataclass(slots=True)
class DropGroup:
    key: DropKey
    count: int = 0
    first: float = 0.0  # flow time, seconds since the epoch
    last: float = 0.0
    where: str = ""  # the first flow's file:line, to open it (`hushflow explain`)
    suggestion: str | None = None  # one line from `hushflow suggest`, when it has one

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workload": self.key.workload, "peer": self.key.peer, "port": self.key.port,
            "direction": self.key.direction, "rule": self.key.rule, "default_deny_by": list(self.key.default_deny_by),
            "count": self.count,
            "first_seen": _iso(self.first), "last_seen": _iso(self.last), "first_flow": self.where,
        }
        if self.suggestion is not None:
            out["suggestion"] = self.suggestion
        return out


@dataclass(slots=True)
class TriageReport:
    flows: int = 0
    verdicts: int = 0  # policy verdicts and drops attributed
    unexpected: int = 0  # drops nobody planned (what the daemon counts and alerts on)
    planned: int = 0  # drops a known tag (or --expected-cel) marks as planned
    planned_by_tag: Counter[str] = field(default_factory=Counter)
    groups: list[DropGroup] = field(default_factory=list)  # every group, most drops first
    bad_inputs: int = 0  # lines and flows skipped (reported on stderr with file:line)

    def top(self, count: int) -> list[DropGroup]:
        return self.groups[:count]

    def as_dict(self, top: int) -> dict[str, Any]:
        return {
            "flows": self.flows,
            "policy_verdicts": self.verdicts,
            "unexpected_drops": self.unexpected,
            "planned_drops": self.planned,
            "planned_by_tag": dict(sorted(self.planned_by_tag.items())),
            "groups": len(self.groups),
            "top": [group.as_dict() for group in self.top(top)],
            "skipped_inputs": self.bad_inputs,
        }


#: A suggestion for a group of unexpected drops (one line), or None: `hushflow suggest`'s hook.
SuggestFn = Callable[[DropGroup], "str | None"]


def rule_name(rule: Rule) -> str:
    """"Kind/namespace/name" (cluster-wide: "Kind/name"), as `hushflow replay` names rules."""
    ref = rule.policy
    return f"{ref.kind}/{ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind}/{ref.name}"


def _rule_of(attribution: Attribution) -> tuple[str, tuple[str, ...]]:
    """The deciding rule(s), and for a default-deny the policies that put the endpoint in it."""
    if attribution.responsible:
        return ", ".join(sorted({rule_name(rule) for rule in attribution.responsible})), ()
    decision = attribution.decision
    by = tuple(sorted({rule_name(rule) for rule in decision.default_deny_rules}))
    # What the policies say when they name no rule: default-deny, unknown (a named port), ...
    return decision.outcome, by if decision.outcome == "default-deny" else ()


def port_of(conn: Connection) -> str:
    return f"{conn.port}/{conn.protocol}" if conn.protocol else ""


class ReportBuilder:
    """Takes events in stream order (DNS answers first teach the names), keeps the counts."""

    def __init__(self, attributor: Attributor) -> None:
        self.attributor = attributor
        self.report = TriageReport()
        self._groups: dict[DropKey, DropGroup] = {}

    def add(self, event: FlowEvent) -> None:
        data = event.data
        if not isinstance(data.get("flow"), dict):
            return
        self.report.flows += 1
        attribution = self.attributor.observe(data)
        if attribution is None or attribution.connection is None:
            return
        self.report.verdicts += 1
        if attribution.expected is None:
            return
        if attribution.expected:
            self.report.planned += 1
            self.report.planned_by_tag[",".join(attribution.policy_log) or "(expected-cel)"] += 1
            return
        self.report.unexpected += 1
        conn = attribution.connection
        local = conn.local
        key = DropKey(workload_name(local, conn.local_ip), peer_name(conn, self.attributor.dns),
                      port_of(conn), conn.direction, *_rule_of(attribution))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = DropGroup(key, first=conn.time, last=conn.time, where=event.origin)
        group.count += 1
        group.first = min(group.first, conn.time)
        group.last = max(group.last, conn.time)

    def finish(self, suggest: SuggestFn | None = None, top: int | None = None) -> TriageReport:
        groups = sorted(self._groups.values(), key=lambda g: (-g.count, g.key))
        if suggest is not None:
            for group in groups[:top] if top is not None else groups:
                group.suggestion = suggest(group)
        self.report.groups = groups
        return self.report


def build_report(events: Iterable[FlowEvent], attributor: Attributor, *, suggest: SuggestFn | None = None,
                 top: int | None = None) -> TriageReport:
    """The triage report of `events` (in stream order); `suggest` is asked about the `top` groups."""
    builder = ReportBuilder(attributor)
    for event in events:
        builder.add(event)
    return builder.finish(suggest, top)


def suggestions_of(options: ReportOptions, stderr: IO[str]) -> SuggestFn | None:
    """`hushflow suggest`'s verified fixes (hushflow.app.suggest: an allow and a block for each
    group of unexpected drops, each verified by a replay of the recorded flows), one line per
    group of the report: that of the suggest group holding the report group's first flow. None
    when the flows cannot be read again (stdin) or suggest fails (said on `stderr`)."""
    from hushflow.app.policies import PolicyError
    from hushflow.app.suggest import SuggestError, SuggestOptions, suggest

    if "-" in options.input_files:
        stderr.write("hushflow: no suggestions for flows read from stdin (suggest reads them again)\n")
        return None
    try:
        result = suggest(SuggestOptions(
            policies=options.policies, inputs=options.input_files, expected_logs=options.expected_logs,
            cilium_version=options.cilium_version, cluster_name=options.cluster_name,
            default_local_cluster=options.default_local_cluster,
        ))
    except (PolicyError, SuggestError) as exc:
        stderr.write(f"hushflow: no suggestions: {exc}\n")
        return None
    lines: dict[str, str] = {}
    for group, suggestions in result.by_group():
        parts = []
        for suggestion in suggestions:
            if suggestion.verified and suggestion.edit is not None:
                parts.append(f"{suggestion.action}: {suggestion.edit.describe()}")
            else:
                # the reason's first clause: the flow it names is in `hushflow suggest`'s output
                parts.append(f"{suggestion.action}: none ({suggestion.reason.split(' (first: ')[0]})")
        line = "; ".join(parts)
        for index in group.indices:
            lines[result.recorded.origins[index]] = line
    return lambda group: lines.get(group.where)


# -- rendering ---------------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_COLUMNS = ("COUNT", "WORKLOAD", "PEER", "PORT", "RULE", "FIRST SEEN", "LAST SEEN")


def _row(group: DropGroup) -> tuple[str, ...]:
    key = group.key
    workload = key.workload if key.direction == "egress" else f"{key.workload} (ingress)"
    rule = key.rule
    if key.default_deny_by:
        rule += f" ({len(key.default_deny_by)} polic{'y' if len(key.default_deny_by) == 1 else 'ies'} select it)"
    return (str(group.count), workload, key.peer, key.port or "-", rule, _iso(group.first), _iso(group.last))


def _headline(report: TriageReport, bold: str = "") -> str:
    """The counts: flows, verdicts, unexpected drops (in `bold` markers), planned drops by tag."""
    tags = ", ".join(f"{tag} {count}" for tag, count in sorted(report.planned_by_tag.items()))
    return (f"{report.flows} flows, {report.verdicts} policy verdicts: {bold}{report.unexpected} unexpected "
            f"drop(s){bold} in {len(report.groups)} group(s), {report.planned} planned drop(s)"
            + (f" ({tags})" if tags else ""))


def render_text(report: TriageReport, top: int) -> str:
    out = io.StringIO()
    out.write(_headline(report) + "\n")
    groups = report.top(top)
    if not groups:
        out.write("no unexpected drops\n")
        return out.getvalue()
    out.write(f"\ntop {len(groups)} unexpected drops:\n")
    rows = [_COLUMNS, *(_row(group) for group in groups)]
    widths = [max(len(row[index]) for row in rows) for index in range(len(_COLUMNS))]
    for number, row in enumerate(rows):
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
        group = groups[number - 1] if number else None
        if group is not None and group.suggestion:
            out.write(f"    suggestion: {group.suggestion}\n")
    return out.getvalue()


def _md(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: TriageReport, top: int) -> str:
    out = io.StringIO()
    out.write("### hushflow triage report\n\n" + _headline(report, bold="**") + ".\n")
    groups = report.top(top)
    if not groups:
        out.write("\nNo unexpected drops.\n")
        return out.getvalue()
    suggestions = any(group.suggestion for group in groups)
    columns = [*(name.capitalize() for name in _COLUMNS), *(["Suggestion"] if suggestions else [])]
    out.write("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
    for group in groups:
        cells = [*_row(group), *([group.suggestion or ""] if suggestions else [])]
        out.write("| " + " | ".join(_md(cell) for cell in cells) + " |\n")
    if len(report.groups) > len(groups):
        out.write(f"\n... and {len(report.groups) - len(groups)} more group(s).\n")
    return out.getvalue()


def render_json(report: TriageReport, top: int) -> str:
    return orjson.dumps(report.as_dict(top), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"


RENDERERS: dict[str, Callable[[TriageReport, int], str]] = {
    "text": render_text, "json": render_json, "markdown": render_markdown,
}


# -- the job -----------------------------------------------------------------------------------


def make_report(options: ReportOptions, stderr: IO[str], *, suggest: SuggestFn | None = None,
                stdin: Any = None, progress: ProgressReporter = NO_PROGRESS) -> TriageReport:
    """Read and attribute the flows of `options` and group their unexpected drops. Bad lines and
    flows are skipped and reported on `stderr` (file:line), and counted in `bad_inputs`;
    `progress` shows the flows read.
    Raises ReportError when the policies are refused or the input cannot be read at all."""
    from pathlib import Path

    from hushflow.app.enrich import make_attributor
    from hushflow.app.observe import FlowGuard
    from hushflow.app.policies import PolicyError, load_job_policies
    from hushflow.flow.reader import FlowReader, FlowReadError, ReadStats

    if not options.policies:
        raise ReportError("say which policies decide the flows: --policies PATH")
    if not options.input_files:
        raise ReportError("no input: pass --input-file FILE (or - for stdin)")
    missing = [path for path in options.input_files if path != "-" and not Path(path).is_file()]
    if missing:
        raise ReportError(f"no such input file: {', '.join(missing)}")
    if options.top < 1:
        raise ReportError(f"--top {options.top}: give 1 or more")
    try:
        loaded = load_job_policies(options.policies, BuildOptions.for_cluster(
            options.cilium_version, options.cluster_name, options.default_local_cluster))
    except PolicyError as exc:
        raise ReportError(str(exc)) from None
    try:
        attributor = make_attributor(
            loaded.policy_set, expected_logs=options.expected_logs, expected_cel=options.expected_cel,
            attribute_default_deny=options.attribute_default_deny, cilium_version=options.cilium_version,
        )
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    stats = ReadStats()
    reader = FlowReader(list(options.input_files), stats=stats, stdin=stdin)
    guard = FlowGuard(stats)
    builder = ReportBuilder(attributor)
    try:
        for _ in guard.each(builder.add, progress.iterate(reader, "reading flows")):
            pass
    except FlowReadError as exc:
        raise ReportError(str(exc)) from None
    stats.write_report(stderr)
    if suggest is None and options.suggestions and builder.report.unexpected:
        suggest = suggestions_of(options, stderr)
    report = builder.finish(suggest, options.top)
    report.bad_inputs = stats.bad_lines
    return report


def run_report(options: ReportOptions, stdout: IO[str], stderr: IO[str], *, suggest: SuggestFn | None = None,
               stdin: Any = None, progress: ProgressReporter = NO_PROGRESS) -> int:
    """`hushflow report`: write the report; 0, or 2 when input was skipped or the report cannot be made."""
    try:
        report = make_report(options, stderr, suggest=suggest, stdin=stdin, progress=progress)
    except ReportError as exc:
        stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    stdout.write(RENDERERS[options.output](report, options.top))
    return EXIT_BAD_INPUT if report.bad_inputs else EXIT_OK


__all__ = [
    "DropGroup", "DropKey", "ReportBuilder", "ReportError", "ReportOptions", "TriageReport", "build_report",
    "make_report", "render_json", "render_markdown", "render_text", "rule_name", "run_report",
]
