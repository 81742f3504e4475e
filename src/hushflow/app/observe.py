"""`hushflow observe`: read recorded Hubble flows and select them like `hubble observe`.

`run_observe(argv, ...)` is the whole command (arguments in, exit code out) so that tests and
other programs can call it directly; `parse_observe_args` and `observe` are its two halves.
Arguments are Hubble 1.19.4's, parsed with its rules and messages (`hushflow.filter.flags`):
the order of flags matters (`--not`), errors read word for word like Hubble's, exit code 1.

Deliberate differences from `hubble observe --input-file`, all additions:
- `--input-file` may be repeated (files are read in order) and gzip files are read directly;
- `--follow` keeps reading the last file as it grows (Hubble stops at the end of a file);
- lines Hubble would skip with a log line are counted and summarised on stderr, and the exit
  code is 2 when any was skipped; `--strict` stops at the first one instead;
- `--enrich POLICIES` attributes every policy verdict and policy drop to its rules and fills
  `policy_log` / `*_denied_by` / `*_allowed_by` where Cilium left them empty, *before* the
  filters run, so `--not --cel-expression "'tag' in _flow.policy_log"` works on drops;
  `-o explain` prints why for each selected verdict.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol, cast

from hushflow.filter.flags import (
    FILTER_FLAGS,
    RAW_FILTER_FLAGS,
    FilterFlagCollector,
    FlagError,
    FlagSpec,
    FlowFilters,
    format_raw_filters,
    go_quote,
    parse_flags,
    parse_go_bool,
    parse_go_uint,
)
from hushflow.flow.times import FlowTimes, parse_hubble_time

EXIT_OK = 0
EXIT_USAGE = 1  # what hubble returns for every error
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # like a process killed by SIGPIPE, which is what happens to hubble

OUTPUT_FORMATS: tuple[str, ...] = ("compact", "dict", "json", "jsonpb", "table", "explain")
_OUTPUT_ALIASES = {"JSON": "json", "tab": "table"}
MAX_LAST = 1_000_000  # Hubble's limit for --last with --input-file


class ObserveError(Exception):
    """A problem reported as one message on stderr (exit code 1, like Hubble)."""


# --------------------------------------------------------------------------------------------
# Arguments


def _flag(name: str, group: str, help: str, metavar: str = "", shorthand: str = "", boolean: bool = False,
          repeatable: bool = False) -> FlagSpec:
    return FlagSpec(name, shorthand, "true" if boolean else None, metavar, help, group, repeatable)


# Non-filter flags of `hubble observe` that hushflow implements, plus its own (`--strict`).
OBSERVE_FLAGS: tuple[FlagSpec, ...] = (
    _flag("input-file", "Input", "Read flows from this file ('-' for stdin). Repeat it to read several files "
          "in order; gzip files are read directly. Hubble's `-o jsonpb` lines, exporter files and the legacy "
          "`-o json` form are accepted", "file", repeatable=True),
    _flag("follow", "Input", "Keep reading the last input file as it grows (like tail -F)", shorthand="f",
          boolean=True),
    _flag("strict", "Input", "Stop at the first line that is not a Hubble event instead of skipping it",
          boolean=True),
    _flag("since", "Selectors", "Only flows at or after this time: relative (30s, 5m, 1h30m) or "
          "2006-01-02, 2006-01-02T15Z07:00, 2006-01-02T15:04Z07:00, RFC3339 (any fraction), RFC1123Z",
          "time"),
    _flag("until", "Selectors", "Only flows at or before this time (same formats as --since); ignored with "
          "--follow", "time"),
    _flag("first", "Selectors", "Only the first N matching flows", "N"),
    _flag("last", "Selectors", "Only the last N matching flows (N <= 1000000)", "N"),
    _flag("all", "Selectors", "All matching flows (the default when reading files)", boolean=True),
    _flag("output", "Formatting", "Output format: compact (default), dict, jsonpb, json (= jsonpb), table",
          "format", shorthand="o"),
    _flag("print-node-name", "Formatting", "Print the node name in compact, dict and table output",
          boolean=True),
    _flag("print-policy-names", "Formatting", "Append the policies that allowed or denied a flow to "
          "compact output", boolean=True),
    _flag("time-format", "Formatting", "Time format of compact/dict/table output; only StampMilli "
          "(hubble's default, e.g. 'Mar  2 09:00:00.011') is supported so far", "name"),
    _flag("ip-translation", "Formatting", "Show pod, service and DNS names instead of IP addresses (default "
          "true; --ip-translation=false to turn off)", boolean=True),
    _flag("numeric", "Formatting", "Show IP addresses and numbers only (no names)", boolean=True),
    _flag("color", "Formatting", "Accepted for compatibility with hubble; hushflow never writes colour",
          "when"),
    _flag("enrich", "Enrichment", "Attribute verdicts to the rules of these policies (files, directories or -) "
          "and fill policy_log, *_denied_by and *_allowed_by where Cilium left them empty, before filtering",
          "path", repeatable=True),
    _flag("expected-log", "Enrichment", "A log.value that marks a drop as planned (default: the log values "
          "of the deny rules)", "tag", repeatable=True),
    _flag("expected-cel", "Enrichment", "A CEL expression over _flow that marks a drop as planned", "expr",
          repeatable=True),
    _flag("attribute-default-deny", "Enrichment", "Also fill *_denied_by on default-deny drops with the "
          "policies that put the endpoint in default-deny (never policy_log)", boolean=True),
    _flag("with-findings", "Enrichment", "Add hushflow's findings (rules with file:line, expected or not) "
          "as a \"hushflow\" object next to \"flow\" in json/jsonpb output", boolean=True),
    _flag("cilium-version", "Enrichment", "Cilium version the policies run on (default 1.18)", "version"),
    _flag("print-raw-filters", "Other", "Print the allowlist/denylist FlowFilters as YAML (exactly like "
          "hubble) and exit", boolean=True),
    _flag("silent-errors", "Other", "Do not print warnings about skipped lines", shorthand="s", boolean=True),
    _flag("help", "Other", "Show this help", shorthand="h", boolean=True),
)

# Hubble flags that only make sense with a live Hubble server.
_SERVER_FLAGS: tuple[FlagSpec, ...] = tuple(
    _flag(name, "Server", "", "value", shorthand=short, boolean=boolean)
    for name, short, boolean in (
        ("server", "", False),
        ("tls", "", True),
        ("tls-allow-insecure", "", True),
        ("tls-ca-cert-files", "", False),
        ("tls-client-cert-file", "", False),
        ("tls-client-key-file", "", False),
        ("tls-server-name", "", False),
        ("timeout", "", False),
        ("request-timeout", "", False),
        ("auto-port-forward", "P", True),
        ("port-forward-port", "", False),
        ("kube-context", "", False),
        ("kube-namespace", "", False),
        ("kubeconfig", "", False),
        ("basic-auth-username", "", False),
        ("basic-auth-password", "", False),
    )
)

ALL_FLAGS: tuple[FlagSpec, ...] = OBSERVE_FLAGS + FILTER_FLAGS + RAW_FILTER_FLAGS + _SERVER_FLAGS


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
    print_node_name: bool = False
    print_policy_names: bool = False
    time_format: str = "StampMilli"
    color: str = "auto"
    ip_translation: bool = True
    print_raw_filters: bool = False
    silent_errors: bool = False
    help: bool = False
    enrich: tuple[str, ...] = ()
    expected_logs: tuple[str, ...] | None = None
    expected_cel: tuple[str, ...] = ()
    attribute_default_deny: bool = False
    with_findings: bool = False
    cilium_version: str = "1.18"


def parse_observe_args(argv: Sequence[str], *, now_ns: Callable[[], int] = time.time_ns) -> ObserveOptions:
    """Parse `hubble observe` arguments in Hubble's order of checks. Raises `FlagError`."""
    collector = FilterFlagCollector()
    values: dict[str, Any] = {"input-file": [], "enrich": [], "expected-log": [], "expected-cel": []}

    def on_flag(spec: FlagSpec, value: str) -> None:
        if collector.handles(spec):
            collector.on_flag(spec, value)
        elif spec.group == "Server":
            raise FlagError(
                f"--{spec.name} is not supported: hushflow observe reads recorded flows; "
                "use --input-file FILE (or - for stdin)"
            )
        elif spec.repeatable:
            values[spec.name].append(value)
        elif spec.no_opt_default is not None:
            values[spec.name] = parse_go_bool(value)
        elif spec.name in ("first", "last"):
            values[spec.name] = parse_go_uint(value, 0, 64)
        else:
            values[spec.name] = value

    positional = parse_flags(argv, ALL_FLAGS, on_flag)
    if values.get("help"):
        return ObserveOptions(help=True)
    if positional:
        raise FlagError(
            f"unexpected argument {go_quote(positional[0])}: flows are read with --input-file FILE"
        )

    # Hubble's order of checks after parsing: --not, output format, window flags, times, raw filters.
    filters_before_raw = collector.flags.flow_filters  # raises for a trailing --not
    filters_before_raw()
    output = str(values.get("output", "compact"))
    output = _OUTPUT_ALIASES.get(output, output)
    follow = bool(values.get("follow", False))
    if output not in OUTPUT_FORMATS:
        raise FlagError(f"invalid output format: {values.get('output')}")
    if output == "explain" and not values["enrich"]:
        raise FlagError("-o explain needs the policies: add --enrich PATH")
    if output == "table" and follow:
        raise FlagError("table output format is not compatible with follow mode")

    first, last, all_flows = int(values.get("first", 0)), int(values.get("last", 0)), bool(values.get("all"))
    if first and last:
        raise FlagError("cannot set both --first and --last")
    if first and all_flows:
        raise FlagError("cannot set both --first and --all")
    if first and follow:
        raise FlagError("cannot set both --first and --follow")
    if last and all_flows:
        raise FlagError("cannot set both --last and --all")

    since_ns = until_ns = None
    if "since" in values:
        since_ns = parse_hubble_time(values["since"], now_ns)
        if since_ns is None:
            raise FlagError(f"failed to parse the since time: failed to convert {values['since']} to time")
    if "until" in values and not follow:
        until_ns = parse_hubble_time(values["until"], now_ns)
        if until_ns is None:
            raise FlagError(f"failed to parse the until time: failed to convert {values['until']} to time")

    return ObserveOptions(
        filters=collector.flow_filters(),
        input_files=tuple(values["input-file"]),
        since_ns=since_ns,
        until_ns=until_ns,
        first=first,
        last=last,
        all=all_flows,
        follow=follow,
        strict=bool(values.get("strict", False)),
        output=output,
        print_node_name=bool(values.get("print-node-name", False)),
        print_policy_names=bool(values.get("print-policy-names", False)),
        time_format=str(values.get("time-format", "StampMilli")),
        color=str(values.get("color", "auto")),
        ip_translation=bool(values.get("ip-translation", True)) and not values.get("numeric", False),
        print_raw_filters=bool(values.get("print-raw-filters", False)),
        silent_errors=bool(values.get("silent-errors", False)),
        enrich=tuple(values["enrich"]),
        expected_logs=tuple(values["expected-log"]) if values["expected-log"] else None,
        expected_cel=tuple(values["expected-cel"]),
        attribute_default_deny=bool(values.get("attribute-default-deny", False)),
        with_findings=bool(values.get("with-findings", False)),
        cilium_version=str(values.get("cilium-version", "1.18")),
    )


