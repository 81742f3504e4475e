"""`run --dnstap ADDRESS`: hushflow listens, DNS servers connect and send their answers.

CoreDNS's `dnstap` plugin (and NodeLocal DNSCache, the same plugin), Unbound and BIND are
dnstap *senders*: they connect to a unix socket (or TCP) and write Frame Streams. This module
is that listener: one thread accepts on each address, one thread reads each connection, feeds
a `FrameStreamReader`, parses each data frame (`parse_dnstap`, outside any lock) and hands the
learnable messages of one read, as a batch, to `deliver` (the daemon's, which takes its lock
once per batch: the learner is not thread-safe).

Hostile senders: a connection that breaks Frame Streams (an oversized frame, a bad control
frame, a frame out of order) or sends data that is no dnstap message is counted and
dropped; the other connections and the listener go on. A dnstap message whose DNS payload is
unusable (cut short; absent, as from a CoreDNS without `full`) is counted and skipped, and the
connection goes on. A connection that has not started
(READY/START) within `handshake_timeout` seconds is dropped, and at most `max_connections`
are served at once (the next ones are closed at accept), so idle connections cannot take every
slot for ever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hushflow.flow.dnstap import (
    BAD_PROTOBUF,
    DEFAULT_MAX_FRAME,
    DnstapError,
    DnstapMessage,
    FrameStreamError,
    FrameStreamReader,
    parse_dnstap,
)

#: The message kinds of hushflow_dnstap_messages_total.
LEARNED = "learned"  # an answer for an endpoint hushflow knows (by its address)
UNATTRIBUTED = "unattributed"  # learned for the denies, but no flow or pod names the address that asked
IGNORED = "ignored"  # a query, a failure, an answer with no address: nothing to learn
MALFORMED = "malformed"  # no dnstap message (counted by reason too)
MESSAGE_KINDS = (LEARNED, UNATTRIBUTED, IGNORED, MALFORMED)

#: Answers handed to the daemon at once (~10 us each under its lock: a few ms at most).
_BATCH = 256
#: The socket's mode: the DNS server's user (or group) must write it; nobody else should, as
#: whoever writes it tells hushflow what names resolve to.
SOCKET_MODE = 0o660


@dataclass(frozen=True, slots=True)
class DnstapAddress:
    text: str
    path: str = ""  # unix
    host: str = ""  # tcp
    port: int = 0


def parse_dnstap_address(text: str) -> DnstapAddress:
    """`unix:///path/to.sock` or `tcp://HOST:PORT`; ValueError says what is wrong."""
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket needs an absolute path (unix:///var/run/hushflow/dnstap.sock)")
        return DnstapAddress(text, path=path)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError(f"{text!r}: a TCP address is tcp://HOST:PORT (tcp://127.0.0.1:6000)")
        return DnstapAddress(text, host=parts.hostname, port=port)
    raise ValueError(f"{text!r}: the address is unix:///PATH or tcp://HOST:PORT")


@dataclass(slots=True)
class DnstapStats:
    """The listener's counts, cumulative (the daemon follows them into its metrics)."""

    messages: Counter[str] = field(default_factory=Counter)  # kind -> messages
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> messages or streams
    connections: int = 0  # open now
    accepted: int = 0
    dropped: int = 0  # closed by hushflow for what they sent (or refused at the limit)
    last_problem: str = ""


#: What the daemon does with the learnable messages of one read: returns how many it could
#: attribute to a known endpoint (the rest are unattributed).
Deliver = Callable[[Sequence[DnstapMessage], float], int]


