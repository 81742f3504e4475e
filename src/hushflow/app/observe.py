"""`hushflow observe`: read recorded Hubble flows and select them like `hubble observe`.

This module is the wiring: `observe_flows(options, ...)` takes an `ObserveOptions` (what the
command line `hushflow.cli.observe_args` parses, or what another program builds) and returns
the exit code. It reads the flows (`hushflow.flow.reader`), attributes them for `--enrich`
(`hushflow.app.enrich`), compiles the filters (`hushflow.filter`), selects the window
(`hushflow.filter.window`) and prints (`hushflow.sinks.hubble_format`, or the explain printer).

Deliberate differences from `hubble observe --input-file`, all additions:
- `--input-file` may be repeated (files are read in order) and gzip files are read directly;
- `--follow` keeps reading the last file as it grows (Hubble stops at the end of a file);
- lines Hubble would skip with a log line are counted and summarised on stderr, and the exit
  code is 2 when any was skipped; `--strict` stops at the first one instead; so is a flow of a
  shape a stage cannot process (`FlowGuard`), named by file:line with the value that was wrong;
- `--enrich POLICIES` attributes every policy verdict and policy drop to its rules and fills
  `policy_log` / `*_denied_by` / `*_allowed_by` where Cilium left them empty, *before* the
  filters run, so `--not --cel-expression "'tag' in _flow.policy_log"` works on drops;
  `-o explain` prints why for each selected verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from hushflow.app.progress import ProgressReporter, progress_on
from hushflow.filter.pflag import FlagError
from hushflow.filter.rawfilters import FlowFilters, format_raw_filters
from hushflow.filter.window import EventWindow, check_file_window, every_event, select_events
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS

if TYPE_CHECKING:  # loaded only with --enrich
    from hushflow.app.enrich import Enricher
    from hushflow.flow.reader import ReadStats

EXIT_OK = 0
EXIT_USAGE = 1  # what hubble returns for every error
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # like a process killed by SIGPIPE, which is what happens to hubble

OUTPUT_FORMATS: tuple[str, ...] = ("compact", "dict", "json", "jsonpb", "table", "explain")


class PodSpecsFileError(Exception):
    """A `--pods` file that cannot be used: bad input (exit 2)."""


class ObserveError(Exception):
    """A problem reported as one message on stderr (exit code 1, like Hubble)."""


@dataclass(frozen=True)
class ObserveOptions:
    """Everything `hushflow observe` was asked to do, already validated."""

    filters: FlowFilters = field(default_factory=FlowFilters)
    input_files: tuple[str, ...] = ()
    since_ns: int | None = None
    """Unix time in nanoseconds; flows before it are skipped."""
    until_ns: int | None = None
    first: int = 0
    last: int = 0
    all: bool = False
    follow: bool = False
    strict: bool = False
    output: str = "compact"
    """One of `OUTPUT_FORMATS`."""
    print_node_name: bool = False
    print_policy_names: bool = False
    time_format: str = "StampMilli"
    color: str = "auto"
    ip_translation: bool = True
    print_raw_filters: bool = False
    silent_errors: bool = False
    help: bool = False
    """`--help` was given: the command line prints its help instead of calling `observe_flows`."""
    enrich: tuple[str, ...] = ()
    expected_logs: tuple[str, ...] | None = None
    expected_cel: tuple[str, ...] = ()
    attribute_default_deny: bool = False
    with_findings: bool = False
    cilium_version: str = "1.18"
    cluster_name: str = "default"
    default_local_cluster: bool | None = None  # --policy-default-local-cluster=true|false; None: the default
    pods: tuple[str, ...] = ()
    """`--pods FILE`: pod specs (`kubectl get pods -A -o yaml`/`-o json`), so named ports resolve."""
    quiet: bool = False  # --quiet: no progress count on stderr

    @property
    def window(self) -> EventWindow:
        """The events to print, as `hushflow.filter.window` selects them."""
        return EventWindow(self.since_ns, self.until_ns, self.first, self.last, self.all)


# --------------------------------------------------------------------------------------------
# Printers and the filter predicate


class EventPrinter(Protocol):
    def write(self, event: Any) -> None: ...

    def close(self) -> None: ...


class _BinaryToText:
    """Lets a printer write bytes (node-status messages) to a text stream such as sys.stderr."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


