"""Fuzz: CEL filter expressions (filter/cel.py, filter/celfast.py, filter/flowmessage.py).

Property: any expression compiles into a filter or is refused with a `FilterError` (Hubble's
message), never another exception. A compiled filter answers every valid flow (recorded flows,
and mutated ones protojson accepts, in their canonical form) exactly as the full CEL runtime
does on the whole `flow.Flow` message, whichever way hushflow evaluates it (celfast's dict
predicate, a message with only the fields the expression reads); where celfast takes an
expression, its predicate agrees with the runtime and its needles are in every line it matches.
On an odd flow the reader hands out, the filter answers or raises one of `FLOW_SHAPE_ERRORS`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from hushflow.filter import FilterError, compile_filters
from hushflow.filter import cel as cel_filter
from hushflow.filter.celfast import fast_path
from hushflow.filter.flowmessage import FlowMessageBuilder
from hushflow.flow.protojson import FLOW_SHAPE_ERRORS, EventNormalizer, ProtoJSONError, encode_event
from hushflow.flow.reader import events_from_bytes
from hushflow.proto import flow_pb2
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import dumps, mutated_json, sample_golden_lines

F = FieldDescriptor
_INT32 = {F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32}
_UINT32 = {F.TYPE_UINT32, F.TYPE_FIXED32}
_INT64 = {F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64, F.TYPE_UINT64, F.TYPE_FIXED64}


@cache
def _paths() -> tuple[tuple[str, FieldDescriptor], ...]:
    """``_flow.a.b.c`` and its field, for fields reachable through singular messages (depth 3)."""
    out: list[tuple[str, FieldDescriptor]] = []

    def walk(desc: Descriptor, prefix: str, depth: int) -> None:
        for fd in desc.fields:
            path = f"{prefix}.{fd.name}"
            out.append((path, fd))
            sub = fd.message_type
            if (sub is not None and not fd.is_repeated and depth < 3
                    and not sub.full_name.startswith("google.protobuf.")):
                walk(sub, path, depth + 1)

    walk(flow_pb2.Flow.DESCRIPTOR, "_flow", 1)
    return tuple(out)


_STRINGS = ("''", "'DROPPED'", "'default'", "'kube-system'", "'10.0.0.1'", "'k8s:app=web'", "'a\\'b'", '"x"',
            "'é'", "r'\\d'", "'''multi'''", "'\\u00e9'", "'app-explicit-traffic-blocked'", "'*'")
_INTS = ("0", "1", "-1", "5", "443", "2147483647", "2147483648", "-2147483649", "9223372036854775807",
         "9223372036854775808", "0x10", "1e3")


def _literal(fd: FieldDescriptor) -> st.SearchStrategy[str]:
    if fd.type == F.TYPE_ENUM:
        names = [v.name for v in fd.enum_type.values]
        enum = fd.enum_type.name
        return st.one_of(st.sampled_from(names).map(lambda n: f"{enum}.{n}"),
                         st.sampled_from(names).map(lambda n: f"flow.{enum}.{n}"), st.sampled_from(_INTS))
    if fd.type in _INT32:
        return st.sampled_from(_INTS)
    if fd.type in _UINT32 or fd.type in _INT64:
        return st.one_of(st.sampled_from(_INTS).map(lambda n: n + "u" if n.lstrip("-").isdigit() else n),
                         st.sampled_from(_INTS))
    if fd.type == F.TYPE_BOOL:
        return st.sampled_from(["true", "false", "1"])
    if fd.message_type is not None and fd.message_type.full_name == "google.protobuf.Timestamp":
        return st.sampled_from(["timestamp('2026-03-02T09:00:00Z')", "timestamp('1970-01-01T00:00:00Z')",
                                "timestamp('x')"])
    if fd.message_type is not None and fd.message_type.full_name.startswith("google.protobuf."):
        return st.sampled_from(["null", "true", "5u", "'x'"])
    return st.sampled_from(_STRINGS)


_CMP = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


@st.composite
def atom(draw: st.DrawFn) -> str:
    path, fd = draw(st.sampled_from(_paths()))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return f"has({path})"
    if kind == 1 and (fd.is_repeated or fd.type == F.TYPE_STRING):
        size = draw(st.sampled_from(["0", "1", "2", "-1"]))
        return draw(st.sampled_from([f"size({path}) {draw(_CMP)} {size}", f"{path}.size() {draw(_CMP)} {size}"]))
    if fd.is_repeated and fd.type == F.TYPE_STRING:
        variable = draw(st.sampled_from(["x", "l", "_flow"]))
        body = draw(st.sampled_from([f"{variable} == {draw(st.sampled_from(_STRINGS))}",
                                     f"{variable}.startsWith({draw(st.sampled_from(_STRINGS))})",
                                     f"size({variable}) > 3", f"{variable}.matches('^a')"]))
        macro = draw(st.sampled_from(["exists", "all", "exists_one"]))
        return draw(st.sampled_from([f"{draw(st.sampled_from(_STRINGS))} in {path}", f"{path}.{macro}({variable}, {body})"]))
    if fd.is_repeated and fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
        sub = [f for f in fd.message_type.fields if not f.is_repeated and f.message_type is None]
        if sub:
            inner = draw(st.sampled_from(sub))
            macro = draw(st.sampled_from(["exists", "all", "exists_one"]))
            return f"{path}.{macro}(p, p.{inner.name} {draw(_CMP)} {draw(_literal(inner))})"
    if fd.message_type is not None and not fd.is_repeated and not fd.message_type.full_name.startswith("google."):
        return draw(st.sampled_from([f"has({path})", f"{path} == {fd.message_type.full_name}{{}}",
                                     f"{path} != {fd.message_type.name}{{}}"]))
    if fd.type == F.TYPE_STRING and not fd.is_repeated and kind < 5:
        method = draw(st.sampled_from(["startsWith", "endsWith", "contains", "matches"]))
        return f"{path}.{method}({draw(st.sampled_from(_STRINGS))})"
    literal = draw(_literal(fd))
    if draw(st.booleans()):
        return f"{path} {draw(_CMP)} {literal}"
    return f"{literal} {draw(_CMP)} {path}"


expression = st.recursive(
    atom(),
    lambda inner: st.one_of(
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"({e})"),
        st.tuples(inner, st.sampled_from([" && ", " || "]), inner).map("".join),
    ),
    max_leaves=4,
)
cel_text = st.one_of(
    expression, expression, expression,
    # a valid expression with a few characters changed, or a random one
    expression.flatmap(lambda e: st.tuples(st.integers(0, len(e)), st.text(max_size=3)).map(
        lambda cut: e[: cut[0]] + cut[1] + e[cut[0] + 1 :])),
    st.text(max_size=40),
    st.sampled_from(["", " ", "_flow", "true", "1 == 1", "_flow == _flow", "_flow.verdict", "[]",
                     "x" * 5000, "(" * 200 + "true" + ")" * 200, "_flow.nope == 1", "size(_flow) == 0",
                     "_flow.source.labels[0] == 'x'", "int(_flow.uuid) == 1", "1/0 == 1"]),
)


@cache
def _env() -> Any:
    return cel_filter.new_environment()


@cache
def _golden() -> tuple[tuple[bytes, dict[str, Any]], ...]:
    return tuple((line, orjson.loads(line)) for line in sample_golden_lines(30))


def _runtime(program: Any, flow: dict[str, Any]) -> bool:
    return program.eval(data={"_flow": FlowMessageBuilder()(flow)}).value() is True


def _check(compiled: Any, program: Any, shortcut: Any, line: bytes, event: dict[str, Any], expr: str) -> None:
    want = _runtime(program, event["flow"])
    assert compiled.matches(event) is want, (expr, line[:300])
    if shortcut is not None:
        assert shortcut.match(event["flow"]) is want, (expr, line[:300])
        if want:
            assert all(any(n in line for n in clause) for clause in shortcut.needles), (expr, shortcut.needles)


@fuzz_target(cel_text, st.lists(st.sampled_from(range(30)), max_size=2).flatmap(
    lambda picks: st.tuples(*(mutated_json(_golden()[i][1]) for i in picks))), ci_examples=500)
def test_fuzz_cel(expr: str, odd_events: tuple[Any, ...]) -> None:
    """A filter or a FilterError; on valid flows, the full CEL runtime's answer."""
    try:
        compiled = compile_filters([{"experimental": {"cel_expression": [expr]}}], [])
    except FilterError as exc:
        assert str(exc)
        try:  # the same refusal from the compiler itself
            cel_filter.compile_expression(_env(), expr)
        except FilterError:
            note("refused")
            return
        raise AssertionError(f"compile_filters refused what compile_expression takes: {exc}") from None
    program = cel_filter.compile_expression(_env(), expr)
    shortcut = fast_path(expr)
    note("compiled, fast path" if shortcut is not None else "compiled, runtime")
    for line, event in _golden():
        _check(compiled, program, shortcut, line, event, expr)
    for odd in odd_events:
        for read in events_from_bytes(dumps(odd)):
            try:
                assert isinstance(compiled.matches(read.data), bool)
            except FLOW_SHAPE_ERRORS:
                note("odd flow: shape error")
            try:
                canonical = EventNormalizer().normalize(read.data).event
            except ProtoJSONError:
                continue
            if isinstance(canonical.get("flow"), dict):
                note("valid odd flow")
                _check(compiled, program, shortcut, encode_event(canonical), canonical, expr)