# --------------------------------------------------------------------------------------------
# Running


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
        self.out = out

    def write(self, event: Any) -> None:
        text = (event.data.get("hushflow") or {}).get("explain")
        if text:
            self.out.write(text.encode() + b"\n\n")

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
        return (lambda _event: True), None
    from hushflow.filter import FilterError, compile_filters

    try:
        compiled = compile_filters(list(filters.allowlist), list(filters.denylist))
    except FilterError as err:
        # Hubble's own message first (scripts may match it), then hushflow's hint on its own line.
        hint = getattr(err, "hint", None)
        raise ObserveError(f"{err}\n{hint}" if hint else str(err)) from None
    return compiled.matches, compiled.line_may_match


def select_events(
    events: Iterator[Any],
    matches: Callable[[dict[str, Any]], bool],
    options: ObserveOptions,
) -> Iterator[Any]:
    """Hubble's io-reader selection: time window, filters, then --first / --last."""
    since, until = options.since_ns, options.until_ns
    event_time = FlowTimes().nanos_of

    def selected() -> Iterator[Any]:
        for event in events:
            data = event.data
            if since is not None or until is not None:
                at = event_time(data.get("time"))
                if since is not None and at < since:
                    continue
                if until is not None and at > until:
                    continue
            if matches(data):
                yield event

    if options.first:
        remaining = options.first
        for event in selected():
            yield event
            remaining -= 1
            if remaining == 0:
                return
        return
    if options.last and not options.all:
        yield from collections.deque(selected(), maxlen=options.last)
        return
    yield from selected()


