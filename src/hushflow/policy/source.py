"""Where things come from: file, line, column and field path.

Every rule, selector and diagnostic carries a `Location` so that any later message can say
`policies/a.yaml:12:7 spec.egressDeny[0].toFQDNs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FieldPath = tuple[str | int, ...]


def printable(text: str) -> str:
    """`text` safe to show on a terminal: every character Python does not call printable is
    written as an escape (`\\x1b`, `\\n`, `\\u202e`), the rest is left as it is.

    Keys, values and file names come from files anyone may have written; an ESC sequence in one
    could clear the screen, forge a hyperlink or rewrite the line before it, and a newline or a
    bidi override could fake a finding. Machine formats (JSON, SARIF) keep the exact text.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def format_path(path: Iterable[str | int]) -> str:
    """`("spec", "egressDeny", 0, "toFQDNs")` -> `spec.egressDeny[0].toFQDNs`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a manifest. `line` and `column` are 1-based; 0 means unknown."""

    file: str
    line: int = 0
    column: int = 0
    path: FieldPath = ()

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        """`file:line:column field.path`, for people: escapes shown as such (`printable`)."""
        return printable(self._where())

    def _where(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where} {self.field}" if self.path else where
