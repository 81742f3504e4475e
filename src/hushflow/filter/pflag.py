"""A pflag-compatible command-line scanner, and the Go quoting and number parsing its messages use.

`parse_flags` reads an argv the way Go's pflag does for `hubble observe` (`--flag=value`,
`--flag value`, `-n value`, `-nvalue`, `-n=value`, grouped short booleans, `--`), calling back
once per flag *in the order given*, and reports mistakes with pflag's wording (`FlagError`).
Click cannot keep the order of different options, and `--not` depends on that order.

`go_quote`, `go_quote_rune`, `parse_go_uint` and `parse_go_bool` are Go's `%q`,
`strconv.ParseUint` and `strconv.ParseBool`, so that every message reads exactly like Hubble's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


class FlagError(Exception):
    """A command-line mistake. `str(error)` is the message Hubble prints, word for word."""


# --------------------------------------------------------------------------------------------
# Go formatting and number parsing, so messages read exactly like Hubble's.


def quote_with_escapes(
    text: str,
    printable: Callable[[str], bool],
    *,
    short_escapes: Mapping[str, str],
    byte_escaped: Callable[[int], bool],
    upper_hex: bool,
) -> str:
    """`text` in double quotes with backslash escapes, the way Go's `strconv.Quote` and go-yaml's
    double-quoted style write it; the two differ only in the arguments.

    `"` and `\\` are escaped, then the `short_escapes` (`\\n`); a `printable` character is kept;
    otherwise `\\xNN` when `byte_escaped(code)`, else `\\uNNNN` or `\\UNNNNNNNN`.
    """
    hex_case = "X" if upper_hex else "x"
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in short_escapes:
            out.append(short_escapes[ch])
        elif printable(ch):
            out.append(ch)
        elif byte_escaped(code):
            out.append(f"\\x{code:02{hex_case}}")
        elif code < 0x10000:
            out.append(f"\\u{code:04{hex_case}}")
        else:
            out.append(f"\\U{code:08{hex_case}}")
    out.append('"')
    return "".join(out)


def go_quote(text: str) -> str:
    """Go's `strconv.Quote` / `%q` for a string."""
    return quote_with_escapes(
        text, str.isprintable, short_escapes=_GO_SHORT_ESCAPES, byte_escaped=_go_control, upper_hex=False
    )


def _go_control(code: int) -> bool:
    return code < 0x20 or code == 0x7F


def go_quote_rune(ch: str) -> str:
    """pflag's `%q` of a shorthand letter: `'n'`. pflag quotes the first *byte* of the letter, so
    any non-ASCII letter shows as its UTF-8 lead byte read as a rune (`'Ã'` for `é`)."""
    if not ch.isascii():
        ch = chr(ch.encode("utf-8", "surrogateescape")[0])
    return "'" + go_quote(ch)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"


_GO_SHORT_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
}
_GO_UINT_BASE0 = re.compile(
    r"0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*"
)


def parse_go_uint(text: str, base: int, bits: int) -> int:
    """Go's `strconv.ParseUint(text, base, bits)` for base 0 or 10, with its error text."""
    if base == 10:
        ok = text.isascii() and text.isdigit()
        value = int(text) if ok else 0
    else:
        ok = _GO_UINT_BASE0.fullmatch(text) is not None
        value = 0
        if ok:
            digits = text.replace("_", "")
            if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
                value = int(digits[1:], 8)
            else:
                value = int(digits, 0)
    if not ok:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    if value >= 1 << bits:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def parse_go_bool(text: str) -> bool:
    """Go's `strconv.ParseBool`, used by pflag for boolean flags."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


# --------------------------------------------------------------------------------------------
# The scanner.


@dataclass(frozen=True)
class FlagSpec:
    """One command-line flag, described for both the parser and the help text."""

    name: str
    shorthand: str = ""
    # The value used when the flag is given without `=value` (pflag's NoOptDefVal). None means
    # the flag takes the next argument as its value.
    no_opt_default: str | None = None
    metavar: str = ""
    help: str = ""
    group: str = "Filters"
    repeatable: bool = False

    @property
    def display_name(self) -> str:
        """How pflag names the flag in messages: `-n, --namespace` or `--verdict`."""
        return f"-{self.shorthand}, --{self.name}" if self.shorthand else f"--{self.name}"


def parse_flags(
    argv: Sequence[str],
    specs: Iterable[FlagSpec],
    on_flag: Callable[[FlagSpec, str], None],
) -> list[str]:
    """Scan `argv` like pflag, calling `on_flag(spec, value)` for each flag in order.

    Returns the positional arguments. Raises `FlagError` with pflag's messages; a
    `ValueError` from `on_flag` becomes `invalid argument "V" for "--flag" flag: <message>`.
    """
    by_name = {spec.name: spec for spec in specs}
    by_short = {spec.shorthand: spec for spec in by_name.values() if spec.shorthand}

    def deliver(spec: FlagSpec, value: str) -> None:
        try:
            on_flag(spec, value)
        except ValueError as err:
            raise FlagError(
                f"invalid argument {go_quote(value)} for {go_quote(spec.display_name)} flag: {err}"
            ) from None

    positional: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
            spec = by_name.get(name)
            if spec is None:
                raise FlagError(f"unknown flag: --{name}")
            if equals:
                pass
            elif spec.no_opt_default is not None:
                value = spec.no_opt_default
            elif index < len(args):
                value = args[index]
                index += 1
            else:
                raise FlagError(f"flag needs an argument: {arg}")
            deliver(spec, value)
            continue
        shorthands = arg[1:]
        while shorthands:
            letter = shorthands[0]
            spec = by_short.get(letter)
            if spec is None:
                raise FlagError(f"unknown shorthand flag: {go_quote_rune(letter)} in -{shorthands}")
            if len(shorthands) > 2 and shorthands[1] == "=":
                value, shorthands = shorthands[2:], ""
            elif spec.no_opt_default is not None:
                value, shorthands = spec.no_opt_default, shorthands[1:]
            elif len(shorthands) > 1:
                value, shorthands = shorthands[1:], ""
            elif index < len(args):
                value, shorthands = args[index], ""
                index += 1
            else:
                raise FlagError(f"flag needs an argument: {go_quote_rune(letter)} in -{shorthands}")
            deliver(spec, value)
    return positional
