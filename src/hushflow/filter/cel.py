"""CEL filters (``experimental.cel_expression``), evaluated like Hubble does with cel-go.

Hubble's environment: container ``flow``, every flow message and enum type, and one variable
``_flow`` of type ``flow.Flow``. An expression must type-check to ``bool`` or the filter is
rejected; several expressions are ORed; an evaluation error means "no match". Expressions longer
than 4096 code points are rejected by the parser.

Runtime: ``cel-expr-python`` (Google's CEL C++ runtime), which type-checks against the same
protobuf descriptors; see docs/cel-runtime.md for the comparison with the alternatives. Its
messages differ from cel-go's in small ways, which :func:`_cel_go_message` rewrites so that users
see Hubble's exact text (``found no matching overload for 'endsWith' applied to
'list(string).(string)'``, ``undefined field 'x'``, ``got "int", wanted "bool" result type``).

Per flow, a ``flow.Flow`` message is built from the dict with only the top-level fields the
expressions read (when that can be told from the source text), then handed to the programs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cel_expr_python import cel
from google.protobuf import descriptor_pool

from hushflow.filter.celfast import FastPath, fast_path
from hushflow.filter.field_filter import (
    COST_CEL,
    COST_SCAN,
    FieldFilter,
    FilterError,
    FlowDict,
    Needles,
    any_of,
)
from hushflow.filter.flowmessage import FlowMessageBuilder
from hushflow.proto import flow_pb2

FLOW_VARIABLE = "_flow"
CONTAINER = "flow"
MAX_EXPRESSION_SIZE = 4096  # cel.ParserExpressionSizeLimit in Hubble

_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_STATUS_SUFFIX = re.compile(r" \[[A-Z_]+\]$")
_OVERLOAD = re.compile(r"(ERROR: <input>:(\d+):(\d+): found no matching overload for '([^']+)' applied to )'\((.*)\)'")
_UNDEFINED_FIELD = re.compile(r"undefined field '([^']+)' not found in struct '[^']+'")
_PROBE_TYPE = re.compile(r"applied to '\((.*), string\)'")
_STRING_FUNCTIONS = frozenset(("endsWith", "startsWith", "contains", "matches"))

_CPP_TYPE_NAMES = MappingProxyType({
    "BOOL": "bool",
    "INT": "int",
    "UINT": "uint",
    "DOUBLE": "double",
    "STRING": "string",
    "BYTES": "bytes",
    "NULL": "null_type",
    "TIMESTAMP": "google.protobuf.Timestamp",
    "DURATION": "google.protobuf.Duration",
    "DYN": "dyn",
    "ERROR": "*error*",
})


class CelFilterError(FilterError):
    """A CEL expression Hubble would reject; ``hint`` may suggest a fix (hushflow's own words)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def new_environment() -> Any:
    """Hubble's CEL environment over hushflow's copy of the flow schema."""
    flow_pb2.Flow.DESCRIPTOR  # noqa: B018 - the generated module registers the types in the pool
    return cel.NewEnv(
        descriptor_pool.Default(), variables={FLOW_VARIABLE: cel.Type("flow.Flow")}, container=CONTAINER
    )


def _split_top_level(text: str) -> list[str]:
    """Split ``a, list(b), map(c, d)`` at top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _offset(expr: str, line: int, column: int) -> int:
    """0-based offset of a 1-based (line, column) location, columns counted in code points."""
    lines = expr.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + column - 1


def _is_member_call(expr: str, offset: int) -> bool:
    """Is the call whose '(' is at ``offset`` written receiver-style (``x.f(...)``)?"""
    if offset <= 0 or offset >= len(expr) or expr[offset] != "(":
        return False
    i = offset - 1
    while i >= 0 and expr[i].isspace():
        i -= 1
    while i >= 0 and (expr[i].isalnum() or expr[i] == "_"):
        i -= 1
    while i >= 0 and expr[i].isspace():
        i -= 1
    return i >= 0 and expr[i] == "."


def _cel_go_message(expr: str, raw: str) -> str:
    """Rewrite a cel-cpp compile error into cel-go's wording."""
    msg = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", raw.strip(), count=1))
    msg = _UNDEFINED_FIELD.sub(r"undefined field '\1'", msg)

    def overload(m: re.Match[str]) -> str:
        head, line, col, args = m.group(1), int(m.group(2)), int(m.group(3)), m.group(5)
        types = _split_top_level(args)
        if types and _is_member_call(expr, _offset(expr, line, col)):
            return f"{head}'{types[0]}.({', '.join(types[1:])})'"
        return f"{head}'({', '.join(types)})'"

    return _OVERLOAD.sub(overload, msg)


def _hint(expr: str, message: str) -> str | None:
    """Suggest ``list.exists(x, x.f(...))`` for string functions called on a list."""
    if "applied to 'list(string)." not in message:
        return None
    m = re.search(r"(_flow(?:\s*\.\s*\w+)+)\s*\.\s*(endsWith|startsWith|contains|matches)\s*\(", expr)
    if m is None or m.group(2) not in _STRING_FUNCTIONS:
        return None
    depth, i = 1, m.end()
    while i < len(expr) and depth:
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        i += 1
    args = expr[m.end() : i - 1]
    receiver = re.sub(r"\s+", "", m.group(1))
    return (
        f"hushflow hint: {receiver} is a list of strings; to test its elements write "
        f"{receiver}.exists(l, l.{m.group(2)}({args}))"
    )


def _type_name(env: Any, expr: str, cpp_name: str) -> str:
    """cel-go's name of the expression's type. cel-cpp's own names differ, and it reports
    ``wrapper(bool)`` as BOOL; compiling ``(expr).endsWith('')`` makes the type checker name
    the type in cel-go's spelling in its overload error."""
    try:
        env.compile(f"({expr}).endsWith('')")
    except RuntimeError as err:
        m = _PROBE_TYPE.search(str(err))
        if m:
            return m.group(1)
    else:
        if cpp_name == "STRING":
            return "string"
    return _CPP_TYPE_NAMES.get(cpp_name, cpp_name)


def compile_expression(env: Any, expr: str) -> Any:
    """Compile and type-check one expression; raises CelFilterError with Hubble's message."""
    size = len(expr)
    if size > MAX_EXPRESSION_SIZE:
        raise CelFilterError(
            "error compiling CEL expression: ERROR: <input>:-1:0: expression code point size exceeds"
            f" limit: size: {size}, limit {MAX_EXPRESSION_SIZE}"
        )
    try:
        program = env.compile(expr)
    except RuntimeError as err:
        message = _cel_go_message(expr, str(err))
        raise CelFilterError(f"error compiling CEL expression: {message}", _hint(expr, message)) from None
    result = program.return_type()
    name = _type_name(env, expr, result.name()) if result == cel.Type.BOOL else None
    if result != cel.Type.BOOL or name != "bool":
        got = name or _type_name(env, expr, result.name())
        raise CelFilterError(f'error compiling CEL expression: got "{got}", wanted "bool" result type')
    return program


# A token scan good enough to tell which `_flow` fields an expression reads: string and bytes
# literals are skipped so that '_flow.x' inside quotes does not count.
_TOKEN = re.compile(
    r"""(?P<str>[rRbB]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))"""
    r"""|(?P<id>[_A-Za-z][_A-Za-z0-9]*)|(?P<dot>\.)|(?P<ws>\s+)|(?P<other>.)"""
)


def referenced_fields(expr: str) -> frozenset[str] | None:
    """Top-level ``_flow`` fields the expression reads, or None when ``_flow`` is used whole
    (``_flow == x``, a macro variable named ``_flow`` ...), in which case all fields are needed."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "ws"]
    fields: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "id" or text != FLOW_VARIABLE:
            continue
        if i > 0 and tokens[i - 1][0] == "dot":
            continue  # a field named _flow of something else
        if i + 2 < len(tokens) and tokens[i + 1][0] == "dot" and tokens[i + 2][0] == "id":
            fields.add(tokens[i + 2][1])
        else:
            return None
    return frozenset(fields)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledCel:
    programs: tuple[Any, ...]
    fields: frozenset[str] | None
    fast: tuple[FastPath, ...]


def compile_cel(expressions: Sequence[str], env: Any | None = None) -> CompiledCel:
    """Type-check every expression (Hubble's errors); simple ones get a dict fast path."""
    env = env if env is not None else new_environment()
    programs = []
    fast = []
    needed: set[str] | None = set()
    for expr in expressions:
        program = compile_expression(env, expr)
        shortcut = fast_path(expr)
        if shortcut is not None:
            fast.append(shortcut)
            continue
        programs.append(program)
        found = referenced_fields(expr)
        if found is None or needed is None:
            needed = None
        else:
            needed |= found
    if needed is not None and not needed <= set(flow_pb2.Flow.DESCRIPTOR.fields_by_name):
        needed = None
    return CompiledCel(tuple(programs), None if needed is None else frozenset(needed), tuple(fast))


def compile_cel_filter(field: str, expressions: Sequence[str], env: Any | None = None) -> FieldFilter:
    compiled = compile_cel(expressions, env)
    fast = tuple(f.match for f in compiled.fast)
    needles: Needles = ()
    if not compiled.programs:
        if len(compiled.fast) == 1:
            needles = compiled.fast[0].needles
        elif all(f.needles for f in compiled.fast):  # ORed expressions: one clause of alternatives
            needles = (tuple(dict.fromkeys(n for f in compiled.fast for n in f.needles[0])),)
        return FieldFilter(field, any_of(fast), COST_SCAN, needles)

    build = FlowMessageBuilder(compiled.fields)
    programs = compiled.programs
    variable = FLOW_VARIABLE

    def match(flow: FlowDict) -> bool:
        for shortcut in fast:
            if shortcut(flow):
                return True
        try:
            message = build(flow)
        except Exception:  # a malformed flow cannot be evaluated: no match, like a runtime error
            return False
        data = {variable: message}
        for program in programs:
            # An evaluation error comes back as an error value, never True: no match.
            if program.eval(data=data).value() is True:
                return True
        return False

    return FieldFilter(field, match, COST_CEL)
