"""gzip bombs and over-long lines: memory stays at the line bound, the bad line is counted with
file:line and skipped, and reading goes on at the next newline.

The bombs are made here, in a few milliseconds: deflate output for a block of zeros after a full
flush is the same bytes every time, so one block is compressed once and repeated.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hushflow.cli.observe import run_observe
from hushflow.flow.reader import DEFAULT_MAX_LINE_BYTES, FlowReader, ReadStats

MiB = 1 << 20
#: What reading may take at most, whatever the input inflates to: a few times the line bound
#: (16 MiB: the line being skipped, and the chunk it is found in). It measures about 35 MiB.
MEMORY_BOUND = 4 * DEFAULT_MAX_LINE_BYTES


def flow_line(n: int) -> bytes:
    return orjson.dumps(
        {
            "flow": {"time": "2026-03-02T09:00:00Z", "verdict": "DROPPED", "Summary": f"#{n}"},
            "node_name": "node",
            "time": "2026-03-02T09:00:00Z",
        }
    )


def gzip_bomb(zeros_mib: int, before: bytes = b"", after: bytes = b"") -> bytes:
    """One gzip member: `before`, `zeros_mib` MiB of NUL bytes (no newline), then `after`."""
    block = bytes(MiB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(before) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.compress(after) + deflate.flush(zlib.Z_FINISH)
    crc = zlib.crc32(before)
    for _ in range(zeros_mib):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(after, crc)
    size = len(before) + zeros_mib * MiB + len(after)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + repeated * zeros_mib + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_the_bomb_is_a_valid_gzip_member() -> None:
    bomb = gzip_bomb(3, b"a\n", b"\nb")
    assert zlib.decompress(bomb, wbits=31) == b"a\n" + bytes(3 * MiB) + b"\nb"
    assert len(gzip_bomb(1024)) < 1.1 * MiB  # 1 GiB in about 1 MB


def peak_while(run: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_quarter_gib_line_in_a_small_gzip_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip_bomb(256, before=flow_line(1) + b"\n", after=b"\n" + flow_line(3) + b"\n"))
    assert path.stat().st_size < 300_000
    stats = ReadStats()
    events, peak = peak_while(lambda: list(FlowReader([path], stats=stats)))
    assert [e.data["flow"]["Summary"] for e in events] == ["#1", "#3"]
    assert [e.line for e in events] == [1, 3]
    assert [str(bad) for bad in stats.reported] == [f"{path}:2: line longer than {DEFAULT_MAX_LINE_BYTES} bytes"]
    assert stats.bad_lines == 1
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB"


def test_observe_reads_on_past_the_bomb_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl.gz"
    path.write_bytes(gzip_bomb(256, after=b"\n" + flow_line(2) + b"\n"))
    out, err = io.BytesIO(), io.StringIO()
    code, peak = peak_while(
        lambda: run_observe(["--input-file", str(path), "-o", "jsonpb"], stdout=out, stderr=err, stdin=io.BytesIO())
    )
    assert code == 2
    assert f"{path}:1: line longer than {DEFAULT_MAX_LINE_BYTES} bytes" in err.getvalue()
    assert orjson.loads(out.getvalue())["flow"]["Summary"] == "#2"
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB"


class Pieces(io.RawIOBase):
    """A stream that records the largest piece asked of it, to show reads stay chunk-sized."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def chunk_sizes(reader: FlowReader, name: str) -> Iterator[int]:
    return (len(chunk) for chunk in reader._chunks(name))


@pytest.mark.parametrize("chunk_size", [1000, 64 * 1024])
def test_inflated_pieces_never_exceed_one_chunk(chunk_size: int) -> None:
    # The bound is structural: however far one read inflates, what is handed on is one chunk.
    bomb = gzip_bomb(8, before=flow_line(1) + b"\n")
    reader = FlowReader(["-"], stdin=io.BufferedReader(Pieces(bomb)), chunk_size=chunk_size)
    sizes = list(chunk_sizes(reader, "-"))
    assert max(sizes) == chunk_size
    assert sum(sizes) == len(flow_line(1)) + 1 + 8 * MiB


@pytest.mark.parametrize("chunk_size", [100, 4096, MiB])
def test_over_long_lines_in_gzip_are_skipped_line_by_line(chunk_size: int) -> None:
    big = b"x" * 50_000
    lines = [flow_line(1), big, flow_line(3), big + big, flow_line(5)]
    data = zlib.compress(b"\n".join(lines) + b"\n", wbits=31)
    stats = ReadStats()
    events = list(FlowReader(["-"], stdin=io.BytesIO(data), stats=stats, chunk_size=chunk_size, max_line_bytes=10_000))
    assert [(e.line, e.data["flow"]["Summary"]) for e in events] == [(1, "#1"), (3, "#3"), (5, "#5")]
    assert [(b.line, b.reason) for b in stats.reported] == [
        (2, "line longer than 10000 bytes"),
        (4, "line longer than 10000 bytes"),
    ]


def test_members_split_across_reads_are_all_inflated() -> None:
    members = b"".join(zlib.compress(flow_line(n) + b"\n", wbits=31) for n in range(1, 40))
    events = list(FlowReader(["-"], stdin=io.BytesIO(members), chunk_size=7))
    assert [e.data["flow"]["Summary"] for e in events] == [f"#{n}" for n in range(1, 40)]


def test_a_half_gib_line_in_a_plain_file_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    with open(path, "wb") as f:
        f.write(flow_line(1) + b"\n")
        f.truncate(512 * MiB)  # a sparse file: half a GiB of NULs without a newline, not on disk
        f.seek(0, io.SEEK_END)
        f.write(b"\n" + flow_line(3) + b"\n")
    stats = ReadStats()
    events, peak = peak_while(lambda: list(FlowReader([path], stats=stats)))
    assert [e.line for e in events] == [1, 3]
    assert [(b.line, b.reason) for b in stats.reported] == [(2, f"line longer than {DEFAULT_MAX_LINE_BYTES} bytes")]
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB"


class OneByteAtATime(io.RawIOBase):
    """A pipe that hands over one byte per read, as a slow writer can."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(1)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("source", ["chunk-size-1", "one-byte-pipe"])
def test_gzip_is_detected_when_the_first_read_is_one_byte(source: str) -> None:
    data = zlib.compress(flow_line(1) + b"\n" + flow_line(2) + b"\n", wbits=31)
    if source == "chunk-size-1":
        reader = FlowReader(["-"], stdin=io.BytesIO(data), chunk_size=1)
    else:
        reader = FlowReader(["-"], stdin=io.BufferedReader(OneByteAtATime(data), buffer_size=1))
    assert [e.data["flow"]["Summary"] for e in reader] == ["#1", "#2"]
    assert reader.stats.bad_lines == 0


@pytest.mark.parametrize("chunk_size", [1, 3, 81, 82, 4096])
def test_a_crlf_line_of_exactly_the_bound_is_not_over_long(chunk_size: int) -> None:
    line = flow_line(1)
    doc = line + b"\r\n" + b"x" * (len(line) + 1) + b"\r\n" + line + b"\r\n"
    stats = ReadStats()
    events = list(
        FlowReader(["-"], stdin=io.BytesIO(doc), stats=stats, chunk_size=chunk_size, max_line_bytes=len(line))
    )
    assert [e.line for e in events] == [1, 3]
    assert [(b.line, b.reason) for b in stats.reported] == [(2, f"line longer than {len(line)} bytes")]
