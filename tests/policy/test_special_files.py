"""Policy paths that are not regular files (FIFOs, devices, symlinks to them) are never opened.

In a directory they are skipped with a warning (HF006) naming the path; named on the command
line they are an error (HF004, exit 2). Opening a FIFO blocks until a writer comes, and
`/dev/zero` never ends.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.cli import main
from hushflow.policy import yamlsource
from hushflow.policy.yamlsource import load_manifests

POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: a}
spec:
  endpointSelector: {}
  egress: [{toEntities: [world]}]
"""


class FifoWriter:
    """A writer waiting on a FIFO: it only gets through if somebody opens the FIFO to read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reached = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        try:
            with open(self.path, "w") as fifo:  # blocks until a reader opens the other end
                self.reached.set()
                fifo.write("kind: Fifo\n")
        except BrokenPipeError:  # the reader was gone before the write: `reached` says it was there
            pass

    def release(self) -> bool:
        """Whether a reader had opened the FIFO; then let the writer finish either way."""
        opened = self.reached.is_set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.thread.join()
        finally:
            os.close(fd)
        return opened


@pytest.fixture
def fifo_dir(tmp_path: Path) -> Iterator[tuple[Path, FifoWriter]]:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "a.yaml").write_text(POLICY)
    fifo = directory / "b.yaml"
    os.mkfifo(fifo)
    writer = FifoWriter(fifo)
    yield directory, writer
    if writer.thread.is_alive():
        writer.release()


@pytest.fixture
def no_dev_zero(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every attempt to open /dev/zero, so a failing run cannot read it forever."""
    attempts: list[str] = []
    real_os_open, real_open = os.open, open

    def guard(path: object) -> None:
        if isinstance(path, str | os.PathLike) and os.path.realpath(path) == "/dev/zero":
            attempts.append(os.fspath(path))  # type: ignore[arg-type]
            raise PermissionError(13, "refused by the test", os.fspath(path))  # type: ignore[arg-type]

    def os_open(path: object, *args: object, **kwargs: object) -> int:
        guard(path)
        return real_os_open(path, *args, **kwargs)  # type: ignore[arg-type]

    def builtin_open(path: object, *args: object, **kwargs: object) -> object:
        guard(path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(yamlsource, "open", builtin_open, raising=False)
    return attempts


def test_fifo_in_a_directory_is_skipped_unopened(fifo_dir: tuple[Path, FifoWriter]) -> None:
    directory, writer = fifo_dir
    result = load_manifests([str(directory)])
    assert writer.release() is False  # nobody opened it
    assert [m.kind for m in result.manifests] == ["CiliumNetworkPolicy"]
    assert [(p.code, p.message) for p in result.problems] == [
        ("HF006", f"skipped {directory / 'b.yaml'}: a named pipe (FIFO), not a regular file")
    ]


def test_symlink_to_dev_zero_in_a_directory_is_skipped_unopened(tmp_path: Path, no_dev_zero: list[str]) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "zero.yml").symlink_to("/dev/zero")
    result = load_manifests([str(tmp_path)])
    assert no_dev_zero == []
    assert [m.kind for m in result.manifests] == ["CiliumNetworkPolicy"]
    (problem,) = result.problems
    assert (problem.code, problem.location.file) == ("HF006", str(tmp_path / "zero.yml"))
    assert problem.message.endswith("a character device, not a regular file")


def test_socket_in_a_directory_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s.yaml"))
        result = load_manifests([str(tmp_path)])
    assert [(p.code, p.message.split(": ")[-1]) for p in result.problems] == [("HF006", "a socket, not a regular file")]


def test_directory_with_only_special_files_is_also_unreadable(tmp_path: Path, no_dev_zero: list[str]) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    codes = [p.code for p in load_manifests([str(tmp_path)]).problems]
    assert codes == ["HF006", "HF004"]  # the skipped entry, then: no YAML file was read


def test_lint_of_a_directory_with_a_fifo_warns_and_lints_the_rest(fifo_dir: tuple[Path, FifoWriter]) -> None:
    directory, writer = fifo_dir
    result = CliRunner().invoke(main, ["lint", "--no-color", str(directory)])
    assert writer.release() is False
    assert result.exit_code == 0, result.output
    assert f"{directory / 'b.yaml'}: warning[HF006]" in result.output
    assert "1 file(s), 1 object(s), 1 policy(ies): 0 error(s), 1 warning(s)" in result.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link", "dev-null"])
def test_named_special_file_is_an_error_exit_2(tmp_path: Path, kind: str, no_dev_zero: list[str]) -> None:
    if kind == "fifo":
        path = tmp_path / "p.yaml"
        os.mkfifo(path)
        writer: FifoWriter | None = FifoWriter(path)
        what = "a named pipe (FIFO)"
    elif kind == "dev-zero-link":
        path = tmp_path / "p.yaml"
        path.symlink_to("/dev/zero")
        writer, what = None, "a character device"
    else:
        path, writer, what = Path("/dev/null"), None, "a character device"
    result = CliRunner().invoke(main, ["lint", "--no-color", str(path)])
    if writer is not None:
        assert writer.release() is False
    assert no_dev_zero == []
    assert result.exit_code == 2, result.output
    assert f"{path}: error[HF004] {what}, not a regular file: {path}" in result.output


def test_a_fifo_swapped_in_after_the_check_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The type is checked again on the open descriptor, and the open itself cannot block.
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    real_iter = yamlsource._iter_paths
    writers: list[FifoWriter] = []

    def swap_after_check(paths: list[str], problems: list[yamlsource.LoadProblem]) -> Iterator[str]:
        for found in real_iter(paths, problems):
            os.unlink(found)
            os.mkfifo(found)
            writers.append(FifoWriter(Path(found)))
            yield found

    monkeypatch.setattr(yamlsource, "_iter_paths", swap_after_check)
    result = load_manifests([str(path)])
    # The open descriptor of the swapped-in FIFO lets its writer through (the kernel wakes it
    # at the open), so whether it "reached" depends on thread scheduling: what matters is that
    # nothing was read from it.
    for writer in writers:
        writer.release()
    assert result.manifests == []
    assert [(p.code, p.message) for p in result.problems] == [
        ("HF004", "cannot read file: a named pipe (FIFO), not a regular file")
    ]