class DnstapServer:
    def __init__(
        self,
        addresses: Sequence[str],
        deliver: Deliver,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_connections: int = 64,
        handshake_timeout: float = 10.0,
        report: Callable[[str], None] = lambda _line: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = [parse_dnstap_address(text) for text in addresses]
        self.deliver = deliver
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.report = report
        self.monotonic = monotonic
        self.stats = DnstapStats()
        self._stats_lock = threading.Lock()
        self._stopping = threading.Event()
        self._listeners: list[tuple[DnstapAddress, socket.socket]] = []
        self._connections: set[socket.socket] = set()
        self._reported: dict[str, float] = {}

    # -- life ----------------------------------------------------------------------------------

    def bind(self) -> None:
        """Listen on every address (OSError says which could not be)."""
        for address in self.addresses:
            try:
                self._listeners.append((address, self._listen(address)))
            except OSError as exc:
                self.close()
                raise OSError(f"--dnstap {address.text}: {exc.strerror or exc}") from None

    def _listen(self, address: DnstapAddress) -> socket.socket:
        if address.path:
            with contextlib.suppress(FileNotFoundError):
                # A socket left by an earlier run goes; any other file is the user's: refused.
                if stat.S_ISSOCK(os.lstat(address.path).st_mode):
                    os.unlink(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address.path)
                os.chmod(address.path, SOCKET_MODE)
            except OSError:
                sock.close()
                raise
        else:
            family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address.host, address.port))
            except OSError:
                sock.close()
                raise
        sock.listen(16)
        sock.settimeout(0.5)
        return sock

    def snapshot(self) -> DnstapStats:
        """A copy of the counts, taken under their lock (the connection threads write them)."""
        with self._stats_lock:
            stats = self.stats
            return DnstapStats(Counter(stats.messages), Counter(stats.malformed), stats.connections, stats.accepted,
                               stats.dropped, stats.last_problem)

    def bound_port(self, index: int = 0) -> int:
        """The TCP port listened on (an address of port 0 gets a free one)."""
        return int(self._listeners[index][1].getsockname()[1])

    def start(self) -> None:
        for address, sock in self._listeners:
            threading.Thread(target=self._accept_loop, args=(address, sock), name=f"hushflow-dnstap-{address.text}",
                             daemon=True).start()

    def close(self) -> None:
        """Stop accepting, end every connection, remove the sockets' files."""
        self._stopping.set()
        for address, sock in self._listeners:
            sock.close()
            if address.path:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(address.path).st_mode):
                        os.unlink(address.path)
        self._listeners = []
        with self._stats_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- threads -------------------------------------------------------------------------------

    def _accept_loop(self, address: DnstapAddress, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.1)  # EMFILE and the like: try again, do not spin
                continue
            with self._stats_lock:
                full = len(self._connections) >= self.max_connections
                if full:
                    self.stats.dropped += 1
                else:
                    self._connections.add(conn)
                    self.stats.connections = len(self._connections)
                    self.stats.accepted += 1
            if full:
                conn.close()
                self._problem(address, f"more than {self.max_connections} senders at once: a connection was refused")
                continue
            threading.Thread(target=self._serve, args=(address, conn), name="hushflow-dnstap-conn", daemon=True).start()

    def _serve(self, address: DnstapAddress, conn: socket.socket) -> None:
        reader = FrameStreamReader(self.max_frame)
        deadline = self.monotonic() + self.handshake_timeout
        try:
            conn.settimeout(0.5)
            while not self._stopping.is_set():
                try:
                    data = conn.recv(262_144)
                except TimeoutError:
                    if not reader.started and self.monotonic() > deadline:
                        self._drop(address, "no-handshake", f"no START within {self.handshake_timeout:g} s")
                        return
                    continue
                if not data:
                    return  # the sender went away (a restart of the DNS server)
                read_at = self.monotonic()
                try:
                    payloads, replies, finished = reader.feed(data)
                except FrameStreamError as exc:
                    self._drop(address, exc.reason, str(exc))
                    return
                if replies:
                    conn.sendall(replies)
                if payloads and not self._messages(address, payloads, read_at):
                    return
                if finished:
                    return
        except OSError:
            return  # reset by the peer, or closed by close()
        finally:
            with self._stats_lock:
                self._connections.discard(conn)
                self.stats.connections = len(self._connections)
            conn.close()

    def _messages(self, address: DnstapAddress, payloads: list[bytes], read_at: float) -> bool:
        """Parse and deliver the data frames of one read; False when the connection is dropped."""
        learnable: list[DnstapMessage] = []
        ignored = 0
        bad: DnstapError | None = None
        skipped: list[DnstapError] = []
        for payload in payloads:
            try:
                message = parse_dnstap(payload)
            except DnstapError as exc:
                if exc.reason != BAD_PROTOBUF:
                    # A dnstap message whose DNS payload is unusable (cut short, or left out by
                    # a CoreDNS without `full`): the sender speaks dnstap, only this one is skipped.
                    skipped.append(exc)
                    continue
                bad = exc  # not dnstap at all: garbage, whoever sends it is dropped
                break
            if message.learnable:
                learnable.append(message)
            else:
                ignored += 1
        # In batches: the daemon holds its lock (and the pipeline waits) for one batch at a time.
        attributed = sum(self.deliver(learnable[at:at + _BATCH], read_at) for at in range(0, len(learnable), _BATCH))
        with self._stats_lock:
            messages = self.stats.messages
            messages[LEARNED] += attributed
            messages[UNATTRIBUTED] += len(learnable) - attributed
            messages[IGNORED] += ignored
        if skipped:
            with self._stats_lock:
                self.stats.messages[MALFORMED] += len(skipped)
                for error in skipped:
                    self.stats.malformed[error.reason] += 1
            self._problem(address, f"{skipped[-1]}: the message was skipped ({skipped[-1].reason})")
        if bad is not None:
            with self._stats_lock:
                self.stats.messages[MALFORMED] += 1
            self._drop(address, bad.reason, str(bad))
            return False
        return True

    def _drop(self, address: DnstapAddress, reason: str, detail: str) -> None:
        with self._stats_lock:
            self.stats.malformed[reason] += 1
            self.stats.dropped += 1
        self._problem(address, f"{detail}: the connection was closed ({reason})")

    def _problem(self, address: DnstapAddress, line: str) -> None:
        """Record and report (once a minute per address) what went wrong."""
        with self._stats_lock:
            self.stats.last_problem = f"{address.text}: {line}"
        now = self.monotonic()
        if now - self._reported.get(address.text, -1e18) >= 60.0:
            self._reported[address.text] = now
            self.report(f"dnstap {address.text}: {line} (further ones are only counted: "
                        "hushflow_malformed_input_total{source=\"dnstap\"})")