class _ExplainPrinter:
    """`-o explain`: the explanation of each selected policy verdict, blank-line separated."""

    def __init__(self, out: BinaryIO) -> None:
        from hushflow.sinks.hubble_format import escape_terminal

        self.out = out
        self._escape = escape_terminal

    def write(self, event: Any) -> None:
        text = (event.data.get("hushflow") or {}).get("explain")
        if text:
            # Names in the explanation come from the flow: no terminal escapes, as Hubble prints.
            self.out.write(self._escape(text).encode("utf-8", "surrogateescape") + b"\n\n")

    def close(self) -> None:
        self.out.flush()


def _make_printer(options: ObserveOptions, stdout: BinaryIO, stderr: IO[str]) -> EventPrinter:
    from hushflow.sinks.hubble_format import PrintOptions, make_printer

    if options.output == "explain":
        return _ExplainPrinter(stdout)

    if options.time_format.lower() != "stampmilli":
        raise ObserveError(f"--time-format {options.time_format} is not supported yet: only StampMilli")
    err: BinaryIO = getattr(stderr, "buffer", None) or cast(BinaryIO, _BinaryToText(stderr))
    print_options = PrintOptions(
        node_name=options.print_node_name,
        policy_names=options.print_policy_names,
        ip_translation=options.ip_translation,
    )
    return make_printer(options.output, stdout, err=err, options=print_options)


def _compile_predicate(
    filters: FlowFilters,
) -> tuple[Callable[[dict[str, Any]], bool], Callable[[bytes], bool] | None]:
    """The allow/deny predicate over canonical events, and its pre-check on raw line bytes."""
    if not filters.allowlist and not filters.denylist:
        return every_event, None
    from hushflow.filter import FilterError, compile_filters

    try:
        compiled = compile_filters(list(filters.allowlist), list(filters.denylist))
    except FilterError as err:
        # Hubble's own message first (scripts may match it), then hushflow's hint on its own line.
        hint = getattr(err, "hint", None)
        raise ObserveError(f"{err}\n{hint}" if hint else str(err)) from None
    return compiled.matches, compiled.line_may_match


# --------------------------------------------------------------------------------------------
# One odd flow never ends the command


class FlowGuard:
    """The last line of defence of the per-flow stages (enrich, filters, printer).

    The reader's fast path trusts what lies below the first level of a line in Hubble's own
    spelling (checking it all would cost more than parsing), so a stage may meet a string where
    an object belongs, or a time that is no time. A stage that fails on an event gets it once more
    in the canonical spelling when it was valid protojson in another one (``"TCP": null`` is "no
    TCP"); otherwise the flow is counted as a bad line, reported with its file:line and what was
    wrong with it (`hushflow.flow.protojson.unprocessable_reason`), and skipped: the flows after
    it are still read, and the exit code is 2. With `strict` it stops the run, as a bad line does.
    Only the errors of a value's shape are caught (`FLOW_SHAPE_ERRORS`): a closed pipe or a full
    disk still ends the run.
    """

    __slots__ = ("_stats", "_strict")

    def __init__(self, stats: ReadStats, *, strict: bool = False) -> None:
        self._stats = stats
        self._strict = strict

    def skip(self, event: Any, error: BaseException) -> None:
        """Count and report `event` as a bad line (or, strict, stop the run)."""
        from hushflow.flow.protojson import unprocessable_reason
        from hushflow.flow.reader import BadLine, FlowReadError

        bad = BadLine(event.source, event.line, unprocessable_reason(event.data, error))
        if self._strict:
            raise FlowReadError(str(bad)) from None
        self._stats.add_bad(bad)

    def _again(self, stage: Callable[[Any], Any], event: Any, error: BaseException) -> tuple[bool, Any]:
        """(True, result) of `stage` on the canonical form of `event`; (False, None) when skipped."""
        from hushflow.flow.reader import canonical_form

        canonical = canonical_form(event)
        if canonical is not None:
            try:
                return True, stage(canonical)
            except FLOW_SHAPE_ERRORS as again:
                error = again
        self.skip(event, error)
        return False, None

    def each(self, stage: Callable[[Any], Any], events: Iterable[Any]) -> Iterator[Any]:
        """``stage(event)`` of every event, leaving out those it could not process."""
        for event in events:
            try:
                result = stage(event)
            except FLOW_SHAPE_ERRORS as error:
                done, result = self._again(stage, event, error)
                if not done:
                    continue
            yield result

    def keep(self, matches: Callable[[dict[str, Any]], bool], events: Iterable[Any]) -> Iterator[Any]:
        """The events ``matches`` selects, leaving out those it could not judge."""

        def judged(event: Any) -> Any:
            return event if matches(event.data) else None

        for event in self.each(judged, events):
            if event is not None:
                yield event

    def write(self, printer: EventPrinter, event: Any) -> None:
        """Print one event; one the printer cannot render is skipped (printers format a whole
        event before writing any of it, so nothing half-printed is left behind)."""
        try:
            printer.write(event)
        except FLOW_SHAPE_ERRORS as error:
            self._again(printer.write, event, error)


