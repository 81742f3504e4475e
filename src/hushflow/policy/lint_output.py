"""Render a lint report: text (compiler style, colour on a tty), JSON, and SARIF 2.1.0.

The text is for a terminal: whatever came from the files (names, keys, values, file paths)
is shown through `printable`, so an escape sequence in a policy is printed, never obeyed. JSON
and SARIF carry the exact text (JSON escapes control characters itself).
"""

from __future__ import annotations

import json
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

from hushflow import __version__
from hushflow.policy.diagnostics import CHECKS, Diagnostic, Severity
from hushflow.policy.lint import LintReport
from hushflow.policy.source import printable

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_DOCS = "https://github.com/hushflow/hushflow/blob/main/docs/lint.md"


def _where(diagnostic: Diagnostic) -> str:
    loc = diagnostic.location
    where = loc.file
    if loc.line:
        where += f":{loc.line}"
        if loc.column:
            where += f":{loc.column}"
    return where


def _shown(text: str) -> str:
    """Text from the files, for the console: escapes visible, rich markup inert."""
    return escape(printable(text))


def write_text(report: LintReport, stream: IO[str], color: bool | None = None) -> None:
    """One finding per block, `file:line:col: severity[CODE] field: message`, then a hint."""
    console = Console(file=stream, force_terminal=color, no_color=color is False, highlight=False, soft_wrap=True)
    for diagnostic in report.diagnostics:
        level = diagnostic.level
        field = f" {diagnostic.location.field}:" if diagnostic.location.path else ""
        console.print(
            f"[bold]{_shown(_where(diagnostic))}[/]: [{_STYLE[level]}]{level.value}[{diagnostic.code}][/]"
            f"[dim]{_shown(field)}[/] {_shown(diagnostic.message)}"
        )
        if diagnostic.hint:
            console.print(f"    [green]hint:[/] {_shown(diagnostic.hint)}")
    errors, warnings = report.count(Severity.ERROR), report.count(Severity.WARNING)
    summary = (
        f"{len(report.files)} file(s), {report.objects} object(s), {report.policies} policy(ies): "
        f"{errors} error(s), {warnings} warning(s)"
    )
    console.print(f"[bold]{summary}[/]" if errors or warnings else f"[green]{summary}[/]")


def to_json(report: LintReport) -> dict[str, Any]:
    return {
        "version": __version__,
        "summary": {
            "files": len(report.files),
            "objects": report.objects,
            "policies": report.policies,
            "errors": report.count(Severity.ERROR),
            "warnings": report.count(Severity.WARNING),
            "infos": report.count(Severity.INFO),
        },
        "diagnostics": [
            {
                "code": d.code,
                "name": d.name,
                "severity": d.level.value,
                "file": d.location.file,
                "line": d.location.line,
                "column": d.location.column,
                "path": d.location.field,
                "message": d.message,
                "hint": d.hint,
            }
            for d in report.diagnostics
        ],
    }


def to_sarif(report: LintReport) -> dict[str, Any]:
    """SARIF 2.1.0, as GitHub code scanning and other CI tools read it."""
    codes = sorted(CHECKS)
    rules = [
        {
            "id": code,
            "name": CHECKS[code].name,
            "shortDescription": {"text": CHECKS[code].summary},
            "helpUri": f"{_DOCS}#{code.lower()}",
            "defaultConfiguration": {"level": _SARIF_LEVEL[CHECKS[code].severity]},
        }
        for code in codes
    ]
    results = []
    for d in report.diagnostics:
        region: dict[str, int] = {}
        if d.location.line:
            region["startLine"] = d.location.line
            if d.location.column:
                region["startColumn"] = d.location.column
        physical: dict[str, Any] = {"artifactLocation": {"uri": d.location.file.replace("\\", "/")}}
        if region:
            physical["region"] = region
        location: dict[str, Any] = {"physicalLocation": physical}
        if d.location.path:
            location["logicalLocations"] = [{"fullyQualifiedName": d.location.field, "kind": "member"}]
        text = d.message + (f" Hint: {d.hint}" if d.hint else "")
        results.append(
            {
                "ruleId": d.code,
                "ruleIndex": codes.index(d.code),
                "level": _SARIF_LEVEL[d.level],
                "message": {"text": text},
                "locations": [location],
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "hushflow",
                        "version": __version__,
                        "informationUri": "https://github.com/hushflow/hushflow",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def write_json(document: dict[str, Any], stream: IO[str]) -> None:
    json.dump(document, stream, indent=2, sort_keys=False)
    stream.write("\n")
