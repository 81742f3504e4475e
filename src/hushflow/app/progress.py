"""Progress bars on stderr for long work (reading a large flow file, resolving names).

Shown only when stderr is a terminal and the user did not ask for `--quiet`: a pipe, a file or a
CI log gets nothing, so output stays byte-for-byte what it was. When off, `ProgressReporter`
hands iterables back untouched (no per-item cost at all); when on, it counts in batches, so a
million flows cost a thousand updates of the bar, not a million.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

T = TypeVar("T")

#: Items counted between two updates of a bar (rich's update takes a lock and re-renders).
BATCH = 1000


class ProgressReporter:
    """Bars for one command run; `enabled` False makes every method a no-op."""

    def __init__(self, console: Console | None) -> None:
        self._console = console

    @property
    def enabled(self) -> bool:
        return self._console is not None

    def _progress(self, total: int | None) -> Progress:
        assert self._console is not None
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        else:
            columns += [TextColumn("{task.completed:,}")]
        columns.append(TimeElapsedColumn())
        # transient: the bar goes away when the work is done, leaving only the command's own output.
        return Progress(*columns, console=self._console, transient=True)

    def iterate(self, items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
        """`items` with a bar (a count when `total` is unknown) advanced as they are taken; `items`
        itself when off (the per-flow path stays as it was)."""
        if self._console is None:
            return items
        return self._counted(items, description, total)

    def _counted(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
        with self._progress(total) as progress:
            task = progress.add_task(description, total=total)
            pending = 0
            for item in items:
                yield item
                pending += 1
                if pending == BATCH:
                    progress.advance(task, pending)
                    pending = 0
            progress.advance(task, pending)

    @contextmanager
    def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        """A bar of `total` steps; the work calls the function it gets once per step done."""
        if self._console is None:
            yield _nothing
            return
        with self._progress(total) as progress:
            task = progress.add_task(description, total=total)
            yield lambda: progress.advance(task)


def _nothing() -> None:
    return None


#: Shows nothing: what library callers and tests get by default.
NO_PROGRESS = ProgressReporter(None)


def progress_on(stderr: IO[str], *, quiet: bool = False, console: Console | None = None) -> ProgressReporter:
    """Bars on `stderr` when it is a terminal and not `quiet`; `console` (a test's
    `Console(force_terminal=True, file=StringIO())`) stands in for the terminal."""
    if quiet:
        return NO_PROGRESS
    if console is not None:
        return ProgressReporter(console)
    isatty = getattr(stderr, "isatty", None)
    if not callable(isatty) or not isatty():
        return NO_PROGRESS
    return ProgressReporter(Console(file=stderr, stderr=True))
