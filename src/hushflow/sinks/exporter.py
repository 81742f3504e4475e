"""Hubble's flow exporter file, written by hushflow (`hushflow run --export FILE`).

What Hubble's exporter writes (cilium ``pkg/hubble/exporter``), and so what this module writes:

- One ``observer.ExportEvent`` per line, encoded by Go's ``json.Encoder`` (its ``MarshalJSON`` is
  protojson with proto names; the encoder compacts it, escapes ``<``, ``>``, ``&``, U+2028/9 and
  ends the line with ``\\n``): the same bytes as ``hubble observe -o jsonpb`` prints for the flow
  (``flow`` first, then ``node_name`` and ``time``).
- A flow's line takes ``node_name`` and ``time`` from the flow itself (after the field mask, so a
  mask without ``time`` leaves the line without one), not from the response it came in.
- Lost, agent and debug events are written too, with their own time and the node's name; there
  is no node-status event in an agent's export (only Relay makes them): hushflow writes none.
- The allow/deny FlowFilters decide before the field mask (``filters.Apply`` on the event);
  the field mask cuts only flows, allocating the intermediate messages of a path even when they
  end up empty (``"source":{}``).
- Files rotate like lumberjack v2, which Hubble's exporter writes through: a write that would take
  the file past the size limit renames it to ``name-2006-01-02T15-04-05.000.ext`` (UTC) first; the
  newest ``max_backups`` backups are kept (0: all), the others deleted; with ``compress`` the kept
  ones are gzipped to ``....ext.gz``. A line longer than the limit is refused (lumberjack returns
  an error for it). Unlike lumberjack, two rotations in the same millisecond never overwrite a
  backup: the second name is a millisecond later.

The pipeline only filters, masks and encodes (``FlowExporter.offer``): a thread writes, so a slow
or failing disk never holds the pipeline. What waits for the disk is bounded
(``max_backlog_bytes``): past it, lines are counted and dropped, never queued without end. A
failing write is retried every flush interval, reported once per kind of failure and again when
writes work again.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
from google.protobuf.descriptor import Descriptor

from hushflow.flow.field_mask import FieldMaskTree, field_mask_tree
from hushflow.flow.protojson import (
    FLOW_SHAPE_ERRORS,
    ProtoJSONError,
    canonical_event,
    go_json_escape,
    make_canonical_event_check,
    make_line_proof,
)
from hushflow.proto import FLOW_DESCRIPTOR

STDOUT = "-"
DEFAULT_MAX_SIZE_MB = 10.0  # hubble-export-file-max-size-mb
DEFAULT_MAX_BACKUPS = 5  # hubble-export-file-max-backups
MEGABYTE = 1024 * 1024  # lumberjack's megabyte
FLUSH_INTERVAL = 0.5  # seconds: `tail -F` sees a flow at most this late
DEFAULT_MAX_BACKLOG_BYTES = 32 * MEGABYTE  # lines waiting for a failing disk, at most
_BATCH_BYTES = 256 * 1024  # the writer wakes when this much waits
# One write of at most this many bytes: the writer thread competes for the GIL with the pipeline
# and gets it back only every switch interval (5 ms), so it writes a lot each time it has it
# (measured: 256 KB writes kept up with 7,000 flows/s, 4 MB ones with the pipeline's 60,000).
_WRITE_BYTES = 4 * MEGABYTE
_ROOM_WAIT = 1.0  # seconds a caller waits for room while the writer is behind (not failing)
_COMPRESS_SUFFIX = ".gz"
# Flows name pods, IPs, DNS names and policies: a new file is the owner's only (lumberjack, which
# writes Hubble's, creates 0644); a rotated one keeps the mode of the file it replaces, as
# lumberjack does, so a `chmod` for a shipper running as another user lasts.
_NEW_FILE_MODE = 0o600
_BACKUP_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}")
_FLOW_LINE = b'{"flow":'

#: Why an event was not exported (the `reason` of hushflow_export_errors_total).
NOT_ENCODABLE = "unencodable"  # no valid Hubble event (hostile input that reached this far)
TOO_LARGE = "too-large"  # one line longer than --export-max-size-mb (lumberjack refuses it too)
BACKLOG_FULL = "backlog-full"  # the disk failed for so long that the lines waiting filled the backlog
UNWRITTEN_AT_EXIT = "unwritten-at-exit"  # still failing when the run ended
_EXPORTED_KINDS = ("lost_events", "agent_event", "debug_event")
_NOT_ENCODABLE_ERRORS: tuple[type[BaseException], ...] = (ProtoJSONError, RecursionError, *FLOW_SHAPE_ERRORS)


# -- field masks on the dict form ---------------------------------------------------------------

#: A compiled field mask: per message, the masked fields in declaration order, each with the mask
#: of its own fields (None: the whole field).
CompiledMask = tuple[tuple[str, "CompiledMask | None"], ...]


def parse_field_mask(text: str) -> tuple[str, ...]:
    """``--export-field-mask`` (``hubble-export-fieldmask``): paths separated by commas or spaces."""
    return tuple(part for part in re.split(r"[\s,]+", text) if part)


def compile_field_mask(paths: Sequence[str], descriptor: Descriptor = FLOW_DESCRIPTOR) -> CompiledMask:
    """The mask of ``paths`` over Flow; ValueError for a path that names no field (as Hubble's
    ``fieldmaskpb.New`` refuses it)."""
    return _compiled(field_mask_tree(descriptor, paths), descriptor)


def _compiled(tree: FieldMaskTree, descriptor: Descriptor) -> CompiledMask:
    order = {fd.name: index for index, fd in enumerate(descriptor.fields)}
    items = []
    for name in sorted(tree, key=order.__getitem__):
        sub = tree[name]
        items.append((name, _compiled(sub, descriptor.fields_by_name[name].message_type) if sub else None))
    return tuple(items)


def mask_message(message: Mapping[str, Any], mask: CompiledMask) -> dict[str, Any]:
    """The fields of ``mask`` copied from a canonical message dict, as Hubble's ``fieldmask.Copy``:
    a field with masked sub-fields is always there (maybe ``{}``), a whole field only when set."""
    out: dict[str, Any] = {}
    for name, sub in mask:
        if sub is not None:
            inner = message.get(name)
            out[name] = mask_message(inner if isinstance(inner, Mapping) else {}, sub)
        elif name in message:
            out[name] = message[name]
    return out


# -- the lines ------------------------------------------------------------------------------------


class ExportEncoder:
    """Builds the exporter line of an event dict (canonical GetFlowsResponse form)."""

    def __init__(self, *, mask: CompiledMask | None = None, node_name: str = "") -> None:
        self.mask = mask or None
        self.node_name = node_name
        self._is_canonical = make_canonical_event_check()
        # The C proof that bytes are Hubble's jsonpb at every level: most flows are encoded as
        # they are and proven (~6 us) instead of checked in Python first (~17 us a flow).
        self._prove = make_line_proof()

    def line(self, data: Mapping[str, Any]) -> bytes | None:
        """The line (with its newline); None for an event the exporter does not write (node
        status). Raises ProtoJSONError (or a shape error) for what is no valid Hubble event."""
        flow = data.get("flow")
        if isinstance(flow, dict):
            if self.mask is not None:
                flow = mask_message(flow, self.mask)
            event: dict[str, Any] = {"flow": flow}
            # Hubble: ExportEvent{Time: flow.GetTime(), NodeName: flow.GetNodeName()}.
            node_name = flow.get("node_name")
            if node_name:
                event["node_name"] = node_name
            flow_time = flow.get("time")
            if flow_time is not None:
                event["time"] = flow_time
            prove = self._prove
            if prove is not None:
                try:
                    body = go_json_escape(orjson.dumps(event))
                except (TypeError, ValueError):  # no JSON at all: the slow path says why
                    body = b""
                if body and prove(body) >= 0:
                    return body + b"\n"
        else:
            for kind in _EXPORTED_KINDS:
                if kind in data:
                    break
            else:
                return None
            event = {kind: data[kind]}
            node_name = data.get("node_name") or self.node_name  # Hubble: the agent's own node name
            if node_name:
                event["node_name"] = node_name
            if data.get("time") is not None:
                event["time"] = data["time"]
        return go_json_escape(orjson.dumps(canonical_event(event, self._is_canonical))) + b"\n"


# -- the files -------------------------------------------------------------------------------------


class LineTooLarge(Exception):
    """One line longer than the file may grow (lumberjack: "write length exceeds maximum file size")."""


def _go_ext(base: str) -> str:
    """Go's ``filepath.Ext``: from the last dot of the name (``.log``; ``""`` without one)."""
    dot = base.rfind(".")
    return base[dot:] if dot >= 0 else ""


