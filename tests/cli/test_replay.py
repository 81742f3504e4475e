"""`hushflow replay` on the telemetry-block example: outputs, git revisions, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.app.replay import _cell
from hushflow.cli.replay import replay

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"
FLOWS = str(EXAMPLE / "flows.jsonl")
BLOCK = "app-external-block-policy.yaml"
TAG = "  log:\n    value: app-explicit-traffic-blocked\n"


def proposal(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the example's policies with the block policy's text edited."""
    out = tmp_path / name
    shutil.copytree(EXAMPLE / "policies", out)
    text = (out / BLOCK).read_text()
    edited = edit(text)
    assert edited != text
    if edited is None:
        (out / BLOCK).unlink()
    else:
        (out / BLOCK).write_text(edited)
    return out


def untagged(text: str) -> str:
    return text.replace(TAG, "")


def deny_to_allow(text: str) -> str:
    return text.replace("egressDeny:", "egress:")


def deny_stripe_too(text: str) -> str:
    return text.replace('- matchPattern: "*.telemetry.example.com"',
                        '- matchPattern: "*.telemetry.example.com"\n    - matchName: api.stripe.com')


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(replay, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def as_json(*args: str) -> dict:
    code, out, err = run(*args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(("edit", "counts"), [
    (untagged, {"tag-lost": 9, "unchanged": 8}),
    # No allow for them: removing the deny leaves them to default-deny, and untagged.
    (lambda text: None, {"tag-lost": 9, "unchanged": 8}),
    (deny_to_allow, {"newly-allowed": 9, "unchanged": 8}),
    (deny_stripe_too, {"newly-dropped": 2, "unchanged": 15}),
], ids=["log-tag-removed", "deny-removed", "deny-made-an-allow", "deny-added"])
def test_the_example_changes(tmp_path, edit, counts):
    proposed = proposal(tmp_path, "proposed", edit)
    doc = as_json("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS)
    expected = {"newly-dropped": 0, "newly-allowed": 0, "tag-lost": 0, "tag-changed": 0, "unchanged": 0, **counts}
    assert doc["counts"] == expected
    assert doc["flows"] == 17 and doc["changed"] == 17 - counts["unchanged"]


def test_json_is_stable_and_groups_most_severe_first(tmp_path):
    proposed = proposal(tmp_path, "proposed", untagged)
    code, out, _ = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS,
                       "-o", "json", "--per-flow")
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == sorted(doc)
    first = doc["groups"][0]
    assert first == {
        "change": "tag-lost",
        "current": {"decision": "denied", "outcome": "denied",
                    "rules": ["CiliumNetworkPolicy/my-namespace/app-external-block-policy"],
                    "tags": ["app-explicit-traffic-blocked"], "tier": "NetworkPolicy"},
        "direction": "EGRESS",
        "first": "2026-11-27T09:00:00.408Z",
        "flows": 6,
        "last": "2026-11-27T09:00:09.508Z",
        "peer": "ingest.telemetry.example.com",
        "port": "443/TCP",
        "proposed": {"decision": "denied", "outcome": "denied",
                     "rules": ["CiliumNetworkPolicy/my-namespace/app-external-block-policy"],
                     "tags": [], "tier": "NetworkPolicy"},
        "workload": "my-namespace/my-app",
    }
    assert [g["change"] for g in doc["groups"]][:2] == ["tag-lost", "tag-lost"]
    assert {g["change"] for g in doc["groups"][2:]} == {"unchanged"}
    assert len(doc["per_flow"]) == 9
    assert doc["per_flow"][0]["origin"] == f"{FLOWS}:12"
    # The same input gives the same bytes.
    assert run("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS,
               "-o", "json", "--per-flow")[1] == out


def test_text_lists_the_changed_groups_and_per_flow_lines(tmp_path):
    proposed = proposal(tmp_path, "proposed", deny_stripe_too)
    code, out, _ = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS,
                       "--per-flow")
    assert code == 0
    assert "17 policy verdict(s) replayed: 2 newly-dropped, 15 unchanged" in out
    (row,) = [line for line in out.splitlines() if line.startswith("newly-dropped ")]
    assert row.split()[:6] == ["newly-dropped", "2", "my-namespace/my-app", "egress", "api.stripe.com", "443/TCP"]
    assert "allowed by CiliumNetworkPolicy/my-namespace/my-app-saas-egress [app-saas-egress]" in row
    per_flow = [line for line in out.splitlines() if line.startswith("2026-")]
    assert len(per_flow) == 2 and per_flow[0].endswith(f"({FLOWS}:9)")


def test_markdown_for_a_pull_request(tmp_path):
    proposed = proposal(tmp_path, "proposed", deny_to_allow)
    code, out, _ = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS,
                       "-o", "markdown", "--max-groups", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "### hushflow replay"
    assert "| newly-allowed | 9 |" in lines and "| tag-lost | 0 |" in lines
    rows = [line for line in lines if line.startswith("| newly-allowed | 6 |")]
    assert len(rows) == 1 and "→ ingest.telemetry.example.com" in rows[0]
    assert lines[-1].startswith("… and 1 more group(s)")


def test_markdown_says_no_change():
    code, out, _ = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(EXAMPLE / "policies"),
                       "--input-file", FLOWS, "-o", "markdown")
    assert code == 0
    assert "**No change**: the 17 recorded policy verdict(s) are decided the same way." in out
    assert "| change |" not in out