# --------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class FollowControl:
    """How `--follow` waits for new lines: injected so tests simulate time instead of sleeping."""

    sleep: Callable[[float], None] = time.sleep
    stop: Callable[[], bool] | None = None
    """Called while waiting; True ends the follow (as Ctrl-C does)."""


def observe_flows(
    options: ObserveOptions,
    *,
    stdout: BinaryIO,
    stderr: IO[str],
    stdin: BinaryIO | None = None,
    follow_control: FollowControl | None = None,
    progress: ProgressReporter | None = None,
) -> int:
    """Run `hushflow observe` with parsed options. Returns the exit code; never raises for user errors.
    `progress` (default: a count of the flows read on stderr when it is a terminal, stdout is not
    one, and neither --follow nor --quiet is given) shows the reading of files."""
    if options.print_raw_filters:
        stdout.write(format_raw_filters(options.filters).encode())
        return EXIT_OK
    try:
        return _observe(options, stdout, stderr, stdin, follow_control or FollowControl(), progress)
    except ObserveError as err:
        stderr.write(f"{err}\n")
        return EXIT_USAGE
    except PodSpecsFileError as err:
        stderr.write(f"{err}\n")
        return EXIT_BAD_INPUT


def _observe(
    options: ObserveOptions,
    stdout: BinaryIO,
    stderr: IO[str],
    stdin: BinaryIO | None,
    follow_control: FollowControl,
    progress: ProgressReporter | None = None,
) -> int:
    from hushflow.flow.reader import FlowReader, FlowReadError, ReadStats

    if not options.input_files:
        raise ObserveError(
            "no input: pass --input-file FILE (or --input-file - for stdin); "
            "hushflow observe does not connect to a Hubble server"
        )
    matches, may_match = _compile_predicate(options.filters)
    filtered = matches is not every_event
    enricher = _make_enricher(options, stderr) if options.enrich else None
    if enricher is not None:
        may_match = None  # every DNS answer and verdict must be seen, and filters see enriched flows
    window = options.window
    try:
        check_file_window(window, follow=options.follow)
    except FlagError as err:
        raise ObserveError(str(err)) from None

    stats = ReadStats()
    reader = FlowReader(
        list(options.input_files),
        follow=options.follow,
        strict=options.strict,
        may_match=may_match,
        stats=stats,
        stdin=stdin,
        sleep=follow_control.sleep,
        stop=follow_control.stop,
        # The jsonpb printers print a line proven to be Hubble's bytes as it is read, and any
        # other line that gives a key twice is refused, as Hubble does.
        prove_lines=True,
    )
    printer = _make_printer(options, stdout, stderr)
    guard = FlowGuard(stats, strict=options.strict)
    if progress is None:
        # A bar beside flows printed on the same terminal, or under a --follow, would only garble them.
        isatty = getattr(stdout, "isatty", None)
        stdout_is_terminal = callable(isatty) and bool(isatty())
        progress = progress_on(stderr, quiet=options.quiet or options.follow or stdout_is_terminal)
    events: Iterator[Any] = iter(progress.iterate(reader, "reading flows"))
    if enricher is not None:
        events = guard.each(enricher, events)
    if filtered:
        # Hubble's order: the time window, the filters, then the counts; the filters run in the
        # guard, so that a flow they cannot judge is skipped and reported, not the end of the run.
        if window.since_ns is not None or window.until_ns is not None:
            events = select_events(events, every_event, EventWindow(window.since_ns, window.until_ns, all=True))
            window = EventWindow(first=window.first, last=window.last, all=window.all)
        events = guard.keep(matches, events)
    try:
        for event in select_events(events, every_event, window):
            guard.write(printer, event)
    except FlowReadError as err:
        printer.close()
        stderr.write(f"{err}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        pass  # Hubble: Ctrl-C ends a --follow normally, the table is still printed
    printer.close()
    if not options.silent_errors:
        stats.write_report(stderr)
        if enricher is not None:
            _write_enrichment_summary(enricher, stderr)
    bad_inputs = stats.bad_lines + (enricher.input_problems if enricher is not None else 0)
    return EXIT_BAD_INPUT if bad_inputs else EXIT_OK


def _make_enricher(options: ObserveOptions, stderr: IO[str]) -> Enricher:
    """Load the policies for --enrich; problems that make attribution wrong stop the run."""
    from hushflow.app.enrich import Enricher, make_attributor
    from hushflow.app.policies import PolicyError, load_job_policies
    from hushflow.policy.fqdn import parse_cilium_version
    from hushflow.policy.model import BuildOptions, cluster_name_problem

    try:
        version = parse_cilium_version(options.cilium_version)
    except ValueError as err:
        raise ObserveError(f"--cilium-version: {err}") from None
    if problem := cluster_name_problem(options.cluster_name):
        raise ObserveError(f"--cluster-name: {problem}")
    try:
        loaded = load_job_policies(options.enrich, BuildOptions.for_cluster(
            version, options.cluster_name, options.default_local_cluster))
    except PolicyError as exc:
        raise ObserveError(f"cannot enrich: {exc}") from None
    pods = None
    skipped: list[str] = []
    if options.pods:
        from hushflow.app.enrich import PodSpecsError, load_pod_specs

        try:
            pods, skipped = load_pod_specs(options.pods)
        except PodSpecsError as exc:
            raise PodSpecsFileError(f"--pods: {exc}") from None
        for line in skipped:
            stderr.write(f"hushflow: --pods: {line}\n")
    try:
        attributor = make_attributor(
            loaded.policy_set, expected_logs=options.expected_logs, expected_cel=options.expected_cel,
            attribute_default_deny=options.attribute_default_deny, cilium_version=version, pods=pods,
        )
    except ValueError as exc:
        raise ObserveError(str(exc)) from None
    enricher = Enricher(attributor, with_findings=options.with_findings, explain=options.output == "explain")
    enricher.input_problems = len(skipped)
    return enricher


def _write_enrichment_summary(enricher: Enricher, stderr: IO[str]) -> None:
    stats = enricher.attributor.stats
    filled = ", ".join(f"{name} {count}" for name, count in sorted(stats.filled.items())) or "nothing"
    stderr.write(
        f"hushflow: attributed {stats.attributed} policy verdicts/drops, learned {stats.dns_answers} DNS answers; "
        f"filled: {filled}\n"
    )
    if stats.disagreements:
        listed = ", ".join(f"{what} x{count}" for what, count in stats.disagreements.most_common())
        stderr.write(f"hushflow: Cilium and the policies disagree on: {listed}\n")
    if stats.unknown_direction:
        stderr.write(f"hushflow: {stats.unknown_direction} verdicts without a traffic direction were left alone\n")
