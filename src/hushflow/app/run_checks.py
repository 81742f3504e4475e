"""What `hushflow run` checks before it reads a policy or connects anywhere.

A daemon that starts with a mistake in its command line fails late and far from the cause: a
`--linger inf` ends a replay with a traceback after all the work, an `--out` that is a file
retries its first write forever, a `--state` in a missing directory fails on the first learned
IP. `check_run_options` looks at every option it can judge alone, and at the places the run
will write, the way the run will use them (a real file made and removed, not `os.access`, which
says yes to root on a read-only mount or a `chmod 555` directory), and raises `RunOptionError`
naming the option, its value and what is wrong. A full disk is no mistake: it is returned as a
warning, and the run starts and retries its writes when space returns.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hushflow.app.daemon import RunOptions
from hushflow.enforce.state import journal_path
from hushflow.flow.grpc_target import TargetError, TLSOptions, parse_server

#: Errors of a disk that is full, not of a place that cannot be written: warned about, not refused.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: A PEM file larger than this is no certificate (and is not read whole to find out).
_MAX_PEM_BYTES = 1 << 20


class RunOptionError(Exception):
    """An option `hushflow run` cannot start with: ``str()`` is ``--option value: what is wrong``."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Seconds:
    field: str
    option: str
    positive: bool = False  # 0 is not allowed (an interval)


# The RunOptions fields that are durations; those without a command-line option are named by field.
_SECONDS = (
    _Seconds("linger", "--linger"),
    _Seconds("event_window", "--event-window"),
    _Seconds("min_ttl", "--min-ttl"),
    _Seconds("grace", "grace"),
    _Seconds("drain_timeout", "drain_timeout"),
    _Seconds("snapshot_interval", "snapshot_interval", positive=True),
    _Seconds("expire_interval", "expire_interval", positive=True),
)


def check_run_options(options: RunOptions) -> list[str]:
    """Raise RunOptionError for the first option `hushflow run` cannot start with; return the
    warnings (a full disk under --out or --state) for the run to print and go on."""
    for seconds in _SECONDS:
        _check_seconds(seconds, getattr(options, seconds.field))
    for server in options.nameservers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise RunOptionError(f"--nameserver {server}", "not an IP address") from None
    if options.hubble_server:
        _check_hubble(options.hubble_server, options.tls)
    for path in options.input_files:
        _check_input(path, options.follow)
    warnings: list[str] = []
    if options.out_dir:
        warnings.extend(_check_out_dir(options.out_dir))
    if options.state_path:
        warnings.extend(_check_state(options.state_path))
    for spec in options.events:
        if spec.startswith("file:"):
            _check_event_file(spec)
    return warnings


def _check_seconds(seconds: _Seconds, value: float) -> None:
    option = f"{seconds.option} {value}"
    if not math.isfinite(value):
        raise RunOptionError(option, "not a number of seconds: give a finite number (e.g. 86400 for a day)")
    if value < 0 or (seconds.positive and value == 0):
        raise RunOptionError(option, f"seconds must be {'more than' if seconds.positive else 'at least'} 0")
    if value > threading.TIMEOUT_MAX:
        raise RunOptionError(option, f"more seconds than this system can wait (at most {threading.TIMEOUT_MAX:.0f})")


def _check_hubble(server: str, tls: TLSOptions | Mapping[str, Any] | None) -> None:
    option = f"--hubble-server {server}"
    options = tls if isinstance(tls, TLSOptions) else TLSOptions.from_options(tls or {})
    try:
        target = parse_server(server, options)
    except TargetError as exc:
        raise RunOptionError("--hubble-server", str(exc)) from None
    if target.port is not None and not 1 <= target.port <= 65535:
        raise RunOptionError(option, f"port {target.port} is out of range (1 to 65535)")
    if options.client_cert_file and not options.client_key_file:
        raise RunOptionError(f"--tls-client-cert-file {options.client_cert_file}", "needs --tls-client-key-file")
    if options.client_key_file and not options.client_cert_file:
        raise RunOptionError(f"--tls-client-key-file {options.client_key_file}", "needs --tls-client-cert-file")
    files: list[tuple[str, str | None]] = [("--tls-ca-cert-files", path) for path in options.ca_cert_files]
    files += [("--tls-client-cert-file", options.client_cert_file), ("--tls-client-key-file", options.client_key_file)]
    for flag, path in files:
        if path:
            _check_pem(f"{flag} {path}", path)