@dataclass(frozen=True)
class FollowControl:
    """How `--follow` waits for new lines: injected so tests simulate time instead of sleeping."""

    sleep: Callable[[float], None] = time.sleep
    stop: Callable[[], bool] | None = None
    """Called while waiting; True ends the follow (as Ctrl-C does)."""


def observe(
    options: ObserveOptions,
    *,
    stdout: BinaryIO,
    stderr: IO[str],
    stdin: BinaryIO | None = None,
    follow_control: FollowControl | None = None,
) -> int:
    """Run `hushflow observe` with parsed options. Returns the exit code; never raises for user errors."""
    if options.help:
        stdout.write(observe_help().encode())
        return EXIT_OK
    if options.print_raw_filters:
        stdout.write(format_raw_filters(options.filters).encode())
        return EXIT_OK
    try:
        return _observe(options, stdout, stderr, stdin, follow_control or FollowControl())
    except ObserveError as err:
        stderr.write(f"{err}\n")
        return EXIT_USAGE


def _observe(
    options: ObserveOptions,
    stdout: BinaryIO,
    stderr: IO[str],
    stdin: BinaryIO | None,
    follow_control: FollowControl,
) -> int:
    from hushflow.flow.reader import FlowReader, FlowReadError, ReadStats

    if not options.input_files:
        raise ObserveError(
            "no input: pass --input-file FILE (or --input-file - for stdin); "
            "hushflow observe does not connect to a Hubble server"
        )
    matches, may_match = _compile_predicate(options.filters)
    enricher = _make_enricher(options, stderr) if options.enrich else None
    if enricher is not None:
        may_match = None  # every DNS answer and verdict must be seen, and filters see enriched flows
    if options.last and not options.first and not options.all and options.last > MAX_LAST:
        raise ObserveError(f"--last must be <= 1_000_000, got {options.last}")
    if options.follow and options.last:
        raise ObserveError("--last cannot be combined with --follow when reading files")

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
    )
    printer = _make_printer(options, stdout, stderr)
    events: Iterator[Any] = iter(reader)
    if enricher is not None:
        events = map(enricher, events)
    try:
        for event in select_events(events, matches, options):
            printer.write(event)
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
    return EXIT_BAD_INPUT if stats.bad_lines else EXIT_OK


