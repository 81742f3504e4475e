"""`hushflow run --serve ... --serve-tls-*`: option mistakes and files that do not load are one
error line and exit 2 before anything is served; a TLS serve says so; plaintext beyond loopback is
warned about; a bad rotated file is counted in the daemon's metrics."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.example import example_dir
from hushflow.app.observer_api import start_observer_api
from hushflow.app.serve_tls import ServeTLSOptions
from hushflow.cli.run import run
from tests.app.test_serve_tls import CA, SERVER_NAME

EXAMPLE = example_dir()
assert EXAMPLE is not None
POLICIES = str(EXAMPLE / "policies")
FLOWS = str(EXAMPLE / "flows.jsonl")


def hushflow_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(run, ["--policies", POLICIES, "--input-file", FLOWS, "--no-resolve", "--clock",
                                      "flows", "--metrics-address", "127.0.0.1:0", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("hushflow test CA")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: CA) -> Path:
    monkeypatch.chdir(tmp_path)
    server = ca.server()
    (tmp_path / "tls.crt").write_bytes(server.cert)
    (tmp_path / "tls.key").write_bytes(server.key)
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    (tmp_path / "other.key").write_bytes(ca.client().key)
    (tmp_path / "not-pem.crt").write_text("x\n")
    return tmp_path


TLS = ["--serve-tls-cert-file", "tls.crt", "--serve-tls-key-file", "tls.key"]


@pytest.mark.parametrize(("args", "message"), [
    (["--serve", "127.0.0.1:0", "--serve-tls-cert-file", "tls.crt"],
     "--serve-tls-cert-file tls.crt: needs --serve-tls-key-file"),
    (["--serve", "127.0.0.1:0", "--serve-tls-key-file", "tls.key"],
     "--serve-tls-key-file tls.key: needs --serve-tls-cert-file"),
    (["--serve", "127.0.0.1:0", "--serve-tls-client-ca-files", "ca.crt"],
     "--serve-tls-client-ca-files ca.crt: mutual TLS needs the server's own certificate too: "
     "--serve-tls-cert-file and --serve-tls-key-file"),
    (TLS, "--serve-tls-cert-file tls.crt: needs --serve HOST:PORT"),
    (["--serve", "unix:///tmp/hushflow-test.sock", *TLS],
     "--serve-tls-cert-file tls.crt: --serve unix:///tmp/hushflow-test.sock is a unix socket, served without TLS"),
    (["--serve", "127.0.0.1:0", "--serve-tls-cert-file", "missing.crt", "--serve-tls-key-file", "tls.key"],
     "--serve-tls-cert-file missing.crt: cannot read it: No such file or directory"),
    (["--serve", "127.0.0.1:0", "--serve-tls-cert-file", "not-pem.crt", "--serve-tls-key-file", "tls.key"],
     "--serve-tls-cert-file not-pem.crt: not PEM encoded data"),
    (["--serve", "127.0.0.1:0", "--serve-tls-cert-file", "tls.crt", "--serve-tls-key-file", "other.key"],
     "--serve-tls-key-file other.key: not the key of the certificate in tls.crt"),
    (["--serve", "127.0.0.1:0", *TLS, "--serve-tls-client-ca-files", "ca.crt,missing-ca.crt"],
     "--serve-tls-client-ca-files missing-ca.crt: cannot read it: No such file or directory"),
    (["--serve", "127.0.0.1:0", *TLS, "--serve-tls-client-ca-files", "ca.crt", "--serve-tls-client-ca-files",
      "tls.key"], "--serve-tls-client-ca-files tls.key: no PEM certificate that parses in it"),
    # an unset variable in a manifest must not turn TLS or mTLS off
    (["--serve", "127.0.0.1:0", "--serve-tls-cert-file", "", "--serve-tls-key-file", ""],
     "--serve-tls-cert-file '': an empty file name"),
    (["--serve", "127.0.0.1:0", *TLS, "--serve-tls-client-ca-files", ""],
     "--serve-tls-client-ca-files '': no file named"),
], ids=["cert-without-key", "key-without-cert", "client-ca-without-cert", "without-serve", "unix-socket",
        "missing-file", "not-pem", "key-of-another-cert", "comma-separated-ca-missing", "repeated-ca-not-a-cert",
        "empty-cert", "empty-client-ca"])
def test_a_tls_mistake_is_one_error_line_and_exit_2(here: Path, args: list[str], message: str) -> None:
    code, output = hushflow_run(*args)
    assert code == 2, output
    assert output.startswith("error: " + message), output
    assert len(output.splitlines()) == 1, output
    assert "Traceback" not in output and "serving" not in output


@pytest.mark.parametrize(("extra", "said"), [
    ([], "serving the Observer API on 127.0.0.1:0 with TLS\n"),
    (["--serve-tls-client-ca-files", "ca.crt"], "serving the Observer API on 127.0.0.1:0 with mutual TLS\n"),
], ids=["tls", "mutual-tls"])
def test_a_tls_serve_starts_and_says_so(here: Path, extra: list[str], said: str) -> None:
    code, output = hushflow_run("--serve", "127.0.0.1:0", *TLS, *extra)
    assert code == 0, output
    assert said in output
    assert "warning" not in output and "error" not in output


def test_plaintext_beyond_loopback_is_warned_about(here: Path) -> None:
    code, output = hushflow_run("--serve", "0.0.0.0:0")
    assert code == 0, output
    assert "warning: --serve 0.0.0.0:0 without TLS: whoever reaches it reads every flow; give " \
           "--serve-tls-cert-file and --serve-tls-key-file" in output
    code, output = hushflow_run("--serve", "127.0.0.1:0")
    assert code == 0 and "warning" not in output, output


def test_a_bad_rotated_certificate_is_counted_in_the_daemon_s_metrics(here: Path, ca: CA) -> None:
    options = RunOptions(policies=(POLICIES,), input_files=(FLOWS,), resolve=False, clock="flows",
                         serve="127.0.0.1:0")
    daemon = Daemon(options)
    served = start_observer_api(daemon, options, ServeTLSOptions("tls.crt", "tls.key"), None, say=lambda _line: None)
    assert served is not None
    observer = served.observer
    try:
        new = here / "tls.crt.new"
        new.write_text("not a certificate\n")
        os.replace(new, here / "tls.crt")
        context = ssl.create_default_context(cadata=ca.pem.decode())
        with (socket.create_connection(("127.0.0.1", observer.port), timeout=30) as raw,
              context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls):
            assert tls.version() == "TLSv1.3"  # still served, with the last good certificate
    finally:
        served.stop()
    assert daemon.registry.get_sample_value("hushflow_serve_tls_reload_errors_total") == 1
