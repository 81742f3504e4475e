"""Hostile policy YAML: alias bombs, deep nesting, huge integers, merge keys, oversized files.

Each ends in a diagnostic with file:line (HF001, or HF004 for what cannot be read), never an
exception, and the work loading does is bounded by the document: `LoadResult.nodes` counts the
values built, aliases expanded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.cli import main
from hushflow.policy import yamlsource
from hushflow.policy.yamlsource import LoadResult, load_manifests, load_text

HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: x\n"


def billion_laughs(levels: int = 9, fan_out: int = 9) -> str:
    """The classic: 9 lines that expand to 9**9 (387 million) strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fan_out) + "]")
    return HEAD + "\n".join(lines) + "\n"


def merge_bomb(levels: int = 9) -> str:
    """The same through merge keys: each level merges nine aliases of the level below."""
    lines = ["m0: &m0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8, k8: 9}"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{aliases}], own{level}: [*m{level - 1}, *m{level - 1}]}}")
    return HEAD + "\n".join(lines) + "\n"


def load(text: str, name: str = "p.yaml") -> LoadResult:
    result = LoadResult()
    load_text(text, name, result)
    return result


def lint(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["lint", "--no-color", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def only_problem(result: LoadResult) -> yamlsource.LoadProblem:
    assert result.manifests == []
    (problem,) = result.problems
    return problem


@pytest.mark.parametrize("text", [billion_laughs(), merge_bomb()], ids=["aliases", "merge-keys"])
def test_alias_bomb_is_refused_after_a_bounded_number_of_values(text: str) -> None:
    result = load(text)
    problem = only_problem(result)
    assert problem.code == "HF001"
    assert problem.message.startswith("document contains excessive aliasing:")
    assert problem.location.file == "p.yaml" and problem.location.line > 4
    # Kubernetes' rule stops the expansion early: a few thousand values, not 387 million.
    assert result.nodes < 10_000, result.nodes


def test_alias_bomb_on_the_command_line_is_one_hf001(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    code, output = lint(str(path))
    assert code == 1
    assert f"{path}:" in output and "error[HF001]" in output and "excessive aliasing" in output
    assert "1 error(s)" in output


def test_aliases_within_kubernetes_bounds_still_load() -> None:
    # A shared port list, reused by 200 rules: 99% of the values may come from aliases.
    ports = "ports: &ports [{port: '443', protocol: TCP}, {port: '80', protocol: TCP}]\n"
    rules = "".join(f"r{i}: {{toPorts: [{{ports: *ports}}]}}\n" for i in range(200))
    result = load(HEAD + ports + rules)
    assert result.problems == []
    data = result.manifests[0].data
    assert data["r199"] == {
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}, {"port": "80", "protocol": "TCP"}]}]
    }
    assert data["r0"]["toPorts"][0]["ports"] is not data["r1"]["toPorts"][0]["ports"]  # expanded, not shared


@pytest.mark.parametrize(
    "text",
    [HEAD + "spec: &a\n  x: *a\n", HEAD + "spec: &a [1, *a]\n", HEAD + "spec: &a {<<: *a}\nother: &b {x: {<<: *b}}\n"],
    ids=["mapping", "sequence", "merge"],
)
def test_an_alias_inside_itself_is_refused(text: str) -> None:
    problem = only_problem(load(text))
    assert problem.code == "HF001"
    assert "recursive" in problem.message
    assert problem.location.line >= 5


def test_ten_thousand_open_brackets_are_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "spec: " + "[" * 10_000 + "]" * 10_000 + "\n")
    code, output = lint(str(path))
    assert code == 1
    assert f"{path}:5:" in output and "error[HF001]" in output and "nesting depth" in output


def test_nesting_libyaml_accepts_is_bounded_too() -> None:
    # 990 written levels: libyaml reads them (it stops at 1,000); building them recursed until
    # Python's stack limit. Refused at MAX_DEPTH, with where.
    result = load(HEAD + "spec: " + "[" * 990 + "]" * 990 + "\n")
    problem = only_problem(result)
    assert problem.code == "HF001"
    assert problem.message == f"nested deeper than {yamlsource.MAX_DEPTH} levels"
    assert (problem.location.line, problem.location.path[:2]) == (5, ("spec", 0))
    assert result.nodes <= yamlsource.MAX_DEPTH + 20  # the levels, and the keys of HEAD


def test_nesting_through_aliases_is_bounded() -> None:
    # Each anchor is 90 levels deep and holds the one before: written depth stays under libyaml's
    # limit, the built depth grows without one.
    lines = ["d0: &d0 " + "[" * 90 + "x" + "]" * 90]
    lines += [f"d{i}: &d{i} " + "[" * 90 + f"*d{i - 1}" + "]" * 90 for i in range(1, 30)]
    problem = only_problem(load(HEAD + "\n".join(lines) + "\n"))
    assert problem.code == "HF001"
    assert problem.message.startswith("nested deeper than")


