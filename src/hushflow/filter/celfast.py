"""Evaluate simple CEL filter expressions directly on the flow dict.

Building a ``flow.Flow`` message per flow and handing it to the CEL runtime costs several
microseconds; most filter expressions people write are simple comparisons that can be answered
from the canonical flow dict directly. This module recognises a small, closed subset of CEL and
compiles it into a dict predicate *with the same result as the CEL program*:

    expr  := and ('||' and)*
    and   := unary ('&&' unary)*
    unary := '!' unary | '(' expr ')' | atom
    atom  := path CMP literal | literal CMP path        (scalar field)
           | literal 'in' path                          (repeated string field)
           | 'has' '(' path ')'
           | 'size' '(' path ')' CMP int | path '.' 'size' '(' ')' CMP int
    path  := '_flow' ('.' field)+                        (singular messages, then the field)

Literals are strings without escapes, ints, uints (``3u``), ``true``/``false`` and enum constants
(``Verdict.DROPPED``, ``flow.Verdict.DROPPED``). 64-bit fields, wrappers, timestamps and anything
else are left to the runtime. The expression must already have type-checked (cel.py does that
first), so operand types are known to be compatible; when a shape or a type is not one handled
here, :func:`fast_path` returns None. None of these forms can raise a CEL runtime error, so plain
boolean logic is exact. Equivalence with the runtime is tested over Hubble's recorded corpus.

Each predicate also yields byte literals that every matching canonical line contains (for the
line pre-check): ``"verdict":"DROPPED"`` for an enum equality, ``"tag"`` for ``'tag' in list``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from hushflow.filter.field_filter import FlowDict, Needles, enum_name, json_safe, key_string, quoted
from hushflow.proto import flow_pb2

FLOW_VARIABLE = "_flow"
CONTAINER = "flow"

_TOKEN = re.compile(
    r"(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")|(?P<uint>[0-9]+[uU])|(?P<int>-?[0-9]+)(?![.eExX0-9])"
    r"|(?P<id>[_A-Za-z][_A-Za-z0-9]*)|(?P<op>==|!=|<=|>=|&&|\|\||[<>!().,])|(?P<ws>\s+)|(?P<other>.)"
)
_INT32 = frozenset((FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32))
_UINT32 = frozenset((FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32))
_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType({
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
})
_MIRROR = MappingProxyType({"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="})


@dataclass(frozen=True)
class FastPath:
    match: Callable[[FlowDict], bool]
    needles: Needles  # AND of OR-clauses of literals every matching canonical line contains


class _NotFast(Exception):
    pass


@dataclass(frozen=True)
class _Path:
    """A field path from a root: ``_flow`` (flow.Flow) or a comprehension variable (an element
    message, or a string when ``root`` is None)."""

    root: Descriptor | None
    names: tuple[str, ...]


def _resolve(path: _Path) -> list[FieldDescriptor]:
    desc = path.root
    if desc is None:
        if path.names:
            raise _NotFast
        return []
    out: list[FieldDescriptor] = []
    for i, name in enumerate(path.names):
        fd = desc.fields_by_name.get(name)
        if fd is None:
            raise _NotFast
        out.append(fd)
        if i < len(path.names) - 1:
            sub = fd.message_type
            if sub is None or fd.is_repeated or sub.full_name.startswith("google.protobuf."):
                raise _NotFast
            desc = sub
    if not out:
        raise _NotFast  # a whole message is not a scalar
    return out


def _is_string(path: _Path) -> bool:
    if path.root is None:
        return not path.names
    last = _resolve(path)[-1]
    return not last.is_repeated and last.type == FieldDescriptor.TYPE_STRING


def _enum_constant(parts: Sequence[str]) -> tuple[EnumDescriptor, int]:
    """`Verdict.DROPPED` / `flow.Verdict.DROPPED` -> (enum, number), resolved in container flow."""
    if len(parts) < 2:
        raise _NotFast
    type_name = ".".join(parts[:-1])
    pool = descriptor_pool.Default()
    for candidate in (f"{CONTAINER}.{type_name}", type_name):
        try:
            enum = pool.FindEnumTypeByName(candidate)
        except KeyError:
            continue
        value = enum.values_by_name.get(parts[-1])
        if value is None:
            raise _NotFast
        return enum, value.number
    raise _NotFast


_MISSING = object()


def _getter(path: Sequence[str], default: Any) -> Callable[[FlowDict], Any]:
    """Value at ``path`` in a canonical dict; ``default`` when it or a parent is absent."""
    if not path:
        return lambda value: value
    if len(path) == 1:
        (k1,) = path
        return lambda flow: flow.get(k1, default)
    if len(path) == 2:
        k1, k2 = path

        def get2(flow: FlowDict) -> Any:
            sub = flow.get(k1)
            return default if sub is None else sub.get(k2, default)

        return get2
    head, last = tuple(path[:-1]), path[-1]

    def get_n(flow: FlowDict) -> Any:
        v: Any = flow
        for k in head:
            v = v.get(k)
            if v is None:
                return default
        return v.get(last, default)

    return get_n


class _Parser:
    def __init__(self, expr: str) -> None:
        toks = []
        for m in _TOKEN.finditer(expr):
            kind = m.lastgroup or ""
            if kind == "ws":
                continue
            if kind == "other":
                raise _NotFast
            toks.append((kind, m.group()))
        toks.append(("eos", ""))
        self.toks = toks
        self.pos = 0
        # Variables in scope: `_flow` at the top, the iteration variable inside a comprehension
        # (whose body may only use that variable, which keeps every predicate one-argument).
        self.scope: dict[str, Descriptor | None] = {FLOW_VARIABLE: flow_pb2.Flow.DESCRIPTOR}

    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.toks[min(self.pos + offset, len(self.toks) - 1)]

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.pos]
        if text is not None and tok[1] != text:
            raise _NotFast
        self.pos += 1
        return tok

    def is_call(self, offset: int = 0) -> bool:
        return self.peek(offset)[1] == "." and self.peek(offset + 1)[0] == "id" and self.peek(offset + 2)[1] == "("

    # expr := and ('||' and)*
    def expr(self) -> FastPath:
        parts = [self.conj()]
        while self.peek()[1] == "||":
            self.take()
            parts.append(self.conj())
        return _or(parts)

    def conj(self) -> FastPath:
        parts = [self.unary()]
        while self.peek()[1] == "&&":
            self.take()
            parts.append(self.unary())
        return _and(parts)

    def unary(self) -> FastPath:
        kind, text = self.peek()
        if text == "!" and kind == "op":
            self.take()
            inner = self.unary()
            test = inner.match
            return FastPath(lambda flow: not test(flow), ())
        if text == "(" and kind == "op":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.atom()

    def path(self) -> _Path:
        kind, root = self.take()
        if kind != "id" or root not in self.scope:
            raise _NotFast
        names = []
        while self.peek()[1] == "." and self.peek(1)[0] == "id" and self.peek(2)[1] != "(":
            self.take()
            names.append(self.take()[1])
        return _Path(self.scope[root], tuple(names))

    def operand(self) -> tuple[str, Any]:
        kind, text = self.peek()
        if kind == "id" and text in self.scope:
            path = self.path()
            if self.is_call() and self.peek(1)[1] == "size" and self.peek(3)[1] == ")":
                self.pos += 4
                return "size", path
            return "path", path
        if kind == "id" and text == "size" and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            path = self.path()
            self.take(")")
            return "size", path
        self.take()
        if kind == "str":
            return "str", text[1:-1]
        if kind == "uint":
            return "uint", int(text[:-1])
        if kind == "int":
            return "int", int(text)
        if kind == "id" and text in ("true", "false"):
            return "bool", text == "true"
        if kind == "id":
            parts = [text]
            while self.peek()[1] == "." and self.peek(1)[0] == "id":
                self.take()
                parts.append(self.take()[1])
            return "enum", _enum_constant(parts)
        raise _NotFast

    def atom(self) -> FastPath:
        kind, text = self.peek()
        if kind == "id" and text == "has" and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            path = self.path()
            self.take(")")
            return _has(path)
        left = self.operand()
        if left[0] == "path" and self.is_call():
            return self.method(left[1])
        op = self.take()[1]
        right = self.operand()
        if op == "in":
            if left[0] != "str" or right[0] != "path":
                raise _NotFast
            return _in(left[1], right[1])
        if op not in _COMPARE:
            raise _NotFast
        if left[0] in ("path", "size") and right[0] not in ("path", "size"):
            return _compare(left, op, right)
        if right[0] in ("path", "size") and left[0] not in ("path", "size"):
            return _compare(right, _MIRROR[op], left)
        raise _NotFast

    def method(self, target: _Path) -> FastPath:
        self.take(".")
        name = self.take()[1]
        self.take("(")
        if name in _STRING_METHODS:
            kind, literal = self.take()
            self.take(")")
            if kind != "str" or not _is_string(target):
                raise _NotFast
            return _string_method(target, name, literal[1:-1])
        if name not in _COMPREHENSIONS:
            raise _NotFast
        kind, var = self.take()
        if kind != "id" or var in self.scope or var in ("has", "size", "true", "false", "in"):
            raise _NotFast
        self.take(",")
        fields = _resolve(target)
        last = fields[-1]
        if not last.is_repeated:
            raise _NotFast
        if last.message_type is not None:
            if last.message_type.GetOptions().map_entry or last.message_type.full_name.startswith("google.protobuf."):
                raise _NotFast
            element: Descriptor | None = last.message_type
        elif last.type == FieldDescriptor.TYPE_STRING:
            element = None
        else:
            raise _NotFast
        saved = self.scope
        self.scope = {var: element}
        try:
            body = self.expr()
        finally:
            self.scope = saved
        self.take(")")
        return _comprehension(target, name, body)


_STRING_METHODS = frozenset(("startsWith", "endsWith", "contains"))
_COMPREHENSIONS = frozenset(("exists", "all", "exists_one"))


def _string_method(target: _Path, name: str, literal: str) -> FastPath:
    get = _getter(target.names, "")
    if name == "startsWith":
        return FastPath(lambda obj: get(obj).startswith(literal), ())
    if name == "endsWith":
        return FastPath(lambda obj: get(obj).endswith(literal), ())
    return FastPath(lambda obj: literal in get(obj), ())


def _comprehension(target: _Path, name: str, body: FastPath) -> FastPath:
    get = _getter(target.names, ())
    test = body.match
    if name == "exists":

        def exists(obj: FlowDict) -> bool:
            for element in get(obj):
                if test(element):
                    return True
            return False

        # A matching element's literals are in the line too.
        return FastPath(exists, body.needles)
    if name == "all":

        def all_(obj: FlowDict) -> bool:
            for element in get(obj):
                if not test(element):
                    return False
            return True

        return FastPath(all_, ())

    def exists_one(obj: FlowDict) -> bool:
        return sum(1 for element in get(obj) if test(element)) == 1

    return FastPath(exists_one, body.needles)


def _and(parts: list[FastPath]) -> FastPath:
    if len(parts) == 1:
        return parts[0]
    tests = tuple(p.match for p in parts)

    def match_all(flow: FlowDict) -> bool:
        for test in tests:
            if not test(flow):
                return False
        return True

    return FastPath(match_all, tuple(c for p in parts for c in p.needles))


def _or(parts: list[FastPath]) -> FastPath:
    if len(parts) == 1:
        return parts[0]
    tests = tuple(p.match for p in parts)

    def match_any(flow: FlowDict) -> bool:
        for test in tests:
            if test(flow):
                return True
        return False

    needles: Needles = ()
    if all(p.needles for p in parts):
        needles = (tuple(dict.fromkeys(n for p in parts for n in p.needles[0])),)
    return FastPath(match_any, needles)


def _has(path: _Path) -> FastPath:
    fields = _resolve(path)
    last = fields[-1]
    if last.message_type is None and not last.is_repeated and last.has_presence:
        raise _NotFast  # proto3 `optional` scalars: not used by flows
    # Canonical dicts omit unset messages, default scalars and empty lists: presence is has().
    get = _getter(path.names, _MISSING)
    needles: Needles = ((f'"{last.name}":'.encode(),),)
    return FastPath(lambda flow: get(flow) is not _MISSING, needles)


def _in(value: str, path: _Path) -> FastPath:
    last = _resolve(path)[-1]
    if not last.is_repeated or last.type != FieldDescriptor.TYPE_STRING:
        raise _NotFast
    get = _getter(path.names, ())
    return FastPath(lambda flow: value in get(flow), ((quoted(value),),) if json_safe(value) else ())


def _compare(subject: tuple[str, Any], op: str, literal: tuple[str, Any]) -> FastPath:
    kind, path = subject
    lkind, value = literal
    compare = _COMPARE[op]
    if path.root is None:  # a string element of a comprehension
        if kind == "size":
            if lkind != "int":
                raise _NotFast
            return FastPath(lambda s: compare(len(s), value), ())
        if lkind != "str":
            raise _NotFast
        element_needle = quoted(value) if op == "==" and value and json_safe(value) else None
        return FastPath(lambda s: compare(s, value), ((element_needle,),) if element_needle else ())
    fields = _resolve(path)
    last = fields[-1]
    names = path.names
    if kind == "size":
        if lkind != "int" or not (last.is_repeated or last.type == FieldDescriptor.TYPE_STRING):
            raise _NotFast
        if last.message_type is not None and last.message_type.GetOptions().map_entry:
            raise _NotFast
        get = _getter(names, ())
        return FastPath(lambda flow: compare(len(get(flow)), value), ())
    if last.is_repeated or last.message_type is not None:
        raise _NotFast
    key = last.name
    needle: bytes | None = None
    if last.type == FieldDescriptor.TYPE_ENUM:
        enum = last.enum_type
        if lkind == "enum" and value[0].full_name == enum.full_name:
            number = value[1]
        elif lkind == "int":
            number = value
        else:
            raise _NotFast
        numbers = {v.name: v.number for v in enum.values}
        get = _getter(names, 0)

        def enum_test(flow: FlowDict) -> bool:
            v = get(flow)
            return compare(numbers.get(v, v) if isinstance(v, str) else v, number)

        name = enum_name(enum, number)
        if op == "==" and number != 0 and name is not None:
            needle = key_string(key, name)
        return FastPath(enum_test, ((needle,),) if needle else ())
    if last.type == FieldDescriptor.TYPE_STRING and lkind == "str":
        default: Any = ""
        if op == "==" and value and json_safe(value):
            needle = key_string(key, value)
    elif last.type == FieldDescriptor.TYPE_BOOL and lkind == "bool":
        default = False
        if op == "==" and value:
            needle = f'"{key}":true'.encode()
    elif (last.type in _INT32 and lkind == "int") or (last.type in _UINT32 and lkind == "uint"):
        default = 0
        if op == "==" and value != 0:
            needle = f'"{key}":{value}'.encode()
    else:
        raise _NotFast
    get = _getter(names, default)
    return FastPath(lambda flow: compare(get(flow), value), ((needle,),) if needle else ())


def fast_path(expr: str) -> FastPath | None:
    """A dict predicate equal to the (type-checked) expression, or None if not in the subset."""
    try:
        parser = _Parser(expr)
        result = parser.expr()
        if parser.peek()[0] != "eos":
            return None
        return result
    except (_NotFast, IndexError):
        return None
