"""Read Kubernetes manifests from YAML, remembering where every field was written.

libyaml (through PyYAML's C composer) builds the node tree; we turn it into plain Python
values ourselves so that each mapping key and sequence item keeps its line and column.
Scalars follow YAML 1.1 as Kubernetes' own YAML reader does (`yes` is a boolean), except
that timestamps stay strings, as they do once Kubernetes converts YAML to JSON.

Files, directories (recursively, `*.yaml` / `*.yml`) and `-` (stdin) are accepted. `kind: List`
objects (what `kubectl get -o yaml` prints) are unpacked into their items.
"""

from __future__ import annotations

import os
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


def _iter_paths(paths: Sequence[str], problems: list[LoadProblem]) -> Iterator[str]:
    for path in paths:
        if path == "-":
            yield path
        elif os.path.isdir(path):
            found = False
            for root, dirs, files in os.walk(path):
                dirs.sort()
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in sorted(files):
                    if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                        found = True
                        yield os.path.join(root, name)
            if not found:
                problems.append(
                    LoadProblem("HF004", f"no *.yaml or *.yml files in directory {path}", Location(path))
                )
        elif os.path.exists(path):
            yield path
        else:
            problems.append(LoadProblem("HF004", f"no such file or directory: {path}", Location(path)))


class _Builder:
    """Turns a composed YAML node tree into plain values plus a position table."""

    def __init__(self, loader: yaml.CSafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions: dict[FieldPath, tuple[int, int]] = {}
        self.problems: list[LoadProblem] = []

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _PLAIN_TAGS:
                return self.loader.construct_object(node, deep=True)
            return node.value
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                child = (*path, index)
                self.positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.build(item, child))
            return items
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # YAML merge keys (`<<: *anchor`)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    key = str(key)
                child = (*path, key) if isinstance(key, str) else (*path, str(key))
                if key in mapping:
                    # Kubernetes' strict YAML reader refuses duplicate keys.
                    self.problems.append(
                        LoadProblem(
                            "HF001",
                            f'mapping key "{key}" already defined',
                            Location(
                                self.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1, child
                            ),
                            "remove one of the two entries",
                        )
                    )
                self.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                mapping[key] = self.build(value_node, child)
            return mapping
        return None  # pragma: no cover - libyaml only produces the three node kinds


def _read_text(path: str, stdin: IO[str] | None) -> str:
    if path == "-":
        return (stdin or sys.stdin).read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def load_text(text: str, file: str, result: LoadResult) -> None:
    """Parse every YAML document of `text` into `result` (problems included)."""
    loader = yaml.CSafeLoader(text)
    document = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            builder = _Builder(loader, file)
            builder.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
            data = builder.build(node, ())
            result.problems.extend(builder.problems)
            _add_document(result, data, file, document, builder.positions)
            document += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
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
        load_text(text, name, result)
    return result
