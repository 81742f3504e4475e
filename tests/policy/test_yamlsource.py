"""Reading manifests: positions, multi-document files, List objects, stdin, bad input."""

from __future__ import annotations

import io

from hushflow.policy.yamlsource import load_manifests


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_positions_point_at_keys_and_items(tmp_path):
    path = write(tmp_path, "a.yaml", "kind: X\nspec:\n  egress:\n  - toFQDNs:\n    - matchName: a.com\n")
    result = load_manifests([path])
    manifest = result.manifests[0]
    assert manifest.locate(("spec", "egress", 0, "toFQDNs")).line == 4
    assert manifest.locate(("spec", "egress", 0, "toFQDNs")).column == 5
    assert manifest.locate(("spec", "egress", 0, "toFQDNs", 0, "matchName")).line == 5
    # A path that was never written points at its nearest written parent, keeping the path.
    missing = manifest.locate(("spec", "egress", 0, "toPorts"))
    assert (missing.line, missing.field) == (4, "spec.egress[0].toPorts")


def test_multi_document_and_list(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "---\nkind: A\n---\n# only a comment\n---\nkind: List\nitems:\n- kind: B\n  metadata: {name: b}\n- kind: C\n",
    )
    result = load_manifests([path])
    assert [m.kind for m in result.manifests] == ["A", "B", "C"]
    b = result.manifests[1]
    assert b.prefix == ("items", 0)
    assert b.locate(("metadata", "name")).line == 9
    assert b.locate(("metadata", "name")).field == "metadata.name"


def test_directories_are_searched_recursively_in_order(tmp_path):
    write(tmp_path, "d/b.yaml", "kind: B\n")
    write(tmp_path, "d/sub/c.yml", "kind: C\n")
    write(tmp_path, "d/a.yaml", "kind: A\n")
    write(tmp_path, "d/notes.txt", "kind: Ignored\n")
    result = load_manifests([str(tmp_path / "d")])
    assert [m.kind for m in result.manifests] == ["A", "B", "C"]


def test_stdin():
    result = load_manifests(["-"], stdin=io.StringIO("kind: A\n"))
    assert result.manifests[0].file == "<stdin>"
    assert result.manifests[0].kind == "A"


def test_invalid_yaml_keeps_earlier_documents(tmp_path):
    path = write(tmp_path, "a.yaml", "kind: A\n---\nkind: [unclosed\n")
    result = load_manifests([path])
    assert [m.kind for m in result.manifests] == ["A"]
    (problem,) = result.problems
    assert problem.code == "HF001"
    assert problem.location.line == 4


def test_non_mapping_document(tmp_path):
    path = write(tmp_path, "a.yaml", "- a\n- b\n")
    (problem,) = load_manifests([path]).problems
    assert (problem.code, problem.location.line) == ("HF002", 1)


def test_duplicate_keys_are_reported(tmp_path):
    path = write(tmp_path, "a.yaml", "kind: A\nkind: B\n")
    (problem,) = load_manifests([path]).problems
    assert problem.code == "HF001"
    assert problem.location.line == 2


def test_missing_and_unreadable_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"kind: \xff\xfe\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = load_manifests([str(tmp_path / "nope.yaml"), str(bad), str(empty)])
    messages = [(p.code, p.message.split(" (")[0].split(":")[0]) for p in result.problems]
    assert messages == [
        ("HF004", "no such file or directory"),
        ("HF004", "not UTF-8 text"),
        ("HF004", f"no *.yaml or *.yml files in directory {empty}"),
    ]


def test_yaml_11_scalars_like_kubernetes(tmp_path):
    path = write(tmp_path, "a.yaml", "a: yes\nb: '443'\nc: 443\nd: 2026-01-01\ne: null\n")
    data = load_manifests([path]).manifests[0].data
    assert data == {"a": True, "b": "443", "c": 443, "d": "2026-01-01", "e": None}
