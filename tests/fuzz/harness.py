"""The fuzz targets' runner: hypothesis for the inputs, a time budget and counters on top.

Each target is a property over one input surface, written as a plain function of the drawn
values and declared with :func:`fuzz_target` (the strategies) instead of ``@given``. The runner
builds the hypothesis test itself, so the same target runs two ways:

- ``ci`` (the default, what ``make test`` runs): one hypothesis run of the target's
  ``ci_examples`` examples from one seed, printed at the end of the session (``FUZZ_SEED=<n>``
  repeats it exactly).
- ``long`` (``make fuzz``: ``HUSHFLOW_FUZZ=long``): rounds of fresh seeds (``seed + round``)
  until the target's share of ``FUZZ_SECONDS`` is spent. A failure is recorded and the rounds go
  on, so one bug does not hide the next; the first failure of each kind is shrunk, later ones of
  the same kind are only counted. The target fails at the end with what it found.

Crashes already found and routed to their owner's fix (``KNOWN``, each with its xfail regression
test in test_found_crashes.py) are counted as ``known <id>`` instead of failing the target, so
the fuzzing goes on past them; the regression test turns XPASS (a strict failure) when the fix
lands, and the entry goes.

Per target the session prints executions (calls of the property, shrinking included), rounds,
failing rounds and seconds, and what the property counted. Examples are never stored in a
database: the seed and hypothesis' own report (the shrunk example, a ``@reproduce_failure``
blob) reproduce a failure.
"""

from __future__ import annotations

import os
import random
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

PROFILE = os.environ.get("HUSHFLOW_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"HUSHFLOW_FUZZ={PROFILE!r}: expected ci or long")
SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
TOTAL_SECONDS = float(os.environ.get("FUZZ_SECONDS", "600"))
#: Scales every target's ci example count (1 = as each target declares).
CI_SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))

_BASE = settings(
    deadline=None,
    database=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class Known:
    """A crash found, routed to its owner, and tolerated by the targets until it is fixed."""

    id: str
    exception: type[BaseException]
    function: str  # the innermost hushflow function the exception left (comprehensions skipped)

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.exception) and _where(exc)[0] == self.function


#: Crashes the fuzz targets found that wait for a fix in a file another session owns
#: (reproducers and owners: test_found_crashes.py).
KNOWN: tuple[Known, ...] = (
)


def _where(exc: BaseException) -> tuple[str, str]:
    """(function, file:line) of the innermost frame under src/hushflow the exception passed."""
    found = ("", "")
    for frame in traceback.extract_tb(exc.__traceback__):
        if "/src/hushflow/" in frame.filename and not frame.name.startswith("<"):
            found = (frame.name, f"{frame.filename.split('/src/')[-1]}:{frame.lineno}")
    return found


def signature(exc: BaseException) -> str:
    """What tells one failure from another: the exception type and where in hushflow it rose
    (for a property that does not hold: the line of the property)."""
    inner: BaseException = exc
    while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    cause = inner.__cause__ or inner
    function, where = _where(cause)
    if not function:
        for frame in traceback.extract_tb(cause.__traceback__):
            if "/tests/fuzz/" in frame.filename and not frame.filename.endswith("harness.py"):
                function, where = frame.name, f"{frame.filename.split('/tests/')[-1]}:{frame.lineno}"
    return f"{type(cause).__name__} in {function or '(the property)'} {where}".rstrip()


def report(exc: BaseException) -> str:
    """The end of the exception's report: hypothesis' falsifying example is in its notes."""
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= 6000 else "...\n" + text[-6000:]


@dataclass
class TargetStats:
    name: str
    executions: int = 0
    rounds: int = 0
    failures: int = 0
    seconds: float = 0.0
    #: what the property counted (a usage error, a skipped flow, a known crash ...)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: failure kind -> (how many rounds, the first report)
    found: dict[str, tuple[int, str]] = field(default_factory=dict)


STATS: dict[str, TargetStats] = {}
_CURRENT: list[TargetStats] = []
#: How many fuzz targets the session collected (set by conftest), to split FUZZ_SECONDS.
COLLECTED: list[int] = [0]


def note(outcome: str) -> None:
    """Count an outcome of the current execution (shown in the session's figures)."""
    if _CURRENT:
        _CURRENT[-1].outcomes[outcome] += 1


