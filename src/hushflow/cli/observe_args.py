"""The command line of `hushflow observe`: Hubble 1.19.4's `hubble observe` flags and the help.

`parse_observe_args(argv)` turns the arguments into `hushflow.app.observe.ObserveOptions` with
Hubble's rules and messages: the order of flags matters (`--not`), the scanner is pflag's
(`hushflow.filter.pflag`), the filter flags are Hubble's (`hushflow.filter.flags`), and the
checks after parsing come in Hubble's order. `OBSERVE_FLAGS` is the table of the other flags,
shared by the parser and `observe_help()`, the text of `hushflow observe --help`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from hushflow.app.observe import OUTPUT_FORMATS, ObserveOptions
from hushflow.filter.flags import FILTER_FLAGS, RAW_FILTER_FLAGS, FilterFlagCollector
from hushflow.filter.pflag import FlagError, FlagSpec, go_quote, parse_flags, parse_go_bool, parse_go_uint
from hushflow.filter.window import check_count_flags
from hushflow.flow.times import parse_hubble_time

_OUTPUT_ALIASES = {"JSON": "json", "tab": "table"}


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
    _flag("pods", "Enrichment", "Pod specs (kubectl get pods -A -o yaml or -o json) that named ports "
          "(port: http-alt) resolve from; without them a rule on a named port is explained as unknown",
          "file", repeatable=True),
    _flag("cilium-version", "Enrichment", "Cilium version the policies run on (default 1.18)", "version"),
    _flag("cluster-name", "Enrichment", "Cilium's cluster-name: what the cluster entity selects and, from 1.19, "
          "the cluster peer selectors are limited to (default \"default\")", "name"),
    _flag("policy-default-local-cluster", "Enrichment", "The agent's policy-default-local-cluster when your "
          "cluster sets it: =false lets peer selectors that name no cluster select every mesh cluster "
          "(default: off before 1.19, on from 1.19)", boolean=True),
    _flag("print-raw-filters", "Other", "Print the allowlist/denylist FlowFilters as YAML (exactly like "
          "hubble) and exit", boolean=True),
    _flag("silent-errors", "Other", "Do not print warnings about skipped lines", shorthand="s", boolean=True),
    _flag("quiet", "Other", "No progress count on stderr while reading files (there is none when stderr is "
          "not a terminal, when stdout is one, or with --follow)", boolean=True),
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


def parse_observe_args(argv: Sequence[str], *, now_ns: Callable[[], int] = time.time_ns) -> ObserveOptions:
    """Parse `hubble observe` arguments in Hubble's order of checks. Raises `FlagError`."""
    collector = FilterFlagCollector()
    values: dict[str, Any] = {"input-file": [], "enrich": [], "expected-log": [], "expected-cel": [], "pods": []}

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
    if values["pods"] and not values["enrich"]:
        raise FlagError("--pods needs the policies: add --enrich PATH")
    if output == "explain" and not values["enrich"]:
        raise FlagError("-o explain needs the policies: add --enrich PATH")
    if output == "table" and follow:
        raise FlagError("table output format is not compatible with follow mode")

    first, last, all_flows = int(values.get("first", 0)), int(values.get("last", 0)), bool(values.get("all"))
    check_count_flags(first, last, all_flows, follow=follow)

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
        filters=collector.flow_filters(),  # first: it raises for a bad --allowlist/--denylist
        output=output,
        input_files=tuple(values["input-file"]),
        follow=follow,
        strict=bool(values.get("strict", False)),
        since_ns=since_ns,
        until_ns=until_ns,
        first=first,
        last=last,
        all=all_flows,
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
        cluster_name=str(values.get("cluster-name", "default")),
        default_local_cluster=_optional_bool(values.get("policy-default-local-cluster")),
        pods=tuple(values["pods"]),
        quiet=bool(values.get("quiet", False)),
    )


def _optional_bool(value: object) -> bool | None:
    """A boolean flag that may be left out (None: the default that depends on other flags)."""
    return None if value is None else bool(value)


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
not Hubble events or flows that could not be processed (each skipped, named by file:line and
summarised on stderr; with --strict the first one stops).
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