def backup_name(path: str, when: float) -> str:
    """lumberjack's backup name: ``name-2006-01-02T15-04-05.000.ext``, the rotation time in UTC."""
    directory, base = os.path.split(path)
    ext = _go_ext(base)
    prefix = base[: len(base) - len(ext)]
    moment = datetime.fromtimestamp(when, UTC)
    stamp = moment.strftime("%Y-%m-%dT%H-%M-%S") + f".{moment.microsecond // 1000:03d}"
    return os.path.join(directory, f"{prefix}-{stamp}{ext}")


def backups_of(path: str) -> list[str]:
    """The backups lumberjack would see of ``path`` (compressed or not), newest first."""
    directory, base = os.path.split(path)
    ext = _go_ext(base)
    prefix = base[: len(base) - len(ext)] + "-"
    found: list[tuple[str, str]] = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    for name in names:
        for suffix in (ext, ext + _COMPRESS_SUFFIX):
            if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix) - 1:
                stamp = name[len(prefix) : len(name) - len(suffix)]
                if _BACKUP_STAMP.fullmatch(stamp) and os.path.isfile(os.path.join(directory, name)):
                    found.append((stamp, name))
                    break
    found.sort(reverse=True)
    return [os.path.join(directory, name) for _stamp, name in found]


class RotatingFile:
    """The export file, rotated by size like lumberjack. Used by one thread (the writer)."""

    def __init__(self, path: str, *, max_bytes: int, max_backups: int = DEFAULT_MAX_BACKUPS,
                 compress: bool = False, clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 1:
            raise ValueError("the export file's size limit must be at least one byte")
        self.path = path
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self.compress = compress
        self.clock = clock
        self.rotations = 0
        self.mill_errors: list[str] = []  # deleting or compressing backups that failed (reported)
        self._fd: int | None = None
        self._size = 0
        self._partial = 0  # bytes of the first waiting line already written

    def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
        """Write ``lines`` from the left, popping each one when it is all written (and telling
        ``written``). Raises OSError with the lines not written still in ``lines`` (a line cut
        by a full disk goes on where it stopped), LineTooLarge with that line first."""
        while lines:
            line = lines[0]
            if self._partial == 0:
                if len(line) > self.max_bytes:
                    raise LineTooLarge(f"a line of {len(line)} bytes is longer than the export file may grow "
                                       f"({self.max_bytes} bytes)")
                if self._fd is None:
                    self._open_existing_or_new(len(line))
                if self._size + len(line) > self.max_bytes:
                    self._rotate()
            fd = self._fd
            if fd is None:  # a line cut by an error before: the file is open still (never closed on errors)
                self._open_existing_or_new(len(line))
                fd = self._fd
                assert fd is not None
            room = self.max_bytes - self._size - (len(line) - self._partial)
            parts = [line[self._partial :] if self._partial else line]
            total = len(parts[0])
            index = 1
            while index < len(lines) and total < _WRITE_BYTES and len(lines[index]) <= room:
                parts.append(lines[index])
                room -= len(lines[index])
                total += len(lines[index])
                index += 1
            count = os.write(fd, b"".join(parts) if len(parts) > 1 else parts[0])
            self._size += count
            first_rest = len(line) - self._partial
            if count < first_rest:
                self._partial += count
                continue
            count -= first_rest
            written(lines.popleft())
            while lines and count >= len(lines[0]):
                count -= len(lines[0])
                written(lines.popleft())
            self._partial = count

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _open_existing_or_new(self, first: int) -> None:
        # lumberjack: append to the file when this write keeps it under the limit, else rotate.
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._open_new()
            return
        if info.st_size + first >= self.max_bytes:
            self._rotate()
            return
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError:
            self._open_new()  # lumberjack: an old file that does not open is moved aside
            return
        self._size = info.st_size

    def _open_new(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        mode = _NEW_FILE_MODE
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            pass
        else:
            mode = info.st_mode & 0o7777
            os.rename(self.path, self._free_backup_name())
            self.rotations += 1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._size = 0

    def _free_backup_name(self) -> str:
        when = self.clock()
        while True:
            name = backup_name(self.path, when)
            if not os.path.exists(name) and not os.path.exists(name + _COMPRESS_SUFFIX):
                return name
            when += 0.001

    def _rotate(self) -> None:
        self.close()
        self._open_new()
        self._mill()

    def _mill(self) -> None:
        """Delete the backups past ``max_backups``, compress the others (lumberjack's mill)."""
        if not self.max_backups and not self.compress:
            return
        kept: list[str] = []
        stems: set[str] = set()
        for backup in backups_of(self.path):
            stem = backup.removesuffix(_COMPRESS_SUFFIX)
            stems.add(stem)  # a file and its .gz (a compression cut short) count once
            if self.max_backups and len(stems) > self.max_backups:
                try:
                    os.remove(backup)
                except OSError as exc:
                    self.mill_errors.append(f"cannot delete the old export file {backup}: {exc.strerror or exc}")
            else:
                kept.append(backup)
        if self.compress:
            for backup in kept:
                if not backup.endswith(_COMPRESS_SUFFIX):
                    self._compress(backup)

    def _compress(self, source: str) -> None:
        target = source + _COMPRESS_SUFFIX
        try:
            mode = os.stat(source).st_mode & 0o7777
            with open(source, "rb") as raw, open(target, "wb") as out:
                os.chmod(target, mode)
                with gzip.GzipFile(fileobj=out, mode="wb", filename="", mtime=0) as packed:
                    shutil.copyfileobj(raw, packed, 1 << 20)
            os.remove(source)
        except OSError as exc:
            self.mill_errors.append(f"cannot compress the export file {source}: {exc.strerror or exc}")
            with contextlib.suppress(OSError):
                os.remove(target)


class StreamTarget:
    """``--export -``: standard output, never rotated nor closed."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.mill_errors: list[str] = []

    def drain(self, lines: deque[bytes], written: Callable[[bytes], None]) -> None:
        if lines:
            self.stream.write(b"".join(lines))  # a buffered stream writes all of it or raises
            self.stream.flush()
            while lines:
                written(lines.popleft())

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


def check_export_path(path: str) -> None:
    """Raise ValueError (worded for the user) when ``path`` cannot be the export file: a directory,
    a device, a place it cannot be created or written (tried for real, as the run will write)."""
    if path == STDOUT:
        return
    if not path or path.endswith(os.sep):
        raise ValueError("name a file (e.g. /var/run/hushflow/export.log)")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory: name a file in it (e.g. {os.path.join(path, 'export.log')})")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{path} is not a regular file (the export rotates by renaming the file)")
    directory = os.path.dirname(path) or "."
    existed = os.path.exists(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _NEW_FILE_MODE)
        os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return  # a full disk is no mistake: the run starts and retries its writes
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        os.remove(path)  # lumberjack creates it with the first line


# -- the exporter ------------------------------------------------------------------------------------


def failure_kind(exc: OSError) -> str:
    """A word for a failed write: disk-full, permission, or io."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk-full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission"
    return "io"


@dataclass(slots=True)
class ExportStats:
    flows: int = 0  # flow lines written
    lines: int = 0  # every line written (flows, lost, agent and debug events)
    write_failures: int = 0  # write attempts that failed (retried)
    not_exported: Counter[str] = field(default_factory=Counter)  # events lost, by reason
    rotations: int = 0


class FlowExporter:
    """Filters, masks and encodes each processed event in the caller's thread (``offer``) and
    writes the lines from its own thread, at least every ``flush_interval`` seconds."""

    def __init__(
        self,
        target: RotatingFile | StreamTarget,
        *,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        encoder: ExportEncoder | None = None,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        flush_interval: float = FLUSH_INTERVAL,
        report: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.target = target
        self.keep = keep
        self.encoder = encoder or ExportEncoder()
        self.max_backlog_bytes = max_backlog_bytes
        self.flush_interval = flush_interval
        self.report = report
        self.stats = ExportStats()
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[bytes] = []
        self._held = 0  # bytes offered and not written yet (pending and the writer's backlog)
        self._closing = False
        self._close_timeout = 10.0
        self._backlog: deque[bytes] = deque()  # the writer's
        self._failing: str | None = None  # the kind of the failure writes are in
        self._stalled = False  # the writer made no room while a caller waited: drop, do not wait
        self._reported: set[str] = set()
        self._mill_reported = 0
        self._thread: threading.Thread | None = None

    # -- the pipeline's side

    def offer(self, data: Mapping[str, Any]) -> None:
        """One processed (enriched) event: written when the filters keep it. Waits only while the
        writer is behind but working (at most a second, then never until it writes again); never
        while writes fail."""
        keep = self.keep
        if keep is not None and not keep(data):
            return
        try:
            line = self.encoder.line(data)
        except _NOT_ENCODABLE_ERRORS:
            self._lost(NOT_ENCODABLE, "an event that is no valid Hubble event was not exported")
            return
        if line is None:
            return
        size = len(line)
        with self._cond:
            if self._held + size > self.max_backlog_bytes and self._failing is None and not self._stalled:
                # The writer is behind, not failing (a replay reads faster than a disk writes): wait
                # for it, once; a writer that makes no progress in that time is stalled (a hung
                # mount) and lines are dropped, without waiting, until it writes again.
                self._cond.notify()
                if not self._cond.wait_for(self._room_or_failing(size), _ROOM_WAIT):
                    self._stalled = True
            full = self._held + size > self.max_backlog_bytes
            if not full:
                self._pending.append(line)
                self._held += size
                if self._held >= _BATCH_BYTES:
                    self._cond.notify()
        if full:
            self._lost(BACKLOG_FULL, f"the export is {self.max_backlog_bytes // MEGABYTE} MB behind its file "
                                     "(writes are failing or hang): further events are dropped and counted "
                                     "(hushflow_export_errors_total) until writes work again")

    def _room_or_failing(self, size: int) -> Callable[[], bool]:
        return lambda: self._held + size <= self.max_backlog_bytes or self._failing is not None

    def _lost(self, reason: str, message: str) -> None:
        with self._cond:  # the pipeline and the writer both count
            self.stats.not_exported[reason] += 1
        self._say_once(reason, message)

    def _say_once(self, kind: str, message: str) -> None:
        if kind not in self._reported:
            self._reported.add(kind)
            self.report(f"export: {message}")

    # -- the writer's side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hushflow-export", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> int:
        """Write what waits (trying until ``timeout`` while writes fail), close the file, and
        return the number of lines that could not be written (counted as unwritten-at-exit)."""
        with self._cond:
            self._closing = True
            self._close_timeout = timeout
            self._cond.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
        else:
            self._write_round()
        left = len(self._backlog) + len(self._pending)
        if left:
            self.stats.not_exported[UNWRITTEN_AT_EXIT] += left
            self.report(f"export: {left} line(s) could not be written before the end ({self._failing})")
        self.target.close()
        return left

    def flush(self) -> None:
        """Write what waits now, in the caller's thread (tests, and runs without the writer)."""
        self._write_round()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closing and self._held < _BATCH_BYTES:
                    self._cond.wait(self.flush_interval)
                closing = self._closing
            self._write_round()
            if closing:
                deadline = time.monotonic() + self._close_timeout
                while self._failing and (self._backlog or self._pending) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    self._write_round()
                return

    def _write_round(self) -> None:
        with self._cond:
            taken, self._pending = self._pending, []
        backlog = self._backlog
        backlog.extend(taken)
        done_bytes = 0
        stats = self.stats

        def written(line: bytes) -> None:
            nonlocal done_bytes
            done_bytes += len(line)
            stats.lines += 1
            if line.startswith(_FLOW_LINE):
                stats.flows += 1

        try:
            while True:
                try:
                    self.target.drain(backlog, written)
                    break
                except LineTooLarge as exc:
                    line = backlog.popleft()
                    done_bytes += len(line)
                    self._lost(TOO_LARGE, f"{exc}: such lines are dropped and counted (hushflow_export_errors_total); "
                                          "raise --export-max-size-mb")
        except OSError as exc:
            stats.write_failures += 1
            kind = failure_kind(exc)
            if self._failing != kind:
                with self._cond:
                    self._failing = kind
                    self._cond.notify_all()  # a caller waiting for room stops waiting
                self._say_once(f"write:{kind}", f"cannot write {getattr(self.target, 'path', 'the export')} "
                                                f"({exc.strerror or exc}); the run goes on and the write is retried "
                                                f"every {self.flush_interval:g} s")
        else:
            if self._failing is not None:
                self.report("export: writes work again")
                self._reported.discard(f"write:{self._failing}")
                self._reported.discard(BACKLOG_FULL)
                self._failing = None
        finally:
            if done_bytes:
                with self._cond:
                    self._held -= done_bytes
                    self._stalled = False
                    self._cond.notify_all()  # a caller waiting for room
            rotations = getattr(self.target, "rotations", 0)
            stats.rotations = rotations
            mill = self.target.mill_errors
            for message in mill[self._mill_reported :]:
                self.report(f"export: {message}")
            self._mill_reported = len(mill)


def open_export(
    path: str,
    *,
    max_size_mb: float = DEFAULT_MAX_SIZE_MB,
    max_backups: int = DEFAULT_MAX_BACKUPS,
    compress: bool = False,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    field_mask: Sequence[str] = (),
    node_name: str = "",
    stdout: BinaryIO | None = None,
    report: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.time,
) -> FlowExporter:
    """The exporter of ``--export PATH`` (``-``: ``stdout``). Raises ValueError for a bad field mask."""
    mask = compile_field_mask(field_mask) if field_mask else None
    target: RotatingFile | StreamTarget
    if path == STDOUT:
        import sys

        target = StreamTarget(stdout if stdout is not None else sys.stdout.buffer)
    else:
        target = RotatingFile(path, max_bytes=max(1, int(max_size_mb * MEGABYTE)), max_backups=max_backups,
                              compress=compress, clock=clock)
    return FlowExporter(target, keep=keep, encoder=ExportEncoder(mask=mask, node_name=node_name), report=report)