def test_nesting_at_the_limit_is_read_and_linted(tmp_path: Path) -> None:
    # Just inside the bound, every check after loading (schema, model, lint) copes with the depth.
    def deep(at: int) -> str:  # nested lists ending exactly at MAX_DEPTH below a field `at` deep
        levels = yamlsource.MAX_DEPTH - at
        return "[" * levels + "]" * levels

    path = tmp_path / "p.yaml"
    path.write_text(
        HEAD + f"  labels: {deep(2)}\nspec:\n  endpointSelector: {{matchLabels: {deep(3)}}}\n"
        f"  egress:\n  - toPorts: {deep(4)}\n    toFQDNs: [{{matchName: {deep(6)}}}]\n  description: {deep(2)}\n"
    )
    code, output = lint(str(path))
    assert code == 1
    assert "error[HF010]" in output and "HF001" not in output


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1" + "0" * 100_000, "10000000000000000000... (100,001 characters)"),
        ("0x" + "f" * 5_000, "0xffffffffffffffffff... (5,002 characters)"),
        ("18446744073709551616", "18446744073709551616"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("1" + ":59" * 40, "1:59:59:59:59:59:59:... (121 characters)"),
    ],
    ids=["decimal-over-python-limit", "hex", "2**64", "below-int64", "sexagesimal"],
)
def test_huge_integers_are_a_diagnostic(value: str, shown: str) -> None:
    result = load(HEAD + "spec:\n  egress:\n  - toPorts:\n    - ports:\n      - port: " + value + "\n")
    problem = only_problem(result)
    assert problem.code == "HF001"
    assert problem.message == f"integer {shown} does not fit in 64 bits"
    assert (problem.location.line, problem.location.field) == (9, "spec.egress[0].toPorts[0].ports[0].port")


def test_huge_integer_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "spec:\n  port: 1" + "0" * 100_000 + "\n")
    code, output = lint(str(path))
    assert code == 1
    assert f"{path}:6:3: error[HF001] spec.port: integer 1000" in output


def test_64_bit_integers_are_read() -> None:
    text = "a: 18446744073709551615\nb: -9223372036854775808\nc: 0x7fff_ffff\nd: 1:30\n"
    data = load(text).manifests[0].data
    assert data == {"a": 2**64 - 1, "b": -(2**63), "c": 0x7FFFFFFF, "d": 90}


def test_merge_keys_follow_yaml_precedence_without_duplicate_errors() -> None:
    text = (
        "base: &base {a: 1, b: 2}\nmore: &more {b: 3, c: 4}\n"
        "one: {<<: *base, b: 20}\n"  # a key written here wins over the merged one
        "two: {<<: [*base, *more]}\n"  # earlier mappings in the list win
    )
    result = load(text)
    assert result.problems == []
    data = result.manifests[0].data
    assert data["one"] == {"a": 1, "b": 20}
    assert data["two"] == {"a": 1, "b": 2, "c": 4}
    assert result.manifests[0].locate(("one", "b")).line == 3


def test_merge_of_something_else_is_a_diagnostic() -> None:
    problem = only_problem(load("x: &x [1]\ny: {<<: *x}\n"))
    assert (problem.code, problem.location.line) == ("HF001", 2)
    assert "merge key" in problem.message


def test_values_per_file_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_NODES_PER_FILE", 1_000)
    text = "---\n".join(HEAD + "spec: [" + ", ".join(["1"] * 300) + "]\n" for _ in range(4))
    result = load(text)
    assert len(result.manifests) == 3  # the documents before the bound are read
    (problem,) = result.problems
    assert problem.code == "HF001"
    assert problem.message == "more than 1,000 YAML values in one file"
    assert problem.location.line > 3 * 5
    assert result.nodes == 1_001


def test_oversized_file_and_stdin_are_refused_unread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import io

    monkeypatch.setattr(yamlsource, "MAX_FILE_CHARS", 1 << 20)
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * (1 << 20) + "\n")
    result = load_manifests([str(path), "-"], stdin=io.StringIO("b: " + "y" * (1 << 20)))
    assert [(p.code, p.location.file, p.message) for p in result.problems] == [
        ("HF004", str(path), "cannot read file: larger than 1 MiB"),
        ("HF004", "<stdin>", "cannot read file: larger than 1 MiB"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!int 0x", "'0x' is not a valid !!int"),
        ("!!int 08", "'08' is not a valid !!int"),
        ('!!int ""', "'' is not a valid !!int"),
        ("!!float abc", "'abc' is not a valid !!float"),
        ("!!bool maybe", "'maybe' is not a valid !!bool"),
    ],
)
def test_explicitly_tagged_scalars_that_do_not_convert_are_a_diagnostic(text: str, message: str) -> None:
    problem = only_problem(load(HEAD + "spec:\n  port: " + text + "\n"))
    assert (problem.code, problem.message, problem.location.line) == ("HF001", message, 6)
