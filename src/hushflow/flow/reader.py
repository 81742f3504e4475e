"""Read Hubble events from JSON-lines sources: files, stdin, gzip, several files, ``tail -F``.

Every line Hubble writes is accepted (``hubble observe -o jsonpb``, the exporter file, the legacy
``-o json`` bare Flow, protojson lowerCamel / enum-number / 64-bit-number spellings) and handed out
as a :class:`FlowEvent` holding the *canonical* event: the dict ``orjson.loads`` returns for a
``hubble observe -o jsonpb`` line, and the bytes of that line.

Performance is the point of this module. Lines written by Hubble are already canonical: a small C
module proves it from the bytes (``protojson.make_line_proof``), and such a line is handed out as
a :class:`ProvenEvent`, parsed only when something reads it. Any other line is read as Go's
protojson reads it (every level validated, a key given twice refused, other spellings converted
by :mod:`hushflow.flow.protojson`), so what is accepted is what Hubble accepts. A caller that
can reject a line from its bytes alone passes ``may_match`` and the line is not even parsed.

Unlike Hubble (``bufio.Scanner``, 64 KiB limit, abort), a long line never stops the read: lines up
to ``max_line_bytes`` are parsed, longer ones are skipped and counted without being buffered.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import orjson

from hushflow.flow import protojson
from hushflow.policy.source import printable

#: Bytes read from a source at a time.
DEFAULT_CHUNK_SIZE = 1 << 20
#: Longest line parsed; longer ones are skipped (and counted) without being held in memory.
DEFAULT_MAX_LINE_BYTES = 16 << 20
#: Bad lines reported in full; the rest are only counted.
DEFAULT_MAX_REPORTED = 5

STDIN_NAME = "-"
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"

LinePredicate = Callable[[bytes], bool]


class FlowReadError(Exception):
    """A source cannot be read, or (strict mode) a line is bad. The message names file and line."""


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was skipped, and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(slots=True)
class ReadStats:
    """What a read saw. Updated while iterating; read it at any time."""

    lines: int = 0
    """Non-empty lines seen (including those rejected by ``may_match``)."""
    events: int = 0
    """Events handed out."""
    prechecked_out: int = 0
    """Lines ``may_match`` rejected without parsing."""
    converted: int = 0
    """Lines in another spelling than ``-o jsonpb``, converted to the canonical form."""
    bad_lines: int = 0
    lost_events_lines: int = 0
    events_lost: int = 0
    """Sum of ``num_events_lost`` over all ``lost_events`` lines."""
    unknown_fields: set[str] = field(default_factory=set)
    """Field paths not in the schema (dropped, as Hubble does with DiscardUnknown)."""
    reported: list[BadLine] = field(default_factory=list)
    """The first ``max_reported`` bad lines in full."""
    max_reported: int = DEFAULT_MAX_REPORTED

    def add_bad(self, bad: BadLine) -> None:
        self.bad_lines += 1
        if len(self.reported) < self.max_reported:
            self.reported.append(bad)

    def report_lines(self) -> list[str]:
        """Human-readable summary for stderr: bad lines (first few in full), lost events."""
        out = [f"warning: {bad}" for bad in self.reported]
        more = self.bad_lines - len(self.reported)
        if more > 0:
            out.append(f"warning: ... and {more} more bad line{'s' if more != 1 else ''} skipped")
        if self.bad_lines:
            out.append(f"warning: {self.bad_lines} bad line{'s' if self.bad_lines != 1 else ''} skipped")
        if self.unknown_fields:
            out.append("warning: unknown fields ignored: " + ", ".join(sorted(self.unknown_fields)))
        if self.lost_events_lines:
            out.append(
                f"warning: {self.events_lost} events lost "
                f"(reported by {self.lost_events_lines} lost_events line"
                f"{'s' if self.lost_events_lines != 1 else ''})"
            )
        return out

    def write_report(self, stream: IO[str]) -> None:
        for line in self.report_lines():
            stream.write(line + "\n")


class FlowEvent:
    """One canonical Hubble event.

    ``raw``: the line as read (no newline) when the fast path took it, else the canonical
    re-encoding. ``data``: the parsed dict (``{"flow": {...}, "node_name": ..., "time": ...}``
    or ``{"lost_events": ...}`` ...). The fast path checks one level into the flow, so neither
    is proven to be Hubble's spelling below it (another field order, written-out defaults,
    ``.000Z``): ``-o jsonpb`` encodes from ``data`` after proving or making it canonical
    (:mod:`hushflow.sinks.hubble_format`). ``source``/``line``: where it came from
    (1-based line number).

    A source that has no line (gRPC) passes ``raw=None``: the line is encoded from ``data`` when
    first asked for (~7 µs a flow that the daemon, which never prints flows, does not spend).
    ``wire``: the serialized GetFlowsResponse ``data`` was decoded from (gRPC), else None; it is
    not changed when ``data`` is enriched (``run --serve`` appends the additions to it:
    :mod:`hushflow.flow.response_encoding`).
    """

    __slots__ = ("_raw", "data", "line", "source", "wire")

    def __init__(self, raw: bytes | None, data: dict[str, Any], source: str, line: int,
                 wire: bytes | None = None) -> None:
        self._raw = raw
        self.data = data
        self.source = source
        self.line = line
        self.wire = wire

    @property
    def raw(self) -> bytes:
        raw = self._raw
        if raw is None:
            raw = self._raw = protojson.encode_event(self.data)
        return raw

    @property
    def flow(self) -> dict[str, Any] | None:
        """The ``flow`` object, or None for lost/agent/debug/node-status events."""
        f = self.data.get("flow")
        return f if type(f) is dict else None

    @property
    def kind(self) -> str:
        """``flow``, ``lost_events``, ``node_status``, ``agent_event`` or ``debug_event``."""
        for k in protojson.EVENT_KINDS:
            if k in self.data:
                return k
        return "empty"

    def with_data(self, data: dict[str, Any]) -> FlowEvent:
        """The same event with changed contents (e.g. attribution filled ``policy_log``).

        ``data`` is validated and re-encoded canonically (keys in declaration order), so
        ``-o jsonpb`` prints exactly what Hubble would print for it. Raises ProtoJSONError.
        """
        result = protojson.EventNormalizer().normalize(data)
        return FlowEvent(protojson.encode_event(result.event), result.event, self.source, self.line)

    @property
    def origin(self) -> str:
        return f"{self.source}:{self.line}"

    def __repr__(self) -> str:
        return f"FlowEvent({self.origin}, {self.kind})"


class _DuplicateField(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateField(key)
        seen.add(key)
    return dict(pairs)


def duplicate_field(raw: bytes) -> str | None:
    """Why Hubble refuses ``raw`` for a key given twice in one object, else None.

    Go's protojson refuses a duplicate field (Hubble skips the line); orjson keeps the last
    value without a word, so the lines the proof could not vouch for are read once more with
    the standard library, which shows every pair. (A line the standard library cannot read is
    orjson's to judge: None.)"""
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateField as dup:
        return f"duplicate field {printable(str(dup))!r} (protojson refuses the line, so does Hubble)"
    except (ValueError, RecursionError):
        return None
    return None


def _never_proven(_line: bytes) -> int:
    return -1


class ProvenEvent(FlowEvent):
    """A flow event whose line is proven to be Hubble's jsonpb bytes at every level
    (:func:`hushflow.flow.protojson.make_line_proof`), so it is printed as it is read. The line
    is parsed only when something reads ``data`` (``observe -o jsonpb`` with no filter never
    does). ``flow_end``: where the flow object ends in ``raw`` (``raw[8:flow_end]``).

    A stage that changes a flow makes a new :class:`FlowEvent` (``with_data``), never edits the
    dict of one of these in place and hands it on: the bytes would no longer say the same."""

    __slots__ = ("_parsed", "flow_end")

    def __init__(self, raw: bytes, flow_end: int, source: str, line: int) -> None:
        self._raw = raw
        self._parsed: dict[str, Any] | None = None
        self.flow_end = flow_end
        self.source = source
        self.line = line
        self.wire = None

    @property
    def data(self) -> dict[str, Any]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = orjson.loads(self.raw)
        return parsed

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        raise AttributeError("a ProvenEvent's data follows its line: make a new FlowEvent (with_data)")


def canonical_form(event: FlowEvent) -> FlowEvent | None:
    """`event` in the canonical spelling, when it is valid protojson written in another one (a
    null for a default below a flow's first level, which the fast path lets through); None when
    it is canonical already or no valid protojson. For a stage that could not process `event`:
    it tries the canonical form once before the flow is skipped (observe, compile, run)."""
    try:
        result = protojson.EventNormalizer().normalize(event.data)
    except (protojson.ProtoJSONError, RecursionError):
        return None
    if not result.changed:
        return None
    return FlowEvent(None, result.event, event.source, event.line)


class FlowReader:
    """Iterate the events of ``sources`` in order (``"-"`` is stdin; gzip is detected by content).

    - ``follow``: after the last source reaches its end, keep reading it as it grows, like
      ``tail -F``: a rotated file (renamed away and recreated, as lumberjack does) is drained and
      the new one read from its start; a truncated file is read again from its start.
      Waiting uses ``sleep(poll_interval)``; ``stop()`` returning True ends the iteration.
    - ``may_match(raw) -> bool``: called with the bytes of each line before parsing; False skips the
      line unparsed. It must be written for the canonical spelling: the first line of each source
      is always parsed, and once a source shows another spelling the pre-check is no longer used
      for it.
    - ``strict``: raise :class:`FlowReadError` at the first bad line instead of skipping it.
      Bad lines: invalid JSON or UTF-8, not an object, no event, a value of the wrong type or an
      unknown enum name (see :mod:`hushflow.flow.protojson`), a line over ``max_line_bytes``.
      Every level of a line is checked (a line the C proof vouches for is canonical throughout;
      any other goes through the full validation); with ``prove_lines=False``, a line already
      in the jsonpb spelling is checked one level into the Flow only, for speed.
    - ``stdin``: a binary stream used for ``"-"`` (default ``sys.stdin.buffer``).
    - ``prove_lines``: hand out a line proven to be Hubble's jsonpb bytes at every level as a
      :class:`ProvenEvent`, parsed only when read (``observe`` prints such lines as they are),
      and refuse any other line that gives a key twice in one object, as protojson does
      (orjson would keep the last one). Without the C proof module, every line is checked
      for duplicates.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        *,
        follow: bool = False,
        strict: bool = False,
        may_match: LinePredicate | None = None,
        stats: ReadStats | None = None,
        stdin: BinaryIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 0.25,
        stop: Callable[[], bool] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        prove_lines: bool = True,
    ) -> None:
        if not sources:
            raise ValueError("no sources given")
        self.sources = [os.fspath(s) for s in sources]
        self.follow = follow
        self.strict = strict
        self.may_match = may_match
        self.stats = stats if stats is not None else ReadStats()
        self._stdin = stdin
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._stop = stop
        self._chunk_size = chunk_size
        self._max_line_bytes = max_line_bytes
        self._normalizer = protojson.EventNormalizer()
        self._prove = (protojson.make_line_proof() or _never_proven) if prove_lines else None

    def __iter__(self) -> Iterator[FlowEvent]:
        last = len(self.sources) - 1
        for i, name in enumerate(self.sources):
            if self.follow and i == last and name != STDIN_NAME:
                yield from self._lines_to_events(name, self._follow_chunks(name))
            else:
                yield from self._lines_to_events(name, self._chunks(name))

    # -- sources -------------------------------------------------------------------------------

    def _open(self, name: str) -> BinaryIO:
        if name == STDIN_NAME:
            return self._stdin if self._stdin is not None else sys.stdin.buffer
        try:
            return open(name, "rb")
        except OSError as e:
            raise FlowReadError(f"{name}: cannot open: {e.strerror or e}") from None

    def _chunks(self, name: str) -> Iterator[bytes]:
        stream = self._open(name)
        try:
            head = self._head(stream, name)
            if head[:2] == _GZIP_MAGIC:
                yield from self._gzip_chunks(head, stream, name)
                return
            while head:
                yield head
                head = _read(stream, self._chunk_size, name)
        finally:
            if name != STDIN_NAME:
                stream.close()

    def _head(self, stream: BinaryIO, name: str) -> bytes:
        """The first chunk, at least the two bytes that tell gzip (a pipe or a small chunk size can
        hand over one byte first), unless the source ends before."""
        head = _read(stream, self._chunk_size, name)
        while 0 < len(head) < len(_GZIP_MAGIC):
            more = _read(stream, self._chunk_size, name)
            if not more:
                break
            head += more
        return head

    def _gzip_chunks(self, head: bytes, stream: BinaryIO, name: str) -> Iterator[bytes]:
        # Concatenated gzip members (as `cat a.gz b.gz` makes) are one stream for gzip(1): follow.
        # Deflate inflates up to ~1,000 times: one read of a 2 MB gzip bomb is 2 GB of output.
        # Each piece handed on is at most one chunk, so memory stays at the line bound (the
        # line layer skips an over-long line without holding it) whatever the ratio.
        limit = self._chunk_size
        decomp = zlib.decompressobj(wbits=31)
        data = head
        try:
            while True:
                while data:
                    out = decomp.decompress(data, limit)
                    if out:
                        yield out
                    if decomp.eof:
                        # The next member, if any, starts in what this one left over.
                        data = decomp.unused_data
                        if data:
                            decomp = zlib.decompressobj(wbits=31)
                    else:
                        data = decomp.unconsumed_tail
                    while len(out) == limit and not decomp.eof and not data:
                        out = decomp.decompress(b"", limit)  # output still held back by zlib
                        if out:
                            yield out
                data = _read(stream, self._chunk_size, name)
                if not data:
                    break
            if not decomp.eof:
                raise FlowReadError(f"{name}: truncated gzip stream")
        except zlib.error as e:
            raise FlowReadError(f"{name}: bad gzip data: {e}") from None

    def _follow_chunks(self, name: str) -> Iterator[bytes]:
        """Chunks of ``name`` forever (until ``stop()``), surviving rotation and truncation."""
        stream: BinaryIO | None = None
        pos = 0
        while True:
            if stream is None:
                try:
                    stream = open(name, "rb")  # noqa: SIM115 - closed below
                    pos = 0
                except FileNotFoundError:
                    stream = None  # between rename and re-create: wait for it
                except OSError as e:
                    raise FlowReadError(f"{name}: cannot open: {e.strerror or e}") from None
            if stream is not None:
                data = self._head(stream, name) if pos == 0 else _read(stream, self._chunk_size, name)
                if data:
                    if pos == 0 and data[:2] == _GZIP_MAGIC:
                        # A compressed (finished, rotated) file cannot grow: read it once.
                        try:
                            yield from self._gzip_chunks(data, stream, name)
                        finally:
                            stream.close()
                        return
                    pos += len(data)
                    yield data
                    continue
                # At the end: has the file been truncated, or replaced by a new one?
                try:
                    size = os.fstat(stream.fileno()).st_size
                    now = os.stat(name)
                except FileNotFoundError:
                    now = None
                    size = pos
                if size < pos:
                    stream.seek(0)
                    pos = 0
                    yield _TRUNCATED
                    continue
                if now is None or not os.path.samestat(now, os.fstat(stream.fileno())):
                    # Rotated: the old file is drained (we are at its end); take the new one.
                    stream.close()
                    stream = None
                    yield _ROTATED
                    if now is not None:
                        continue
            if self._stop is not None and self._stop():
                if stream is not None:
                    stream.close()
                return
            self._sleep(self._poll_interval)

    # -- lines ---------------------------------------------------------------------------------

    def _lines_to_events(self, name: str, chunks: Iterable[bytes]) -> Iterator[FlowEvent]:
        stats = self.stats
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        is_canonical = protojson.is_canonical_flow_event
        max_line = self._max_line_bytes
        may_match = self.may_match
        prove = self._prove
        lineno = 0
        pending = b""
        overlong = False  # inside a line longer than max_line: skip to its end
        at_start = True  # before the first 3 bytes of the file: a UTF-8 BOM there is no content
        check: LinePredicate | None = None  # the first line of a source is always parsed

        converted_before = stats.converted
        for chunk in chunks:
            if chunk is _TRUNCATED or chunk is _ROTATED:
                # A partial last line of a rotated file is a whole line; of a truncated one, garbage.
                if pending and chunk is _ROTATED:
                    lineno += 1
                    yield from self._one_line(pending, name, lineno, check)
                pending = b""
                overlong = False
                lineno = 0  # line numbers are those of the file now at that path
                at_start = True
                continue
            if overlong:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                overlong = False
                chunk = chunk[nl + 1 :]
            buf = pending + chunk if pending else chunk
            if at_start:
                # One BOM, however the first bytes are cut into chunks (a second one is content).
                if buf[:3] == _UTF8_BOM:
                    buf = buf[3:]
                    at_start = False
                elif len(buf) >= 3 or not _UTF8_BOM.startswith(buf):
                    at_start = False
            lines = buf.split(b"\n")
            pending = lines.pop()
            if b"\r" in buf:
                lines = [ln.rstrip(b"\r") for ln in lines]
            for raw in lines:
                lineno += 1
                if not raw:
                    continue
                stats.lines += 1
                if check is not None and not check(raw):
                    stats.prechecked_out += 1
                    continue
                if len(raw) > max_line:
                    self._bad(name, lineno, f"line longer than {max_line} bytes")
                    continue
                if prove is not None:
                    flow_end = prove(raw)
                    if flow_end > 0:
                        stats.events += 1
                        yield ProvenEvent(raw, flow_end, name, lineno)
                        continue
                    duplicate = duplicate_field(raw)
                    if duplicate is not None:
                        self._bad(name, lineno, duplicate)
                        continue
                try:
                    data = loads(raw)
                except decode_error as e:
                    if raw.strip():  # a line of blanks is no event, not a bad line
                        self._bad(name, lineno, f"invalid JSON: {e}")
                    else:
                        stats.lines -= 1
                    continue
                # With the proof on, a line it did not vouch for is validated at every level
                # (Hubble refuses a line protojson cannot read, whatever the output format).
                if prove is None and is_canonical(data):
                    stats.events += 1
                    yield FlowEvent(raw, data, name, lineno)
                else:
                    event = self._convert(data, raw, name, lineno)
                    if event is not None:
                        stats.events += 1
                        yield event
            # A CR ending the pending part may be the first half of a CRLF: not part of the line.
            if len(pending) > max_line and not (len(pending) == max_line + 1 and pending[-1:] == b"\r"):
                lineno += 1
                stats.lines += 1  # a line, as when its end is in the same chunk
                self._bad(name, lineno, f"line longer than {max_line} bytes")
                pending = b""
                overlong = True
            # The first chunk of a source is parsed in full; the pre-check is used from then on,
            # unless the source turned out not to be in the canonical spelling.
            if check is None and may_match is not None and stats.converted == converted_before:
                check = may_match
        if pending and not overlong:
            lineno += 1
            yield from self._one_line(pending.rstrip(b"\r"), name, lineno, None)

    def _one_line(
        self, raw: bytes, name: str, lineno: int, check: LinePredicate | None
    ) -> Iterator[FlowEvent]:
        if not raw.strip():
            return
        self.stats.lines += 1
        if check is not None and not check(raw):
            self.stats.prechecked_out += 1
            return
        if len(raw) > self._max_line_bytes:
            self._bad(name, lineno, f"line longer than {self._max_line_bytes} bytes")
            return
        if self._prove is not None:
            flow_end = self._prove(raw)
            if flow_end > 0:
                self.stats.events += 1
                yield ProvenEvent(raw, flow_end, name, lineno)
                return
            duplicate = duplicate_field(raw)
            if duplicate is not None:
                self._bad(name, lineno, duplicate)
                return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            self._bad(name, lineno, f"invalid JSON: {e}")
            return
        if self._prove is None and protojson.is_canonical_flow_event(data):
            self.stats.events += 1
            yield FlowEvent(raw, data, name, lineno)
            return
        event = self._convert(data, raw, name, lineno)
        if event is not None:
            self.stats.events += 1
            yield event

    def _convert(self, data: Any, raw: bytes, name: str, lineno: int) -> FlowEvent | None:
        """Slow path: validate, convert to the canonical form, count lost events."""
        try:
            result = self._normalizer.normalize(data)
        except protojson.ProtoJSONError as e:
            self._bad(name, lineno, str(e))
            return None
        if result.unknown_fields:
            self.stats.unknown_fields.update(result.unknown_fields)
        canonical = result.event
        lost = canonical.get("lost_events")
        if lost is not None:
            self.stats.lost_events_lines += 1
            self.stats.events_lost += int(lost.get("num_events_lost", "0"))
        if result.changed:
            self.stats.converted += 1
            raw = protojson.encode_event(canonical)
        return FlowEvent(raw, canonical, name, lineno)

    def _bad(self, name: str, lineno: int, reason: str) -> None:
        bad = BadLine(name, lineno, reason)
        if self.strict:
            raise FlowReadError(str(bad))
        self.stats.add_bad(bad)


# Markers passed from _follow_chunks to _lines_to_events (compared by identity).
_TRUNCATED = bytes(bytearray(b"<truncated>"))
_ROTATED = bytes(bytearray(b"<rotated>"))


def _read(stream: BinaryIO, size: int, name: str) -> bytes:
    try:
        if name == STDIN_NAME:
            # A pipe (`hubble observe -f -o jsonpb | hushflow ...`): hand on what has arrived now
            # instead of waiting for a full chunk.
            read1 = getattr(stream, "read1", None)
            if read1 is not None:
                return read1(size) or b""
        return stream.read(size) or b""
    except (OSError, EOFError) as e:
        raise FlowReadError(f"{name}: read error: {e}") from None


def read_events(
    sources: Sequence[str | os.PathLike[str]],
    *,
    follow: bool = False,
    strict: bool = False,
    may_match: LinePredicate | None = None,
    stats: ReadStats | None = None,
    stdin: BinaryIO | None = None,
) -> Iterator[FlowEvent]:
    """Shorthand for ``iter(FlowReader(sources, ...))``."""
    return iter(
        FlowReader(sources, follow=follow, strict=strict, may_match=may_match, stats=stats, stdin=stdin)
    )


def events_from_bytes(data: bytes, *, strict: bool = False) -> list[FlowEvent]:
    """Parse a whole in-memory JSON-lines document (source name ``-``)."""
    return list(FlowReader([STDIN_NAME], strict=strict, stdin=io.BytesIO(data)))
