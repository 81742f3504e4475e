"""Object names follow Kubernetes' rules, and nothing hushflow writes leaves --out.

A policy repository is input too: a name like `../../etc/cron.d/x` must be refused by lint and
compile, and a symlink or FIFO planted in the output directory is never written, read or deleted
through."""

from __future__ import annotations

import os
import threading

import pytest
from click.testing import CliRunner

from hushflow.app.compile import CompileError, CompileJob, run_compile
from hushflow.cli import main
from hushflow.enforce.writer import HEADER, UnsafePathError, object_path, safe_path, write_directory
from hushflow.policy.loading import load_policies
from hushflow.policy.names import label_problem, subdomain_problem
from tests.enforce.test_compile import DENY, DNS_RULE, write


@pytest.mark.parametrize(("name", "ok"), [
    ("block-telemetry", True), ("a.b-c.d", True), ("x" * 253, True), ("0abc", True),
    ("x" * 254, False), ("Block", False), ("a_b", False), ("-a", False), ("a-", False), ("a..b", False),
    ("../x", False), ("a/b", False), ("", False), (".a", False), ("a\x1b[2J", False), (7, False),
])
def test_object_names_are_dns_1123_subdomains(name, ok):
    assert (subdomain_problem(name) is None) is ok


@pytest.mark.parametrize(("namespace", "ok"), [
    ("kube-system", True), ("x" * 63, True), ("x" * 64, False), ("my.namespace", False), ("My", False),
    ("..", False),
])
def test_namespaces_are_dns_1123_labels(namespace, ok):
    assert (label_problem(namespace) is None) is ok


def test_lint_reports_a_bad_name_with_file_and_line_and_compile_refuses_it(tmp_path):
    bad = DENY.replace("name: block", "name: ../../etc/cron.d/x", 1)
    assert "../../etc" in bad
    policies = write(tmp_path, DNS_RULE, bad)
    loaded = load_policies([str(policies)])
    (diagnostic,) = [d for d in loaded.diagnostics if d.code == "HF015"]
    assert "metadata.name '../../etc/cron.d/x' is not a DNS-1123 subdomain" in diagnostic.message
    assert diagnostic.location.file.endswith("p.yaml") and diagnostic.location.line > 1
    result = CliRunner().invoke(main, ["lint", str(policies)])
    assert result.exit_code != 0 and "HF015" in result.output
    with pytest.raises(CompileError):
        run_compile(CompileJob([str(policies)], out_dir=str(tmp_path / "out"), resolve=False))
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("obj", [
    {"kind": "CiliumNetworkPolicy", "metadata": {"name": "../../x", "namespace": "ns"}},
    {"kind": "CiliumNetworkPolicy", "metadata": {"name": "x", "namespace": "../.."}},
    {"kind": "CiliumCIDRGroup", "metadata": {"name": "/etc/passwd"}},
    {"kind": "Secret", "metadata": {"name": "x"}},
])
def test_object_path_refuses_names_that_are_no_kubernetes_names(obj):
    with pytest.raises(UnsafePathError):
        object_path(obj)


def test_safe_path_refuses_escapes_and_symlinked_directories(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    assert safe_path(str(out), "ciliumcidrgroups/a.yaml") == str(out / "ciliumcidrgroups" / "a.yaml")
    for relative in ("../x.yaml", "/etc/x.yaml", "a/../../x.yaml", "a//b.yaml"):
        with pytest.raises(UnsafePathError):
            safe_path(str(out), relative)
    (out / "ciliumcidrgroups").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        safe_path(str(out), "ciliumcidrgroups/a.yaml")


def test_compile_does_not_write_through_a_symlinked_directory_in_out(tmp_path):
    policies = write(tmp_path, DNS_RULE, DENY)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "ciliumnetworkpolicies").symlink_to(elsewhere)
    result = CliRunner().invoke(main, ["compile", str(policies), "--out", str(out), "--no-resolve"])
    assert result.exit_code == 2, result.output
    assert "error: --out:" in result.output and "is a symlink" in result.output
    assert list(elsewhere.iterdir()) == []


def test_fifos_and_symlinks_to_devices_in_out_are_never_opened(tmp_path):
    out = tmp_path / "out"
    (out / "ciliumcidrgroups").mkdir(parents=True)
    os.mkfifo(out / "ciliumcidrgroups" / "fifo.yaml")  # opening it for reading would block forever
    (out / "ciliumcidrgroups" / "zero.yaml").symlink_to("/dev/zero")  # reading it would never end
    (out / "stale.yaml").write_text(HEADER + "old: object\n")
    finished: dict[str, object] = {}

    def scan() -> None:
        finished["result"] = write_directory(str(out), [])

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "write_directory blocked on a FIFO or /dev/zero"
    assert finished["result"].deleted == ["stale.yaml"]  # its own old file still pruned
    assert (out / "ciliumcidrgroups" / "fifo.yaml").exists() and (out / "ciliumcidrgroups" / "zero.yaml").is_symlink()
