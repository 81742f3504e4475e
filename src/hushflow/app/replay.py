"""`hushflow replay`: what a policy change would do to the flows that were recorded.

The two sets are loaded as every job loads its policies (`app.policies.load_job_policies`, with
the same Cilium version and cluster options), from files and directories or from git
revisions:

    git:REV:PATH       the tree of PATH at REV (PATH relative to the repository's top)
    git:A..B:PATH      A's tree is the current set, B's the proposed one

A revision is checked with `git rev-parse --verify` and its tree written out with `git archive`
into a temporary directory (removed afterwards); every problem (git missing, not a repository,
unknown revision, no such path) is one line and exit 2.

Exit codes: 0 done; 1 a flow has one of the `--fail-on` changes; 2 bad input or usage (a
policy set with errors, a git problem, unreadable flows, or bad flow lines skipped: those are
reported with file:line and the output still covers the flows that could be read).
"""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from hushflow.app.policies import PolicyError, load_job_policies
from hushflow.app.progress import NO_PROGRESS, ProgressReporter
from hushflow.engine.replay import Change, FlowReplay, Replayer, ReplayGroup, ReplaySummary, Verdict
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.model import DEFAULT_CLUSTER_NAME, BuildOptions
from hushflow.policy.source import printable

EXIT_OK = 0
EXIT_CHANGES = 1  # --fail-on: a flow has one of those changes
EXIT_BAD_INPUT = 2  # as observe: bad input (or usage); the run still reports what it could read

GIT_PREFIX = "git:"
OUTPUTS = ("text", "json", "markdown")
#: The changes --fail-on accepts.
FAIL_KINDS = tuple(change.value for change in Change if change is not Change.UNCHANGED)
_GIT_TIMEOUT = 120.0


class ReplayError(Exception):
    """A problem with the command's inputs, worded for the user (one line)."""


@dataclass(slots=True)
class ReplayOptions:
    current: Sequence[str] = ()  # --policies: paths, or one git:REV:PATH / git:A..B:PATH
    proposed: Sequence[str] = ()  # --proposed: likewise
    input_files: Sequence[str] = ()
    output: str = "text"
    per_flow: bool = False
    fail_on: frozenset[Change] = frozenset()
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    cluster_name: str = DEFAULT_CLUSTER_NAME
    default_local_cluster: bool | None = None
    max_groups: int = 20  # Markdown: the first groups shown
    repo: str = "."  # where `git` runs (git -C)
    pods: Sequence[str] = ()  # --pods: pod specs named ports resolve from


@dataclass(slots=True)
class ReplayResult:
    summary: ReplaySummary
    flows: list[tuple[str, FlowReplay]] = field(default_factory=list)  # --per-flow: (file:line, replay)
    bad_lines: int = 0  # flow lines skipped, and documents of --pods files skipped
    current: tuple[str, ...] = ()
    proposed: tuple[str, ...] = ()


def parse_fail_on(text: str) -> frozenset[Change]:
    """`newly-dropped,newly-allowed` → the changes; ValueError naming the kinds allowed."""
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    bad = [kind for kind in kinds if kind not in FAIL_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown change kind {', '.join(map(repr, bad)) or repr(text)}; "
                         f"use one or more of {', '.join(FAIL_KINDS)}, comma-separated")
    return frozenset(Change(kind) for kind in kinds)


# -- git revisions ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GitSpec:
    revision: str
    path: str

    def __str__(self) -> str:
        return f"{GIT_PREFIX}{self.revision}:{self.path}"


def parse_git_spec(text: str) -> tuple[GitSpec, GitSpec | None]:
    """`git:REV:PATH` → (spec, None); `git:A..B:PATH` → (A's, B's). ReplayError when malformed."""
    body = text[len(GIT_PREFIX):]
    revision, colon, path = body.partition(":")
    if not colon or not revision:
        raise ReplayError(f"{printable(text)}: expected git:REV:PATH or git:A..B:PATH (PATH may be empty for the "
                          "whole tree, git:REV:)")
    path = path.strip("/") or "."
    if ".." in revision:
        first, _, second = revision.partition("..")
        if not first or not second or ".." in second:
            raise ReplayError(f"{printable(text)}: a range is A..B, both revisions given")
        return GitSpec(first, path), GitSpec(second, path)
    return GitSpec(revision, path), None


