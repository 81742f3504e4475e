"""The pflag-compatible scanner's Go helpers: `strconv.ParseUint` and `%q`, messages word for word.

The scanner's own syntax and messages (`-nvalue`, `--`, `unknown shorthand flag: ...`) are in
the flag tables of test_flags.py, which run through `build_flow_filters`.
"""

from __future__ import annotations

import pytest

from hushflow.filter.pflag import go_quote, parse_go_uint


@pytest.mark.parametrize(
    ("text", "base", "value"),
    [("0x10", 0, 16), ("010", 0, 8), ("0o10", 0, 8), ("0b11", 0, 3), ("1_000", 0, 1000), ("0", 0, 0), ("42", 10, 42)],
)
def test_parse_go_uint(text: str, base: int, value: int) -> None:
    assert parse_go_uint(text, base, 64) == value


@pytest.mark.parametrize(
    ("text", "base", "bits", "message"),
    [
        ("", 10, 32, 'strconv.ParseUint: parsing "": invalid syntax'),
        ("08", 0, 64, 'strconv.ParseUint: parsing "08": invalid syntax'),
        ("+1", 10, 32, 'strconv.ParseUint: parsing "+1": invalid syntax'),
        ("1_0", 10, 32, 'strconv.ParseUint: parsing "1_0": invalid syntax'),
        ("4294967296", 10, 32, 'strconv.ParseUint: parsing "4294967296": value out of range'),
    ],
)
def test_parse_go_uint_errors(text: str, base: int, bits: int, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_go_uint(text, base, bits)
    assert str(error.value) == message


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