def _make_enricher(options: ObserveOptions, stderr: IO[str]) -> Any:
    """Load the policies for --enrich; problems that make attribution wrong stop the run."""
    from hushflow.app.enrich import Enricher, expected_predicate_from_cel
    from hushflow.app.policies import PolicyError, load_job_policies
    from hushflow.engine.attribution import Attributor
    from hushflow.policy.fqdn import parse_cilium_version
    from hushflow.policy.model import BuildOptions

    try:
        version = parse_cilium_version(options.cilium_version)
    except ValueError as err:
        raise ObserveError(f"--cilium-version: {err}") from None
    try:
        loaded = load_job_policies(options.enrich, BuildOptions(cilium_version=version))
    except PolicyError as exc:
        raise ObserveError(f"cannot enrich: {exc}") from None
    predicate = None
    if options.expected_cel:
        from hushflow.filter import FilterError

        try:
            predicate = expected_predicate_from_cel(list(options.expected_cel))
        except FilterError as err:
            raise ObserveError(f"--expected-cel: {err}") from None
    attributor = Attributor(
        loaded.policy_set,
        expected_logs=options.expected_logs,
        expected_predicate=predicate,
        attribute_default_deny=options.attribute_default_deny,
    )
    return Enricher(attributor, with_findings=options.with_findings, explain=options.output == "explain")


