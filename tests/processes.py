"""Real servers the tests start on loopback (Prometheus, Unbound): start, wait, always stop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    command: Sequence[str],
    *,
    ready: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    details: Callable[[], str] = lambda: "",
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Start `command`, poll `ready()` until it is true (bounded by `timeout`), yield the process,
    and terminate it (kill if it does not stop) whatever happens. `details()` adds the server's
    log to a failure message."""
    process = subprocess.Popen(list(command), **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}:\n{details()}")
            with contextlib.suppress(OSError, TimeoutError):
                if ready():
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{what} was not ready after {timeout:.0f} s:\n{details()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
