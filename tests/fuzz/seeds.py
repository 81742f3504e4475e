"""Seed inputs (recorded Hubble flows) and the mutations the fuzz targets build on them.

Seeds: the example's flows (examples/telemetry-block), Hubble 1.19.4's recorded corpus
(tests/data), and real flows quoted in public sources (tests/fuzz/seeds/real-flows.jsonl, where
each line comes from is in real-flows.provenance.json).
"""

from __future__ import annotations

import gzip
import math
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
GOLDEN = ROOT / "tests" / "data" / "hubble-1.19.4-golden" / "flows-4k.jsonl.gz"
REAL = Path(__file__).parent / "seeds" / "real-flows.jsonl"


@cache
def seed_lines() -> tuple[bytes, ...]:
    """Every seed line: the example's 25, 400 of the recorded corpus (every 10th), the real ones."""
    golden = gzip.decompress(GOLDEN.read_bytes()).splitlines()[::10]
    example = (EXAMPLE / "flows.jsonl").read_bytes().splitlines()
    real = REAL.read_bytes().splitlines()
    return tuple(line for line in (*example, *golden, *real) if line.strip())


@cache
def golden_lines() -> tuple[bytes, ...]:
    """Canonical ``-o jsonpb`` lines as Hubble wrote them (the whole recorded corpus)."""
    return tuple(gzip.decompress(GOLDEN.read_bytes()).splitlines())


@cache
def sample_golden_lines(count: int = 60) -> tuple[bytes, ...]:
    lines = golden_lines()
    step = max(1, len(lines) // count)
    return lines[::step][:count]


# -- JSON values --------------------------------------------------------------------------------

#: Values that are of the wrong type, out of range or odd for nearly any field.
ODD_SCALARS: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308,
    "", " ", "0", "-1", "1e400", "NaN", "Infinity", "18446744073709551616", "not-an-ip", "10.0.0.1",
    "fe80::1%eth0", "::ffff:10.0.0.1", "2001:DB8::1", "169.254.169.254", "0.0.0.0", "255.255.255.255",
    "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
    "2026-13-45T99:99:99Z", "DROPPED", "FORWARDED", "EGRESS", "INGRESS", "TCP", "POLICY_DENY", "\x1b[31m",
    "é", "\u2028", "a" * 300, "*", "**.", "reserved:world", "k8s:app=x",
)

json_scalars = st.one_of(
    st.sampled_from(ODD_SCALARS),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(_paths(child, (*prefix, index)))
    return out


def _keys_in(value: Any) -> list[str]:
    keys: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            keys.append(key)
            keys.extend(_keys_in(child))
    elif isinstance(value, list):
        for child in value:
            keys.extend(_keys_in(child))
    return keys


def _replace(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(root, dict):
        copy = dict(root)
        copy[head] = _replace(root[head], rest, new)
        return copy
    copy_list = list(root)
    copy_list[head] = _replace(root[head], rest, new)
    return copy_list


def _delete(root: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(root, dict):
            return {k: v for k, v in root.items() if k != path[0]}
        return [v for i, v in enumerate(root) if i != path[0]]
    head = path[0]
    if isinstance(root, dict):
        return {**root, head: _delete(root[head], path[1:])}
    out = list(root)
    out[head] = _delete(root[head], path[1:])
    return out


@st.composite
def mutated_json(draw: st.DrawFn, seed: Any, max_mutations: int = 4) -> Any:
    """`seed` with a few of its values replaced (by odd values, or by a value from elsewhere in
    the seed), keys deleted, or keys of the seed added where they do not belong."""
    value = seed
    keys = _keys_in(seed) or ["x"]
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        action = draw(st.integers(0, 4))
        if action == 0 or not path:
            value = _replace(value, path, draw(json_values))
        elif action == 1:
            value = _delete(value, path)
        elif action == 2:
            donor_path = draw(st.sampled_from(_paths(seed)))
            donor: Any = seed
            for part in donor_path:
                donor = donor[part]
            value = _replace(value, path, donor)
        else:
            target: Any = value
            for part in path:
                target = target[part]
            if isinstance(target, dict):
                key = draw(st.sampled_from(keys))
                value = _replace(value, path, {**target, key: draw(json_values)})
            elif isinstance(target, list):
                value = _replace(value, path, [*target, draw(json_values)])
            else:
                value = _replace(value, path, draw(json_values))
    return value


def dumps(value: Any) -> bytes:
    """JSON bytes of a drawn value (orjson refuses ints beyond 64 bits: they go through json)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        return json.dumps(value, separators=(",", ":")).encode()


@st.composite
def mutated_seed_event(draw: st.DrawFn) -> Any:
    """A parsed seed line, mutated."""
    line = draw(st.sampled_from(seed_lines()))
    return draw(mutated_json(orjson.loads(line)))


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes, max_mutations: int = 4) -> bytes:
    """`seed` with a few bytes flipped, inserted, deleted or duplicated, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.integers(0, 5))
        if action == 0:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == 2:
            del data[at : at + draw(st.integers(1, 8))]
        elif action == 3:
            end = min(len(data), at + draw(st.integers(1, 32)))
            data[at:at] = data[at:end]
        elif action == 4:
            del data[at:]
        else:
            data[at] = draw(st.sampled_from(b'\x00\x7f\x80\xff{}[]":,\\\n\r'))
    return bytes(data)


def finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value)
