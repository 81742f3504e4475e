"""Where things come from: file, line, column and field path.

Every rule, selector and diagnostic carries a `Location` so that any later message can say
`policies/a.yaml:12:7 spec.egressDeny[0].toFQDNs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FieldPath = tuple[str | int, ...]


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
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where} {self.field}" if self.path else where