def _git(repo: str, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", repo, *args], capture_output=True, timeout=_GIT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise ReplayError("git revisions need git, and git is not installed (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise ReplayError(f"git {args[0]} took longer than {_GIT_TIMEOUT:g} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReplayError(printable(message[0] if message else f"git {args[0]} failed ({done.returncode})"))
    return done.stdout


def materialize(spec: GitSpec, repo: str, into: str) -> str:
    """Write the tree of `spec` under `into`; returns the directory (or file) to load."""
    if spec.revision.startswith("-"):
        raise ReplayError(f"{printable(str(spec))}: a revision cannot start with '-'")
    top = _git(repo, "rev-parse", "--show-toplevel").decode("utf-8", "replace").strip()
    try:
        commit = _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options",
                      spec.revision + "^{commit}").decode().strip()
    except ReplayError:
        raise ReplayError(f"{printable(str(spec))}: unknown revision {printable(spec.revision)!r} in {top}") from None
    if not commit:
        raise ReplayError(f"{printable(str(spec))}: unknown revision {printable(spec.revision)!r} in {top}")
    listed = _git(top, "ls-tree", "--name-only", commit, "--", spec.path) if spec.path != "." else b"."
    if not listed.strip():
        raise ReplayError(f"{printable(str(spec))}: no such path {printable(spec.path)!r} "
                          f"at {printable(spec.revision)}")
    archive = _git(top, "archive", "--format=tar", commit, "--", spec.path)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")  # no links out, no absolute paths, no devices
    except (tarfile.TarError, OSError) as err:  # a link out of the tree is refused, not followed
        raise ReplayError(f"{printable(str(spec))}: cannot write the tree out: {printable(str(err))}") from None
    return os.path.join(into, spec.path)


def _resolve(values: Sequence[str], role: str, repo: str, stack: ExitStack) -> tuple[list[str], list[str] | None]:
    """The paths to load for `values` (git specs written out to a temporary directory), and, for
    a git range, the other side's paths."""
    specs = [value for value in values if value.startswith(GIT_PREFIX)]
    if not specs:
        return list(values), None
    if len(values) > 1:
        raise ReplayError(f"{role}: a git revision is given alone, not with other paths")
    first, second = parse_git_spec(specs[0])

    def write(spec: GitSpec) -> str:
        into = stack.enter_context(tempfile.TemporaryDirectory(prefix="hushflow-replay-"))
        return materialize(spec, repo, into)

    if second is None:
        return [write(first)], None
    return [write(first)], [write(second)]


# -- the run -----------------------------------------------------------------------------------

def replay_flows(options: ReplayOptions, stderr: IO[str], progress: ProgressReporter = NO_PROGRESS) -> ReplayResult:
    """Load both sets, replay the flows (`progress` shows them); ReplayError for what stops the run."""
    from hushflow.app.observe import FlowGuard
    from hushflow.flow.reader import FlowReader, FlowReadError, ReadStats

    if not options.input_files:
        raise ReplayError("no flows: pass --input-file FILE (or - for stdin)")
    current_args, proposed_args = list(options.current), list(options.proposed)
    current_labels, proposed_labels = tuple(current_args), tuple(proposed_args)
    with ExitStack() as stack:
        current, from_range = _resolve(current_args, "--policies", options.repo, stack)
        proposed, from_proposed_range = _resolve(proposed_args, "--proposed", options.repo, stack)
        if from_range is not None:
            if proposed_args:
                raise ReplayError("--policies git:A..B:PATH names both sets: leave out --proposed")
            first, second = parse_git_spec(current_args[0])
            proposed, proposed_labels = from_range, (str(second),)
            current_labels = (str(first),)
        if from_proposed_range is not None:
            if current_args:
                raise ReplayError("--proposed git:A..B:PATH names both sets: leave out --policies")
            first, second = parse_git_spec(proposed_args[0])
            current, proposed = proposed, from_proposed_range
            current_labels, proposed_labels = (str(first),), (str(second),)
        if not current:
            raise ReplayError("the current policies are missing: --policies PATH (or a git:A..B:PATH range)")
        if not proposed:
            raise ReplayError("the proposed policies are missing: --proposed PATH (or a git:A..B:PATH range)")
        build = BuildOptions.for_cluster(options.cilium_version, options.cluster_name, options.default_local_cluster)
        sets = []
        for role, paths, labels in (("current", current, current_labels), ("proposed", proposed, proposed_labels)):
            try:
                sets.append(load_job_policies(paths, build).policy_set)
            except PolicyError as err:
                raise ReplayError(f"the {role} policies ({printable(', '.join(labels))}): {err}") from None
    pods, skipped = None, list[str]()
    if options.pods:
        from hushflow.app.enrich import PodSpecsError, load_pod_specs

        try:
            pods, skipped = load_pod_specs(options.pods)
        except PodSpecsError as err:
            raise ReplayError(f"--pods: {err}") from None
        for line in skipped:
            stderr.write(f"hushflow replay: --pods: {line}\n")
    replayer = Replayer(sets[0], sets[1], cilium_version=options.cilium_version, pods=pods)
    result = ReplayResult(ReplaySummary(), current=current_labels, proposed=proposed_labels)
    stats = ReadStats()
    guard = FlowGuard(stats)
    reader = FlowReader(list(options.input_files), stats=stats, prove_lines=False)

    def stage(event: Any) -> tuple[Any, FlowReplay | None]:
        return event, replayer.replay(event.data)

    add = result.summary.add
    try:
        for event, replay in guard.each(stage, progress.iterate(reader, "replaying flows")):
            if replay is None:
                continue
            add(replay)
            if options.per_flow and replay.change is not Change.UNCHANGED:
                result.flows.append((f"{event.source}:{event.line}", replay))
    except FlowReadError as err:
        raise ReplayError(str(err)) from None
    stats.write_report(stderr)
    result.bad_lines = stats.bad_lines + len(skipped)
    return result


def run_replay(options: ReplayOptions, *, stdout: IO[str], stderr: IO[str],
               progress: ProgressReporter = NO_PROGRESS) -> int:
    """`hushflow replay` with parsed options. Returns the exit code; never raises for user errors."""
    try:
        result = replay_flows(options, stderr, progress)
    except ReplayError as err:
        stderr.write(f"hushflow replay: {err}\n")
        return EXIT_BAD_INPUT
    if options.output == "json":
        stdout.write(render_json(result) + "\n")
    elif options.output == "markdown":
        stdout.write(render_markdown(result, options.max_groups))
    else:
        stdout.write(render_text(result))
    if result.bad_lines:
        stderr.write(f"hushflow replay: {result.bad_lines} bad input line(s) or document(s) skipped; exit 2\n")
        return EXIT_BAD_INPUT
    hits = [change for change in options.fail_on if result.summary.counts[change]]
    if hits:
        listed = ", ".join(f"{result.summary.counts[c]} {c.value}" for c in sorted(hits, key=lambda c: c.severity))
        stderr.write(f"hushflow replay: --fail-on: {listed}\n")
        return EXIT_CHANGES
    return EXIT_OK


# -- outputs -----------------------------------------------------------------------------------

def iso_time(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds (``2026-11-27T09:00:00.408Z``)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _counts(summary: ReplaySummary) -> dict[str, int]:
    return {change.value: summary.counts[change] for change in Change}


def _headline(summary: ReplaySummary) -> str:
    if not summary.flows:
        return "no policy verdicts in the flows: nothing to replay"
    parts = [f"{summary.counts[c]} {c.value}" for c in Change if summary.counts[c]]
    return f"{summary.flows} policy verdict(s) replayed: " + ", ".join(parts)


def _group_dict(group: ReplayGroup) -> dict[str, Any]:
    out = group.as_dict()
    out["first"], out["last"] = iso_time(group.first), iso_time(group.last)
    return out


def render_json(result: ReplayResult) -> str:
    """Stable keys, sorted; the groups most severe first, unchanged ones included."""
    summary = result.summary
    doc: dict[str, Any] = {
        "bad_lines": result.bad_lines,
        "changed": summary.changed,
        "counts": _counts(summary),
        "current": list(result.current),
        "flows": summary.flows,
        "groups": [_group_dict(group) for group in summary.sorted_groups()],
        "proposed": list(result.proposed),
    }
    if result.flows:
        doc["per_flow"] = [
            {**replay.as_dict(), "origin": origin, "time": iso_time(replay.time)} for origin, replay in result.flows
        ]
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    return [line.format(*headers).rstrip(), *(line.format(*row).rstrip() for row in rows)]


def _verdict_text(verdict: Verdict) -> str:
    return printable(verdict.describe())


def render_text(result: ReplayResult) -> str:
    summary = result.summary
    lines = [f"current:  {printable(', '.join(result.current))}",
             f"proposed: {printable(', '.join(result.proposed))}",
             _headline(summary)]
    groups = summary.sorted_groups(include_unchanged=False)
    if not groups:
        if summary.flows:
            lines.append("no change: every flow is decided the same way by both sets")
    else:
        rows = [[g.change.value, str(g.flows), printable(g.workload), g.direction.lower(), printable(g.peer),
                 g.port or "-", _verdict_text(g.current), _verdict_text(g.proposed)] for g in groups]
        lines.append("")
        lines.extend(_table(["CHANGE", "FLOWS", "WORKLOAD", "DIR", "PEER", "PORT", "CURRENT", "PROPOSED"], rows))
    if result.flows:
        lines.append("")
        lines.append("changed flows:")
        for origin, replay in result.flows:
            lines.append(
                f"{iso_time(replay.time)}  {replay.change.value}  {printable(replay.workload)} "
                f"{'->' if replay.direction == 'EGRESS' else '<-'} {printable(replay.peer)} {replay.port or '-'}  "
                f"now: {_verdict_text(replay.current)}  proposed: {_verdict_text(replay.proposed)}  "
                f"({printable(origin)})"
            )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A Markdown table cell: pipes, backticks and angle brackets from the flows cannot break out."""
    safe = printable(text.replace("\\", "\\\\")).replace("|", "\\|").replace("`", "'")
    return safe.replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(result: ReplayResult, max_groups: int = 20) -> str:
    """For a pull-request comment: the counts, then the first `max_groups` changed groups."""
    summary = result.summary
    lines = ["### hushflow replay", "",
             f"Current: {_cell(', '.join(result.current))} · proposed: {_cell(', '.join(result.proposed))}", ""]
    if not summary.changed:
        lines.append(f"**No change**: the {summary.flows} recorded policy verdict(s) are decided the same way.")
        return "\n".join(lines) + "\n"
    lines += ["| change | flows |", "|---|---:|"]
    lines += [f"| {change.value} | {summary.counts[change]} |" for change in Change]
    groups = summary.sorted_groups(include_unchanged=False)
    lines += ["", "| change | flows | workload | peer | port | current | proposed | first seen | last seen |",
              "|---|---:|---|---|---|---|---|---|---|"]
    for g in groups[:max_groups]:
        arrow = "→" if g.direction == "EGRESS" else "←"
        lines.append(f"| {g.change.value} | {g.flows} | {_cell(g.workload)} | {arrow} {_cell(g.peer)} | "
                     f"{_cell(g.port or '-')} | {_cell(g.current.describe())} | {_cell(g.proposed.describe())} | "
                     f"{iso_time(g.first)} | {iso_time(g.last)} |")
    if len(groups) > max_groups:
        lines.append("")
        lines.append(f"… and {len(groups) - max_groups} more group(s) (`hushflow replay -o text` lists them all).")
    return "\n".join(lines) + "\n"