def test_markdown_cells_cannot_break_the_table():
    assert _cell("a|b`c<img>\x1b") == "a\\|b'c&lt;img&gt;\\x1b"


@pytest.mark.parametrize(("fail_on", "code"), [
    ("tag-lost", 1), ("newly-dropped,newly-allowed", 0), ("newly-dropped, tag-lost", 1), (None, 0),
])
def test_fail_on_sets_the_exit_code(tmp_path, fail_on, code):
    proposed = proposal(tmp_path, "proposed", untagged)
    args = ["--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed), "--input-file", FLOWS]
    got, _, err = run(*args, *(["--fail-on", fail_on] if fail_on else []))
    assert got == code
    assert ("--fail-on: 9 tag-lost" in err) == (code == 1)


def test_a_bad_fail_on_kind_is_a_usage_error():
    code, _, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(EXAMPLE / "policies"),
                       "--input-file", FLOWS, "--fail-on", "newly-droped")
    assert code == 2 and "unknown change kind 'newly-droped'" in err


def test_bad_flow_lines_are_reported_with_file_and_line_and_exit_2(tmp_path):
    flows = tmp_path / "flows.jsonl"
    lines = (EXAMPLE / "flows.jsonl").read_text().splitlines()
    verdict = lines[8].replace('"destination_port":443', '"destination_port":"443x"')  # a policy verdict
    assert verdict != lines[8]
    flows.write_text("\n".join([*lines[:3], "{not json", verdict, *lines[3:]]) + "\n")
    proposed = proposal(tmp_path, "proposed", untagged)
    code, out, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", str(proposed),
                         "--input-file", str(flows), "--fail-on", "tag-lost", "-o", "json")
    assert code == 2
    assert f"{flows}:4:" in err and f"{flows}:5:" in err
    assert json.loads(out)["counts"]["tag-lost"] == 9  # the rest is still replayed
    assert json.loads(out)["bad_lines"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--policies", str(EXAMPLE / "policies"), "--input-file", FLOWS], "the proposed policies are missing"),
    (["--policies", str(EXAMPLE / "policies"), "--proposed", str(EXAMPLE / "policies")], "no flows"),
    (["--policies", str(EXAMPLE / "policies"), "--proposed", str(EXAMPLE / "README.md"), "--input-file", FLOWS],
     "the proposed policies"),
])
def test_usage_problems_exit_2_in_one_line(args, message):
    code, out, err = run(*args)
    assert code == 2 and message in err and "Traceback" not in err and not out


# -- git revisions -----------------------------------------------------------------------------

def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository whose second commit removes the block policy's log tag."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLE / "policies", root / "policies")
    git(root, "add", "policies")
    git(root, "commit", "-q", "-m", "policies")
    (root / "policies" / BLOCK).write_text(untagged((root / "policies" / BLOCK).read_text()))
    git(root, "commit", "-q", "-am", "drop the tag")
    return root