def _write_enrichment_summary(enricher: Any, stderr: IO[str]) -> None:
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


def run_observe(
    argv: Sequence[str],
    *,
    stdout: BinaryIO | None = None,
    stderr: IO[str] | None = None,
    stdin: BinaryIO | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    follow_control: FollowControl | None = None,
) -> int:
    """The whole `hushflow observe` command: arguments in, exit code out."""
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr
    try:
        options = parse_observe_args(argv, now_ns=now_ns)
    except FlagError as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    return observe(options, stdout=out, stderr=err, stdin=stdin, follow_control=follow_control)


# --------------------------------------------------------------------------------------------
# Help

_HELP_INTRO = """\
Usage: hushflow observe --input-file FILE [flags]

Read Hubble flows (hubble observe -o jsonpb lines, exporter files, gzip, stdin) and select
them with hubble observe's own flags: same filters, same --not, same output formats.

A flow is printed when it matches every filter flag given (several values of one flag: any
of them) and none of the negated ones. '--not' negates only the flag right after it; all
negated flags together form ONE denylist filter, so
    --not --http-method GET --not --to-namespace catalog
hides GET requests to catalog, not every GET and not everything sent to catalog.

Examples:
  hushflow observe --input-file flows.json --verdict DROPPED --verdict AUDIT
  hushflow observe --input-file - -n payments --not --cel-expression \\
      "'app-explicit-traffic-blocked' in _flow.policy_log"
  hushflow observe --pod kube-system/coredns --print-raw-filters

Exit status: 0 done (also when Ctrl-C ends --follow); 1 bad arguments or filters (the
message on stderr is hubble's own); 2 an input file could not be read, or some lines were
not Hubble events (skipped and summarised on stderr; with --strict the first one stops).
"""

_HELP_GROUPS = ("Input", "Selectors", "Filters", "Raw filters", "Enrichment", "Formatting", "Other")


def observe_help() -> str:
    """The text of `hushflow observe --help`."""
    lines = [_HELP_INTRO]
    for group in _HELP_GROUPS:
        specs = [spec for spec in OBSERVE_FLAGS + FILTER_FLAGS + RAW_FILTER_FLAGS if spec.group == group]
        lines.append(f"{group}:")
        rows = []
        for spec in specs:
            short = f"-{spec.shorthand}, " if spec.shorthand else "    "
            metavar = f" {spec.metavar}" if spec.no_opt_default is None and spec.metavar else ""
            rows.append((f"  {short}--{spec.name}{metavar}", spec.help + (" (repeatable)" if spec.repeatable
                                                                            and group != "Filters" else "")))
        width = 32
        for left, text in rows:
            wrapped = _wrap(text, 100 - width)
            if len(left) + 2 > width:
                lines.append(left)
                lines.extend(" " * width + part for part in wrapped)
            else:
                lines.append(left.ljust(width) + wrapped[0])
                lines.extend(" " * width + part for part in wrapped[1:])
        lines.append("")
    lines.append("Filter flags can be repeated (values are ORed) and negated with --not.")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    words, lines, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines
