"""Read Kubernetes manifests from YAML, remembering where every field was written.

libyaml (through PyYAML's C composer) builds the node tree; we turn it into plain Python
values ourselves so that each mapping key and sequence item keeps its line and column.
Scalars follow YAML 1.1 as Kubernetes' own YAML reader does (`yes` is a boolean), except
that timestamps stay strings, as they do once Kubernetes converts YAML to JSON.

Files, directories (recursively, `*.yaml` / `*.yml`) and `-` (stdin) are accepted. `kind: List`
objects (what `kubectl get -o yaml` prints) are unpacked into their items.

Every input is hostile: only regular files are opened, a file is read up to `MAX_FILE_CHARS`,
and building values is bounded (aliases as Kubernetes bounds them, nesting, values per file),
so a small file cannot make the process expand billions of values or overflow its stack. What
is refused is a diagnostic with file:line, never an exception.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import yaml

from hushflow.policy.source import FieldPath, Location

_PLAIN_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"

#: Characters read from one file (or stdin) at most; a larger input is refused (HF004).
MAX_FILE_CHARS = 64 << 20
#: Values (scalars, sequences, mappings) built from one file at most, aliases expanded.
MAX_NODES_PER_FILE = 1_000_000
#: Nesting levels at most. libyaml itself stops at 1,000 written levels, but aliases and merge
#: keys nest further, and the checks after loading recurse: the deepest path in the Cilium
#: schemas is `_SCHEMA_DEPTH` levels, so 100 leaves room and keeps every later walk shallow.
MAX_DEPTH = 100
_SCHEMA_DEPTH = 13
#: Longest integer text converted (64-bit values in any YAML 1.1 spelling fit, with `_`s).
_MAX_INT_TEXT = 100
# Kubernetes' (go-yaml's) alias bound: see `_allowed_alias_share`.
_ALIAS_SHARE_LOW = 400_000
_ALIAS_SHARE_HIGH = 4_000_000


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Something that kept (part of) a file from being read. `code` is a lint code."""

    code: str
    message: str
    location: Location
    hint: str = ""


@dataclass(slots=True)
class Manifest:
    """One Kubernetes object as written, with the position of each of its fields."""

    data: Any
    file: str
    document: int  # 0-based index of the YAML document in its file
    _positions: dict[FieldPath, tuple[int, int]]
    prefix: FieldPath = ()  # e.g. ("items", 3) for an object inside a `kind: List`

    def locate(self, path: FieldPath = ()) -> Location:
        """The location of `path` (relative to this object), or of its nearest written parent."""
        full = self.prefix + tuple(path)
        probe = full
        while probe not in self._positions and probe:
            probe = probe[:-1]
        line, column = self._positions.get(probe, (0, 0))
        return Location(self.file, line, column, tuple(path))

    @property
    def kind(self) -> str:
        value = self.data.get("kind") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def api_version(self) -> str:
        value = self.data.get("apiVersion") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else ""


@dataclass(slots=True)
class LoadResult:
    manifests: list[Manifest] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    nodes: int = 0  # values built, aliases expanded: the work loading took


def _kind_of(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def _iter_paths(paths: Sequence[str], problems: list[LoadProblem]) -> Iterator[str]:
    """The files to read: only regular files (after following symlinks), never a FIFO or device.

    Opening a FIFO blocks until someone writes to it, and `/dev/zero` never ends: neither is
    ever opened. In a directory they are skipped with a warning (HF006); named on the command
    line they are an error (HF004).
    """
    for path in paths:
        if path == "-":
            yield path
            continue
        try:
            mode = os.stat(path).st_mode  # follows symlinks: a link to /dev/zero is a device
        except FileNotFoundError:
            problems.append(LoadProblem("HF004", f"no such file or directory: {path}", Location(path)))
            continue
        except OSError as exc:
            problems.append(LoadProblem("HF004", f"cannot read: {exc.strerror or exc}", Location(path)))
            continue
        if stat.S_ISDIR(mode):
            yield from _iter_directory(path, problems)
        elif stat.S_ISREG(mode):
            yield path
        else:
            problems.append(
                LoadProblem(
                    "HF004",
                    f"{_kind_of(mode)}, not a regular file: {path}",
                    Location(path),
                    "name a YAML file or a directory of them",
                )
            )


def _iter_directory(path: str, problems: list[LoadProblem]) -> Iterator[str]:
    def unreadable(exc: OSError) -> None:
        where = exc.filename or path
        problems.append(LoadProblem("HF004", f"cannot read directory: {exc.strerror or exc}", Location(where)))

    found = False
    for root, dirs, files in os.walk(path, onerror=unreadable):
        dirs.sort()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(files):
            if not name.endswith((".yaml", ".yml")) or name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                mode = os.stat(full).st_mode
            except OSError:
                found = True
                yield full  # a dangling symlink: reading it reports the error
                continue
            if stat.S_ISREG(mode):
                found = True
                yield full
            else:
                problems.append(
                    LoadProblem(
                        "HF006",
                        f"skipped {full}: {_kind_of(mode)}, not a regular file",
                        Location(full),
                        "only regular files are read; remove it or rename it so it does not end in .yaml",
                    )
                )
    if not found:
        problems.append(LoadProblem("HF004", f"no *.yaml or *.yml files in directory {path}", Location(path)))


class _Refused(Exception):
    """A document hushflow will not read further (too deep, too large, aliases expanding too far)."""

    def __init__(self, problem: LoadProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _allowed_alias_share(decoded: int) -> float:
    """The share of a document's values that may come from expanding aliases.

    Kubernetes reads YAML with go-yaml, which counts every value it decodes and every value
    decoded inside an alias expansion. Once more than 100 values came from aliases and more than
    1,000 were decoded, it refuses the document ("document contains excessive aliasing") when the
    alias share exceeds 99% for documents up to 400,000 values, 10% from 4,000,000 values, and a
    share falling linearly in between. The same rule here refuses the same documents.
    """
    if decoded <= _ALIAS_SHARE_LOW:
        return 0.99
    if decoded >= _ALIAS_SHARE_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _ALIAS_SHARE_LOW) / (_ALIAS_SHARE_HIGH - _ALIAS_SHARE_LOW)


class _Builder:
    """Turns the composed YAML node trees of one file into plain values plus position tables.

    libyaml hands aliases back as the very node they name, so a billion-laughs document is a
    small graph that a naive walk expands into billions of values. Every value built is counted;
    aliases are bounded as Kubernetes bounds them (`_allowed_alias_share`), a file by
    `MAX_NODES_PER_FILE`, nesting (including through aliases and merges) by `MAX_DEPTH`, and an
    alias that contains itself is refused.
    """

    def __init__(self, loader: yaml.CSafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.nodes = 0  # values built in this file, over all its documents
        self.start_document()

    def start_document(self) -> None:
        self.positions: dict[FieldPath, tuple[int, int]] = {}
        self.problems: list[LoadProblem] = []
        self.decoded = 0
        self.aliased = 0
        self.alias_depth = 0
        self._alias_at: FieldPath = ()  # where the outermost alias being expanded is used
        self._seen: set[int] = set()  # ids of nodes built once: meeting one again is an alias
        self._open: set[int] = set()  # ids of collections being built: meeting one is a cycle

    def _where(self, path: FieldPath, node: yaml.Node) -> Location:
        line, column = self.positions.get(path) or (node.start_mark.line + 1, node.start_mark.column + 1)
        return Location(self.file, line, column, path)

    def _refuse(self, message: str, path: FieldPath, node: yaml.Node, hint: str) -> _Refused:
        return _Refused(LoadProblem("HF001", message, self._where(path, node), hint))

    def _count(self, path: FieldPath, node: yaml.Node) -> None:
        self.nodes += 1
        self.decoded += 1
        if self.alias_depth:
            self.aliased += 1
            if (
                self.aliased > 100
                and self.decoded > 1000
                and self.aliased / self.decoded > _allowed_alias_share(self.decoded)
            ):
                raise self._refuse(
                    f"document contains excessive aliasing: {self.aliased:,} of {self.decoded:,} values "
                    "come from expanding aliases",
                    self._alias_at,
                    node,
                    "Kubernetes refuses such a document too; write the values out instead of through `*alias`",
                )
        if self.nodes > MAX_NODES_PER_FILE:
            raise self._refuse(
                f"more than {MAX_NODES_PER_FILE:,} YAML values in one file",
                path,
                node,
                "split the file into smaller ones",
            )

    def build(self, node: yaml.Node, path: FieldPath, depth: int = 0) -> Any:
        self._count(path, node)
        if depth > MAX_DEPTH:
            raise self._refuse(
                f"nested deeper than {MAX_DEPTH} levels",
                path,
                node,
                f"Cilium objects nest {_SCHEMA_DEPTH} levels at most (the deepest path in their schemas)",
            )
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _PLAIN_TAGS:
                if node.tag == _INT_TAG:
                    return self._integer(node, path)
                return self._scalar(node, path)
            return node.value
        ident = id(node)
        if ident in self._open:
            raise self._refuse(
                "an alias refers to a node that contains it (a recursive structure)",
                path,
                node,
                "Kubernetes objects are trees: remove the `*alias` that points at its own parent",
            )
        alias = ident in self._seen
        self._seen.add(ident)
        self._open.add(ident)
        if alias:
            if not self.alias_depth:
                self._alias_at = path
            self.alias_depth += 1
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path, depth)
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
            return None  # pragma: no cover - libyaml only produces the three node kinds
        finally:
            self._open.discard(ident)
            if alias:
                self.alias_depth -= 1

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        """An int, float, bool or null. Resolved plain scalars always convert; an explicit tag
        (`!!int 0x`, `!!bool maybe`) can name text PyYAML cannot convert, and says so by raising."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, LookupError, TypeError):
            kind = node.tag.rsplit(":", 1)[-1]
            shown = node.value if len(node.value) <= 24 else f"{node.value[:20]}... ({len(node.value):,} characters)"
            raise self._refuse(
                f"{shown!r} is not a valid !!{kind}",
                path,
                node,
                f"remove the !!{kind} tag, or write a {kind} YAML 1.1 can read",
            ) from None

    def _integer(self, node: yaml.ScalarNode, path: FieldPath) -> int:
        text = node.value
        # Python refuses to turn more than 4,300 decimal digits into an int (ValueError), and
        # Kubernetes reads no integer beyond 64 bits as one: both are refused before conversion.
        value = self._scalar(node, path) if len(text) <= _MAX_INT_TEXT else None
        if not isinstance(value, int) or not -(1 << 63) <= value < (1 << 64):
            shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text):,} characters)"
            raise self._refuse(
                f"integer {shown} does not fit in 64 bits",
                path,
                node,
                "Kubernetes reads integers of at most 64 bits; quote the value if it is meant as text",
            )
        return value

    def _sequence(self, node: yaml.SequenceNode, path: FieldPath, depth: int) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            self.positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            items.append(self.build(item, child, depth + 1))
        return items

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                mapping.update(self._merged(value_node, path, depth))
            else:
                own.append((key_node, value_node))
        merged = set(mapping)
        for key_node, value_node in own:
            key = self.build(key_node, path, depth + 1)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            child = (*path, key) if isinstance(key, str) else (*path, str(key))
            if key in mapping and key not in merged:
                # Kubernetes' strict YAML reader refuses duplicate keys.
                self.problems.append(
                    LoadProblem(
                        "HF001",
                        f'mapping key "{key}" already defined',
                        Location(self.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1, child),
                        "remove one of the two entries",
                    )
                )
            merged.discard(key)  # a key written here overrides a merged one (YAML merge keys)
            self.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            mapping[key] = self.build(value_node, child, depth + 1)
        return mapping

    def _merged(self, value_node: yaml.Node, path: FieldPath, depth: int) -> dict[Any, Any]:
        """The values a merge key (`<<: *defaults` or `<<: [*a, *b]`) brings into a mapping.

        Built value by value like the rest, so merges count against the same alias bounds.
        In a list, earlier mappings win over later ones (the YAML merge key rule).
        """
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if isinstance(value_node, yaml.SequenceNode):
            self._count(path, value_node)
        merged: dict[Any, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                raise self._refuse(
                    f"a merge key (<<) takes a mapping or a list of mappings, not a {source.id}",
                    path,
                    source,
                    "merge only mappings: `<<: *defaults`",
                )
            merged.update(self.build(source, path, depth + 1))
        return merged


def _open_regular(path: str) -> IO[str]:
    """Open `path` for reading if, once open, it is still a regular file.

    `_iter_paths` checked it before; the check is made again on the open descriptor in case the
    file was replaced meanwhile. O_NONBLOCK keeps the open of a FIFO swapped in from blocking.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{_kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return open(fd, encoding="utf-8", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _read_text(path: str, stdin: IO[str] | None) -> str:
    """The text of `path` (or stdin), refusing more than `MAX_FILE_CHARS` (ValueError)."""
    if path == "-":
        text = (stdin or sys.stdin).read(MAX_FILE_CHARS + 1)
    else:
        with _open_regular(path) as handle:
            text = handle.read(MAX_FILE_CHARS + 1)
    if len(text) > MAX_FILE_CHARS:
        raise ValueError(f"larger than {MAX_FILE_CHARS >> 20} MiB")
    return text


def _first_template_action(text: str) -> int:
    """The line (1-based) of the first Go-template action (`{{ ... }}`) outside a comment, or 0.

    Linear in the text, whatever it holds: each line is searched twice with str.find.
    """
    for number, line in enumerate(text.splitlines(), 1):
        start = line.find("{{")
        if start < 0 or line.lstrip().startswith("#"):
            continue
        if line.find("}}", start + 2) >= 0:
            return number
    return 0


def _skip_template(text: str, file: str, error_line: int, result: LoadResult, manifests: int, problems: int) -> bool:
    """A file that does not parse because it is a Helm/Go template is skipped (info HF003), not an
    error: only its rendered output is YAML. It counts as a template when a `{{ ... }}` action
    comes at or before the line the parser stopped at; an error before any action is the YAML's
    own, and stays an HF001."""
    action = _first_template_action(text)
    if not action or (error_line and error_line < action):
        return False
    del result.manifests[manifests:]
    del result.problems[problems:]
    result.problems.append(
        LoadProblem(
            "HF003",
            f"skipped {file}: a Helm/Go template ({{{{ ... }}}} on line {action}), not YAML until it is rendered",
            Location(file, action, 1),
            "render it and lint the output: helm template <chart> | hushflow lint -",
        )
    )
    return True


def load_text(text: str, file: str, result: LoadResult) -> None:
    """Parse every YAML document of `text` into `result` (problems included)."""
    loader = yaml.CSafeLoader(text)
    builder = _Builder(loader, file)
    document = 0
    manifests_before, problems_before = len(result.manifests), len(result.problems)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            builder.start_document()
            builder.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
            data = builder.build(node, ())
            result.problems.extend(builder.problems)
            _add_document(result, data, file, document, builder.positions)
            document += 1
    except _Refused as exc:
        result.problems.extend(builder.problems)
        result.problems.append(exc.problem)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        if _skip_template(text, file, line, result, manifests_before, problems_before):
            return
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        result.problems.append(
            LoadProblem(
                "HF001",
                f"invalid YAML: {problem}",
                Location(file, line, column),
                "fix the YAML syntax; the documents before this point were read",
            )
        )
    except yaml.YAMLError as exc:
        result.problems.append(LoadProblem("HF001", f"invalid YAML: {exc}", Location(file)))
    finally:
        result.nodes += builder.nodes
        loader.dispose()


def _add_document(
    result: LoadResult, data: Any, file: str, document: int, positions: dict[FieldPath, tuple[int, int]]
) -> None:
    if data is None:  # an empty document (`---` alone, or a file of comments)
        return
    if not isinstance(data, dict):
        line, column = positions.get((), (0, 0))
        result.problems.append(
            LoadProblem(
                "HF002",
                f"document {document + 1} is a {type(data).__name__}, not a Kubernetes object (a mapping)",
                Location(file, line, column),
                "each YAML document must be a mapping with apiVersion, kind and metadata",
            )
        )
        return
    if data.get("kind") == "List" or (
        isinstance(data.get("kind"), str) and data["kind"].endswith("List") and "items" in data
    ):
        items = data.get("items")
        if not isinstance(items, list):
            result.problems.append(
                LoadProblem(
                    "HF002",
                    "a List object needs an `items` sequence",
                    Location(file, *positions.get((), (0, 0)), ("items",)),
                )
            )
            return
        for index, item in enumerate(items):
            prefix: FieldPath = ("items", index)
            if not isinstance(item, dict):
                line, column = positions.get(prefix, (0, 0))
                result.problems.append(
                    LoadProblem(
                        "HF002",
                        f"items[{index}] is a {type(item).__name__}, not a Kubernetes object",
                        Location(file, line, column, prefix),
                    )
                )
                continue
            result.manifests.append(Manifest(item, file, document, positions, prefix))
        return
    result.manifests.append(Manifest(data, file, document, positions))


def load_manifests(paths: Sequence[str], stdin: IO[str] | None = None) -> LoadResult:
    """Read every manifest under `paths`. Problems are collected, never raised."""
    result = LoadResult()
    for path in _iter_paths(paths, result.problems):
        name = "<stdin>" if path == "-" else path
        result.files.append(name)
        try:
            text = _read_text(path, stdin)
        except UnicodeDecodeError as exc:
            result.problems.append(
                LoadProblem("HF004", f"not UTF-8 text ({exc.reason} at byte {exc.start})", Location(name))
            )
            continue
        except OSError as exc:
            result.problems.append(
                LoadProblem("HF004", f"cannot read file: {exc.strerror or exc}", Location(name))
            )
            continue
        except ValueError as exc:  # over MAX_FILE_CHARS
            result.problems.append(
                LoadProblem("HF004", f"cannot read file: {exc}", Location(name), "split it into smaller files")
            )
            continue
        load_text(text, name, result)
    return result
