"""`hushflow run` start-up checks: a user mistake or an unusable place to write is one line,
`error: --option value: what is wrong`, exit 2, before any policy is read or server dialled;
never a traceback, never a run that retries a write that can never work."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.app import run_checks
from hushflow.app.daemon import RunOptions
from hushflow.app.example import example_dir
from hushflow.app.run_checks import RunOptionError, check_run_options
from hushflow.cli.run import run

EXAMPLE = example_dir()
assert EXAMPLE is not None
POLICIES = str(EXAMPLE / "policies")
FLOWS = str(EXAMPLE / "flows.jsonl")


def hushflow_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(run, ["--policies", POLICIES, "--no-resolve", "--clock", "flows",
                                      "--metrics-address", "127.0.0.1:0", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x\n")
    (tmp_path / "not-pem.crt").write_text("x\n")
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    # where the CIDR groups go
    (["--out", "a-file"], "--out a-file: not a directory (the CIDR groups are written as files in it)"),
    (["--out", "a-file/groups"], "--out a-file/groups: {here}/a-file is not a directory"),
    (["--out", "/proc/hushflow-groups"], "--out /proc/hushflow-groups: cannot create /proc/hushflow-groups in /proc: "),
    # where the learned IPs persist
    (["--state", "missing/dir/state.json"], "--state missing/dir/state.json: the directory missing/dir does not "
                                            "exist: create it, or mount the volume the state lives on"),
    (["--state", "."], "--state .: . is a directory: name a file (e.g. ./state.json)"),
    (["--state", "a-file/state.json"], "--state a-file/state.json: a-file is not a directory"),
    (["--state", "/dev/null"], "--state /dev/null: /dev/null is not a regular file (a device or a pipe is never state)"),
    (["--state", "/proc/hushflow-state.json"], "--state /proc/hushflow-state.json: cannot write in /proc: "),
    # seconds
    (["--linger", "inf"], "--linger inf: not a number of seconds: give a finite number (e.g. 86400 for a day)"),
    (["--linger", "nan"], "--linger nan: not a number of seconds"),
    (["--linger", "-1"], "--linger -1.0: seconds must be at least 0"),
    (["--linger", "1e300"], "--linger 1e+300: more seconds than this system can wait"),
    (["--event-window", "-inf"], "--event-window -inf: not a number of seconds"),
    (["--min-ttl", "-5"], "--min-ttl -5.0: seconds must be at least 0"),
    # sources and sinks
    (["--input-file", "missing.json"], "--input-file missing.json: no such file"),
    (["--input-file", "."], "--input-file .: a directory, not a file of flows"),
    (["--events", "file:missing/dir/events.jsonl"], "--events file:missing/dir/events.jsonl: the directory "
                                                    "missing/dir does not exist"),
    (["--nameserver", "dns.example"], "--nameserver dns.example: not an IP address"),
    (["--hubble-server", "relay"], "--hubble-server: relay: expected host:port"),
    (["--hubble-server", "relay:99999"], "--hubble-server relay:99999: port 99999 is out of range (1 to 65535)"),
    (["--hubble-server", "relay:4245", "--tls-client-cert-file", "c.pem"],
     "--tls-client-cert-file c.pem: needs --tls-client-key-file"),
    (["--hubble-server", "relay:4245", "--tls", "--tls-ca-cert-files", "missing.pem"],
     "--tls-ca-cert-files missing.pem: cannot read it: No such file or directory"),
    (["--hubble-server", "relay:4245", "--tls", "--tls-ca-cert-files", "/dev/zero"],
     "--tls-ca-cert-files /dev/zero: not a regular file"),
    (["--hubble-server", "relay:4245", "--tls", "--tls-ca-cert-files", "not-pem.crt"],
     "--tls-ca-cert-files not-pem.crt: not PEM encoded data"),
])
def test_a_mistake_is_one_error_line_and_exit_2_before_anything_starts(here: Path, args: list[str],
                                                                      message: str) -> None:
    if "--input-file" not in args and "--hubble-server" not in args:
        args = [*args, "--input-file", FLOWS]
    code, output = hushflow_run(*args)
    assert code == 2, output
    assert output.startswith("error: " + message.format(here=here)), output
    assert len(output.splitlines()) == 1, output
    assert "Traceback" not in output and "serving" not in output


def test_good_places_to_write_start_the_run(here: Path) -> None:
    code, output = hushflow_run("--input-file", FLOWS, "--out", "groups/new", "--state", "state.json")
    assert code == 0, output
    assert "error" not in output and "warning" not in output
    assert (here / "groups" / "new").is_dir() and (here / "state.json").is_file()
    assert not [name for name in os.listdir(here / "groups" / "new") if name.startswith(".hushflow-write-check")]


def test_a_full_disk_is_a_warning_and_the_run_starts(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk is no mistake: the run starts and retries its writes when space returns.
    def full(**_kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_checks.tempfile, "mkstemp", full)
    warnings = check_run_options(RunOptions(policies=(POLICIES,), input_files=(FLOWS,), out_dir="groups",
                                            state_path="state.json"))
    assert warnings == [
        "--out groups: the disk is full (No space left on device); the run starts, and retries its writes "
        "when space returns",
        "--state state.json: the disk is full (No space left on device); the run starts, and retries its writes "
        "when space returns",
    ]
    assert tempfile.mkstemp is full


@pytest.mark.parametrize(("field", "value", "message"), [
    ("snapshot_interval", 0.0, "snapshot_interval 0.0: seconds must be more than 0"),
    ("expire_interval", -1.0, "expire_interval -1.0: seconds must be more than 0"),
    ("drain_timeout", float("nan"), "drain_timeout nan: not a number of seconds"),
])
def test_library_callers_get_the_same_checks_for_options_without_a_flag(field: str, value: float,
                                                                        message: str) -> None:
    with pytest.raises(RunOptionError) as raised:
        check_run_options(RunOptions(policies=(POLICIES,), input_files=(FLOWS,), **{field: value}))
    assert str(raised.value).startswith(message)