@pytest.mark.parametrize("args", [
    ["--policies", "git:HEAD~1:policies", "--proposed", "git:HEAD:policies/"],
    ["--proposed", "git:HEAD~1..main:policies"],
    ["--policies", "git:HEAD~1..HEAD:policies"],
    ["--policies", "git:HEAD~1:", "--proposed", str(EXAMPLE / "policies")],  # the whole tree: no change
], ids=["two-revisions", "range-in-proposed", "range-in-policies", "whole-tree"])
def test_git_revisions(repo, args):
    doc = as_json(*args, "--repo", str(repo), "--input-file", FLOWS)
    whole_tree = args[1] == "git:HEAD~1:"
    assert doc["counts"]["tag-lost"] == (0 if whole_tree else 9)
    if not whole_tree:
        assert doc["current"] == ["git:HEAD~1:policies"]
        assert doc["proposed"][0] in ("git:HEAD:policies/", "git:main:policies", "git:HEAD:policies")


@pytest.mark.parametrize(("spec", "message"), [
    ("git:nope:policies", "unknown revision 'nope'"),
    ("git:HEAD:missing", "no such path 'missing' at HEAD"),
    ("git:HEAD", "expected git:REV:PATH"),
    ("git:HEAD..:policies", "a range is A..B"),
    ("git:--output=/tmp/x:policies", "cannot start with '-'"),
])
def test_git_problems_exit_2_in_one_line(repo, spec, message):
    code, _, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", spec, "--repo", str(repo),
                       "--input-file", FLOWS)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_not_a_git_repository(tmp_path):
    code, _, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", "git:HEAD:policies",
                       "--repo", str(tmp_path), "--input-file", FLOWS)
    assert code == 2 and "not a git repository" in err and len(err.strip().splitlines()) == 1


def test_a_range_with_the_other_option_too_is_refused(repo):
    code, _, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", "git:HEAD~1..HEAD:policies",
                       "--repo", str(repo), "--input-file", FLOWS)
    assert code == 2 and "leave out --policies" in err


# -- named ports -------------------------------------------------------------------------------

def test_named_ports_resolve_from_pods_else_the_change_is_told_by_unknown(tmp_path):
    from tests.engine.test_named_ports import API, EG_HTTP, PODS_YAML, egress, to_app

    (tmp_path / "now").mkdir()
    (tmp_path / "next").mkdir()
    (tmp_path / "now" / "p.yaml").write_text(EG_HTTP)  # web -> api on http-alt (8080)
    deny = to_app("deny-http", "api", "{port: http-alt}", section="egressDeny")
    (tmp_path / "next" / "p.yaml").write_text(EG_HTTP + "\n---\n" + deny)
    (tmp_path / "pods.yaml").write_text(PODS_YAML)
    (tmp_path / "flows.jsonl").write_text(json.dumps(egress(API, 8080)) + "\n")
    args = ["--policies", str(tmp_path / "now"), "--proposed", str(tmp_path / "next"),
            "--input-file", str(tmp_path / "flows.jsonl")]
    with_pods = as_json(*args, "--pods", str(tmp_path / "pods.yaml"))
    assert with_pods["counts"]["newly-dropped"] == 1
    (group,) = with_pods["groups"]
    assert (group["current"]["outcome"], group["proposed"]["outcome"]) == ("allowed", "denied")
    without = as_json(*args)  # both unknown: the named port cannot be resolved
    (group,) = without["groups"]
    assert (group["current"]["outcome"], group["proposed"]["outcome"], group["change"]) == (
        "unknown", "unknown", "unchanged")
    code, _, err = run(*args, "--pods", str(tmp_path / "missing.yaml"))
    assert code == 2 and "--pods:" in err and "Traceback" not in err


def test_a_link_out_of_the_tree_is_refused_not_followed(repo, tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("not: policies\n")
    (repo / "policies" / "link.yaml").symlink_to(secret)
    git(repo, "add", "policies/link.yaml")
    git(repo, "commit", "-q", "-m", "a link out")
    code, _, err = run("--policies", str(EXAMPLE / "policies"), "--proposed", "git:HEAD:policies",
                       "--repo", str(repo), "--input-file", FLOWS)
    assert code == 2 and "cannot write the tree out" in err and len(err.strip().splitlines()) == 1