def fuzz_target(
    *strategies: st.SearchStrategy[Any], ci_examples: int = 200
) -> Callable[[Callable[..., None]], Callable[[], None]]:
    """Declare a fuzz target: ``prop(*drawn)`` must hold for every drawn value."""

    def decorate(prop: Callable[..., None]) -> Callable[[], None]:
        name = prop.__name__

        def run() -> None:
            stats = STATS.setdefault(name, TargetStats(name))
            calls = [0]

            def counted(drawn: tuple[Any, ...]) -> None:
                calls[0] += 1
                try:
                    prop(*drawn)
                except Exception as exc:
                    for known in KNOWN:
                        if known.matches(exc):
                            note(f"known {known.id}")
                            return
                    raise

            counted.__name__ = counted.__qualname__ = name  # hypothesis' reports name the target
            _CURRENT.append(stats)
            started = time.monotonic()
            try:
                if PROFILE == "ci":
                    stats.rounds += 1
                    try:
                        _round(counted, strategies, max(1, int(ci_examples * CI_SCALE)), SEED, shrink=True)
                    except Exception:
                        stats.failures += 1
                        raise  # hypothesis' own report: the falsifying example, shrunk
                else:
                    _long(counted, strategies, stats, started)
            finally:
                _CURRENT.pop()
                stats.executions += calls[0]
                stats.seconds += time.monotonic() - started
            if stats.found:
                kinds = "\n\n".join(f"[{count} round(s)] {kind}\n{first}" for kind, (count, first)
                                    in stats.found.items())
                pytest.fail(f"{name}: {stats.failures} failing round(s), {len(stats.found)} kind(s):\n{kinds}",
                            pytrace=False)

        run.__name__ = run.__qualname__ = name
        run.__doc__ = prop.__doc__
        run.__module__ = prop.__module__
        return pytest.mark.fuzz(run)

    return decorate


def _round(prop: Callable[..., None], strategies: tuple[st.SearchStrategy[Any], ...], examples: int,
           round_seed: int, *, shrink: bool) -> None:
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.generate)
    test = given(st.tuples(*strategies))(prop)
    test = seed(round_seed)(settings(_BASE, max_examples=examples, phases=phases)(test))
    with warnings.catch_warnings():  # inputs of 100 kB (deep nesting) are meant; their repr is not shown
        warnings.filterwarnings("ignore", message="Generating overly large repr")
        test()


def _long(prop: Callable[..., None], strategies: tuple[st.SearchStrategy[Any], ...], stats: TargetStats,
          started: float) -> None:
    budget = TOTAL_SECONDS / max(1, COLLECTED[0])
    examples = 100
    while time.monotonic() - started < budget:
        round_started = time.monotonic()
        round_seed = SEED + stats.rounds
        try:
            # Shrinking a big input takes a minute: only until the first failure of the target.
            _round(prop, strategies, examples, round_seed, shrink=not stats.found)
        except Exception as exc:  # a failing round is recorded; the next one goes on
            stats.failures += 1
            kind = signature(exc)
            count, first = stats.found.get(kind, (0, ""))
            stats.found[kind] = (count + 1, first or f"(round seed {round_seed})\n{report(exc)}")
        stats.rounds += 1
        # Size the next round to about a tenth of the budget (or what is left of it).
        elapsed = max(time.monotonic() - round_started, 1e-3)
        per_example = elapsed / max(1, examples)
        left = budget - (time.monotonic() - started)
        examples = int(min(20_000, max(20, min(budget / 10, left) / per_example)))


def summary_lines() -> list[str]:
    if not STATS:
        return []
    lines = [f"fuzz ({PROFILE}, seed {SEED}; repeat with FUZZ_SEED={SEED} HUSHFLOW_FUZZ={PROFILE}):"]
    width = max(len(name) for name in STATS)
    for stats in STATS.values():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items()))
        lines.append(
            f"  {stats.name:<{width}}  {stats.executions:>8} executions  {stats.rounds:>4} rounds  "
            f"{stats.failures} failing  {stats.seconds:7.1f} s" + (f"  [{outcomes}]" if outcomes else "")
        )
        for kind, (count, _first) in stats.found.items():
            lines.append(f"  {'':<{width}}  found: {kind} ({count} round(s))")
    total = sum(s.executions for s in STATS.values())
    lines.append(f"  total: {total} executions, {sum(s.failures for s in STATS.values())} failing rounds")
    return lines
