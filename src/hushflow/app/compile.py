"""`hushflow compile` as a library call: policies in, Cilium-runnable manifests and DNS files out.

Steps: load and check the policies; load the learned state; resolve every denied matchName;
learn from DNS answers in recorded flows (optional); expire what timed out; compile; write the
directory (and apply to a cluster, when asked); save the state.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hushflow.app.cluster import Cluster
from hushflow.app.policies import PolicyError, diagnostics_listing, load_job_policies
from hushflow.app.progress import NO_PROGRESS, ProgressReporter
from hushflow.enforce.compile import CompileOptions, CompileOutput, compile_policies
from hushflow.enforce.denies import FqdnDeny, fqdn_denies
from hushflow.enforce.dnsblock import (
    BlockAnswer,
    BlockedName,
    blocky_answer_note,
    blocky_config,
    coredns_snippet,
    rpz_zone,
)
from hushflow.enforce.kube import ApplyResult
from hushflow.enforce.learner import DEFAULT_MAX_PER_NAME, DEFAULT_MAX_TOTAL, DenyLearner, SharedIpMode
from hushflow.enforce.protect import ProtectedAddresses
from hushflow.enforce.resolver import LookupFn, PreResolver, dnspython_lookup
from hushflow.enforce.state import DEFAULT_MIN_TTL, DenyState
from hushflow.enforce.writer import WriteResult, write_directory
from hushflow.flow.dns import dns_answer_of
from hushflow.flow.times import FlowTimes
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.lint import lint_policy_set
from hushflow.policy.loading import LoadedPolicies
from hushflow.policy.model import DEFAULT_CLUSTER_NAME, BuildOptions
from hushflow.policy.network_policy import NETWORK_POLICY


class CompileError(Exception):
    """A reason not to compile, already worded for the user (file:line included)."""


@dataclass(frozen=True, slots=True)
class CompileJob:
    policies: Sequence[str]
    out_dir: str | None = None
    state_path: str | None = None  # default: <out_dir>/.hushflow-state.json
    flows: Sequence[str] = ()
    resolve: bool = True
    nameservers: Sequence[str] = ()
    shared_ip: SharedIpMode = "skip"
    group_cap: int = 1000
    max_total: int = DEFAULT_MAX_TOTAL
    max_per_name: int = DEFAULT_MAX_PER_NAME
    protect_cidrs: tuple[str, ...] | None = None  # never denied from DNS; None: the private and shared ranges
    min_ttl: float = DEFAULT_MIN_TTL
    grace: float = 0.0
    allow_unobserved: bool = False
    dns_answer: BlockAnswer = "nxdomain"
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    cluster_name: str = DEFAULT_CLUSTER_NAME
    default_local_cluster: bool | None = None  # the agent's policy-default-local-cluster; None: the default
    clock: Literal["wall", "flows"] = "wall"


@dataclass(slots=True)
class CompileReport:
    output: CompileOutput
    state: DenyState
    written: WriteResult | None = None
    resolved: dict[str, list[str]] = field(default_factory=dict)
    resolve_errors: dict[str, str] = field(default_factory=dict)
    learned_from_flows: int = 0
    expired: int = 0
    notes: list[str] = field(default_factory=list)
    unsupported_rpz: list[str] = field(default_factory=list)
    applied: ApplyResult | None = None  # with a cluster: what server-side apply did (or would do)
    flow_lines_skipped: int = 0  # --flows lines that were not Hubble events, or flows that could not be read

    def lines(self) -> list[str]:
        out = []
        for deny in self.output.denies:
            ips = self.state.ips(deny.id)
            shared = self.state.shared.get(deny.id, {})
            line = f"{deny.describe()}: {len(ips)} IPs"
            if shared:
                line += f", {len(shared)} shared with allowed names (kept out: see --shared-ip)"
            out.append(line)
        for name, error in sorted(self.resolve_errors.items()):
            out.append(f"resolving {name} failed ({error}); nothing was removed")
        out.extend(self.notes)
        return out


def state_path_for(job: CompileJob) -> str | None:
    if job.state_path:
        return job.state_path
    if job.out_dir:
        return f"{job.out_dir.rstrip('/')}/.hushflow-state.json"
    return None


def check_policies(loaded: LoadedPolicies, allow_unobserved: bool) -> None:
    if allow_unobserved:
        return
    unobserved = [
        d
        for d in lint_policy_set(loaded.policy_set)
        if d.code == "HF030" and ".egressDeny[" in f".{d.location.field}"
    ]
    if unobserved:
        raise CompileError(
            diagnostics_listing(
                "these FQDN denies apply to endpoints whose DNS traffic no L7 DNS rule sends through Cilium's "
                "DNS proxy, so their IPs could only come from hushflow's own resolution. Add the DNS rule, "
                "or pass --allow-unobserved to accept that",
                unobserved,
            )
        )


def blocked_entries(denies: Sequence[FqdnDeny]) -> list[BlockedName]:
    entries: list[BlockedName] = []
    for deny in denies:
        reason = deny.describe() + (f" (log: {deny.rule.log_value})" if deny.rule.log_value else "")
        entries.extend(BlockedName(selector, reason) for selector in deny.selectors)
    return entries


_SOA_SERIAL = re.compile(r"IN SOA \S+ \S+ \((\d+) ")


def dns_files(
    denies: Sequence[FqdnDeny], answer: BlockAnswer, serial: int, previous_rpz: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """CoreDNS snippet, RPZ zone and Blocky config for the denied names; and the patterns RPZ
    cannot express.

    The zone keeps its previous serial while its content is unchanged (a second run changes
    nothing); when the content changes the serial grows, as secondaries need.
    """
    entries = blocked_entries(denies)
    # An SOA serial is 32 bits: a clock (flow times are input too) or an earlier zone past that is
    # held at the top, never a failure (RFC 1982 wrap-around would read as "older" to secondaries).
    top = 2**32 - 1
    serial = max(0, min(serial, top))
    previous = _SOA_SERIAL.search(previous_rpz or "")
    if previous is not None:
        old_serial = max(0, min(int(previous.group(1)), top))
        same = rpz_zone(entries, answer=answer, serial=old_serial)
        unchanged = previous_rpz is not None and previous_rpz.endswith(same.text)
        serial = old_serial if unchanged else max(serial, min(old_serial + 1, top))
    rpz = rpz_zone(entries, answer=answer, serial=serial)
    files = {
        "dns/coredns-hushflow.conf": coredns_snippet(entries, answer=answer),
        "dns/hushflow.rpz": rpz.text,
        "dns/blocky-hushflow.yml": blocky_config(entries, answer=answer).text,
    }
    return files, [str(b.selector) for b in rpz.unsupported]


def _stepping(lookup: LookupFn, step: Callable[[], None]) -> LookupFn:
    """`lookup`, taking one step of the bar the first time it is asked about a name."""
    asked: set[str] = set()

    def ask(name: str, rdtype: str) -> tuple[list[str], float]:
        if name not in asked:
            asked.add(name)
            step()
        return lookup(name, rdtype)

    return ask


def run_compile(
    job: CompileJob,
    *,
    lookup: LookupFn | None = None,
    now: Callable[[], float] = time.time,
    progress: Callable[[str], None] | None = None,
    cluster: Cluster | None = None,
    dry_run: bool = False,
    bars: ProgressReporter = NO_PROGRESS,
) -> CompileReport:
    """Run the whole compile, and with a `cluster` its apply step: the CiliumCIDRGroups hushflow
    applied earlier give their IPs back to the state (the cluster is state too), and the result is
    server-side applied (`dry_run`: only diffed) once it is written. Raises CompileError, and
    ClusterError when the cluster cannot be read."""
    say = progress or (lambda _message: None)
    seed_groups = cluster.applied_groups() if cluster is not None else ()
    try:
        loaded = load_job_policies(job.policies, BuildOptions.for_cluster(
            job.cilium_version, job.cluster_name, job.default_local_cluster))
    except PolicyError as exc:
        raise CompileError(str(exc)) from None
    check_policies(loaded, job.allow_unobserved)
    denies = fqdn_denies(loaded.policy_set)
    state_path = state_path_for(job)
    state = DenyState.load(state_path, job.min_ttl, job.grace) if state_path else DenyState(job.min_ttl, job.grace)
    if seed_groups:
        state.seed_from_groups(seed_groups, now())
    gone = state.keep_only(deny.id for deny in denies)
    try:
        protected = ProtectedAddresses.from_cidrs(job.protect_cidrs)
    except ValueError as exc:
        raise CompileError(f"--protect-cidr: {exc}") from None
    learner = DenyLearner(loaded.policy_set, denies, state, shared_ip=job.shared_ip, max_total=job.max_total,
                          max_per_name=job.max_per_name, protected=protected)
    report = CompileReport(CompileOutput(), state)
    report.notes.extend(learner.repair_state())
    network_policies = sum(1 for policy in loaded.policy_set.policies if policy.ref.kind == NETWORK_POLICY)
    if network_policies:  # Kubernetes' own kind: Cilium enforces it as written, hushflow never rewrites it
        report.notes.append(f"read {network_policies} NetworkPolicy object(s): left as they are (not written to --out)")
    if loaded.cluster_network_policies:  # likewise: Cilium enforces them as written
        report.notes.append(f"read {len(loaded.cluster_network_policies)} ClusterNetworkPolicy object(s): left as "
                            "they are (not written to --out)")
    if gone:
        report.notes.append(f"forgot {len(gone)} deny(ies) no longer in the policies: {', '.join(gone)}")

    clock = now()
    latest_flow = 0.0
    if job.flows:
        from hushflow.app.observe import FlowGuard
        from hushflow.flow.reader import FlowEvent, FlowReader, ReadStats

        stats = ReadStats()
        times = FlowTimes()

        def learn(event: FlowEvent) -> float:
            """Learn from one event's DNS answer; its time (0.0: not a flow)."""
            flow = event.flow
            if flow is None:
                return 0.0
            at = times.time_of(flow, event.data)
            answer = dns_answer_of(flow)
            if answer is not None:
                report.learned_from_flows += len(learner.learn_answer(answer, at))
            return at

        # An odd flow (a time that is no time, a string for an object) is named and skipped, as
        # observe does: the answers after it are still learned.
        reader = FlowReader(list(job.flows), stats=stats, may_match=lambda raw: b'"dns"' in raw)
        for at in FlowGuard(stats).each(learn, bars.iterate(reader, "reading flows")):
            latest_flow = max(latest_flow, at)
        say(f"read {stats.lines} flow lines, {learner.stats.answers} DNS answers")
        report.flow_lines_skipped = stats.bad_lines
        report.notes.extend(stats.report_lines())
    if job.clock == "flows" and latest_flow:
        clock = latest_flow

    names = sorted({name for deny in denies for name in deny.match_names})
    if job.resolve and names:
        say(f"resolving {len(names)} denied name(s)")
        with bars.steps(f"resolving {len(names)} denied name(s)", len(names)) as step:
            asking = _stepping(lookup or dnspython_lookup(), step) if bars.enabled else lookup
            result = PreResolver(asking).resolve(names, clock)
        for name, (ips, ttl) in result.answers.items():
            learner.learn_resolved(name, ips, ttl, clock)
            report.resolved[name] = ips
        report.resolve_errors = result.errors
    report.expired = len(state.expire(clock))
    report.notes.extend(learner.stats.notes)
    report.output = compile_policies(loaded, state, CompileOptions(group_cap=job.group_cap))
    if job.out_dir:
        extra: dict[str, str] = {}
        if denies:
            rpz_path = os.path.join(job.out_dir, "dns", "hushflow.rpz")
            previous = Path(rpz_path).read_text(encoding="utf-8") if os.path.exists(rpz_path) else None
            extra, unsupported = dns_files(denies, job.dns_answer, serial=int(clock), previous_rpz=previous)
            report.unsupported_rpz = unsupported
            for pattern in unsupported:
                report.notes.append(f"the RPZ zone cannot express {pattern}: block it in CoreDNS, or by IP only")
            if note := blocky_answer_note(job.dns_answer):
                report.notes.append(note)
        report.written = write_directory(job.out_dir, report.output.objects, extra)
    if state_path:
        state.save(state_path)
    if cluster is not None:
        say("applying to the cluster" + (" (dry run)" if dry_run else ""))
        report.applied = cluster.apply(report.output.objects, dry_run=dry_run)
    return report
