"""Replace a file atomically: readers, and a crash, see the old content or the new, never half."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, data: bytes, *, sync_directory: bool = False) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it over `path`.

    `sync_directory` also fsyncs the directory, so the rename itself survives a power loss
    (needed for the state file; generated manifests are simply written again at start-up).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hushflow-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if sync_directory:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