def _check_pem(option: str, path: str) -> None:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise RunOptionError(option, f"cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise RunOptionError(option, "not a regular file")
    if info.st_size > _MAX_PEM_BYTES:
        raise RunOptionError(option, f"{info.st_size} bytes: too large for a PEM certificate or key")
    try:
        with open(path, "rb") as pem:
            data = pem.read(_MAX_PEM_BYTES)
    except OSError as exc:
        raise RunOptionError(option, f"cannot read it: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise RunOptionError(option, "not PEM encoded data")


def _check_input(path: str, follow: bool) -> None:
    if path == "-":
        return
    option = f"--input-file {path}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if follow:
            return  # an exporter file that is not written yet: --follow waits for it
        raise RunOptionError(option, "no such file") from None
    except OSError as exc:
        raise RunOptionError(option, f"cannot read it: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise RunOptionError(option, "a directory, not a file of flows")


def _check_out_dir(path: str) -> list[str]:
    option = f"--out {path}"
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        # Created on the first write: its nearest existing parent must take a new directory.
        parent = _existing_parent(path, option)
        return _check_writable(option, parent, f"cannot create {path} in {parent}")
    except OSError as exc:
        raise RunOptionError(option, f"cannot use it: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RunOptionError(option, "not a directory (the CIDR groups are written as files in it)")
    return _check_writable(option, path, "cannot write in it")


def _check_state(path: str) -> list[str]:
    option = f"--state {path}"
    for candidate in (path, journal_path(path)):
        try:
            info = os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there yet (a parent that is no directory is named below)
        except OSError as exc:
            raise RunOptionError(option, f"cannot use {candidate}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            example = f"{path.rstrip('/')}/state.json"
            raise RunOptionError(option, f"{candidate} is a directory: name a file (e.g. {example})")
        if not stat.S_ISREG(info.st_mode):
            raise RunOptionError(option, f"{candidate} is not a regular file (a device or a pipe is never state)")
    directory = os.path.dirname(path) or "."
    try:
        info = os.stat(directory)
    except NotADirectoryError:
        raise RunOptionError(option, f"{_existing_parent(path, option)} is not a directory") from None
    except FileNotFoundError:
        raise RunOptionError(option, f"the directory {directory} does not exist: create it, or mount the "
                                     "volume the state lives on") from None
    except OSError as exc:
        raise RunOptionError(option, f"cannot use the directory {directory}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RunOptionError(option, f"{directory} is not a directory")
    # The snapshot is written next to the state file and renamed over it; the journal is appended.
    return _check_writable(option, directory, f"cannot write in {directory}")


def _check_event_file(spec: str) -> None:
    path = spec.removeprefix("file:")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise RunOptionError(f"--events {spec}", f"the directory {directory} does not exist")
    if os.path.isdir(path):
        raise RunOptionError(f"--events {spec}", "a directory, not a file to append events to")


def _existing_parent(path: str, option: str) -> str:
    """The nearest ancestor of `path` that exists, which must be a directory."""
    current = os.path.abspath(path)
    for parent in _parents(current):
        try:
            info = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise RunOptionError(option, f"cannot use {parent}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise RunOptionError(option, f"{parent} is not a directory")
        return parent
    return "/"


def _parents(path: str) -> Iterator[str]:
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return
        yield parent
        path = parent


def _check_writable(option: str, directory: str, what: str) -> list[str]:
    """Make and remove a file in `directory`, as the run will: a refusal is an error, a full disk
    a warning (the run retries its writes)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".hushflow-write-check-", dir=directory)
    except OSError as exc:
        if exc.errno in _FULL:
            return [f"{option}: the disk is full ({exc.strerror}); the run starts, and retries its writes "
                    "when space returns"]
        raise RunOptionError(option, f"{what}: {exc.strerror or exc}") from None
    os.close(handle)
    os.unlink(probe)
    return []
