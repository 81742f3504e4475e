"""TLS and mutual TLS for `hushflow run --serve`, with certificates reloaded when their files change.

The options are named after the Cilium agent's Hubble server options (``hubble-tls-cert-file``,
``hubble-tls-key-file``, ``hubble-tls-client-ca-files``) and mean the same: a certificate and its
key turn TLS on; client CA files require every client to present a certificate signed by one of
them (mutual TLS). A unix socket is served in plaintext, as Cilium serves ``hubble.sock``: TLS
needs a ``host:port``.

Certificates rotate (cert-manager renews them and Kubernetes swaps the mounted secret's files),
and Cilium's Hubble server picks the new files up for the next connection without a restart; so
does hushflow: grpcio asks :meth:`ServeTLS.fetch` before every TLS handshake, which looks at the
files' stat and reads them again only when it changed. A new keypair or CA bundle that does not
load (half written, a key that does not match the certificate) is reported once and counted, and
the server keeps handing out the last good one. As in Cilium's certloader, the keypair and the
client CAs are reloaded apart: a bad CA file does not hold back a good new keypair.

The files are checked with the standard library's ``ssl`` (a PEM certificate that parses, a key
that matches it), so a normal install needs no ``cryptography``. grpcio's Python API has no
minimum-TLS-version setting (Cilium's Hubble server requires TLS 1.3): grpcio negotiates TLS 1.3
with every client that offers it, as the hubble CLI and Relay do.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hushflow.app.serve import ServeError

if TYPE_CHECKING:
    import grpc

__all__ = ["ServeTLS", "ServeTLSError", "ServeTLSOptions", "check_serve_tls", "plaintext_warning", "split_file_list"]

CERT_OPTION = "--serve-tls-cert-file"
KEY_OPTION = "--serve-tls-key-file"
CLIENT_CA_OPTION = "--serve-tls-client-ca-files"
#: A PEM file larger than this is no certificate (and is not read whole to find out).
_MAX_PEM_BYTES = 1 << 20


class ServeTLSError(ServeError):
    """A TLS option or file `--serve` cannot use: ``--option FILE: what is wrong``."""


@dataclass(frozen=True, slots=True)
class ServeTLSOptions:
    """The ``--serve-tls-*`` options; TLS is on when a certificate (and its key) is given."""

    cert_file: str | None = None
    """``--serve-tls-cert-file`` (Cilium: ``hubble-tls-cert-file``): PEM certificate (chain) of the server."""
    key_file: str | None = None
    """``--serve-tls-key-file`` (Cilium: ``hubble-tls-key-file``): its PEM private key, unencrypted."""
    client_ca_files: tuple[str, ...] = ()
    """``--serve-tls-client-ca-files`` (Cilium: ``hubble-tls-client-ca-files``): PEM CA certificates;
    given, every client must present a certificate one of them signed (mutual TLS)."""

    @classmethod
    def from_cli(cls, cert_file: str | None, key_file: str | None, client_ca_files: Iterable[str]) -> ServeTLSOptions:
        """From the command line; an empty value is refused (an unset variable in a manifest
        would otherwise serve in plaintext, or without asking for client certificates)."""
        for option, value in ((CERT_OPTION, cert_file), (KEY_OPTION, key_file)):
            if value is not None and not value.strip():
                raise ServeTLSError(f"{option} {value!r}: an empty file name")
        given = tuple(client_ca_files)
        files = split_file_list(given)
        if given and not files:
            raise ServeTLSError(f"{CLIENT_CA_OPTION} {','.join(given)!r}: no file named")
        return cls(cert_file, key_file, files)

    @property
    def given(self) -> bool:
        return bool(self.cert_file or self.key_file or self.client_ca_files)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_files)


def split_file_list(values: Iterable[str]) -> tuple[str, ...]:
    """Repeated and comma-separated file names, as Cilium's string-slice flag reads
    ``--hubble-tls-client-ca-files a.crt,b.crt``; empty entries are dropped."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def check_serve_tls(options: ServeTLSOptions, serve: str | None) -> None:
    """Refuse options `--serve` cannot start with, and files that do not load, before anything
    starts. Raises ServeTLSError naming the option and the file."""
    if not options.given:
        return
    first = (f"{CERT_OPTION} {options.cert_file}" if options.cert_file else
             f"{KEY_OPTION} {options.key_file}" if options.key_file else
             f"{CLIENT_CA_OPTION} {','.join(options.client_ca_files)}")
    if serve is None:
        raise ServeTLSError(f"{first}: needs --serve HOST:PORT (the address to serve the Observer API on)")
    if serve.startswith("unix:"):
        # Cilium: the agent's hubble.sock is always plaintext; its file permissions guard it.
        raise ServeTLSError(f"{first}: --serve {serve} is a unix socket, served without TLS (as Cilium serves "
                            "hubble.sock; its file permissions guard it): give --serve HOST:PORT for TLS")
    if options.cert_file and not options.key_file:
        raise ServeTLSError(f"{CERT_OPTION} {options.cert_file}: needs {KEY_OPTION}")
    if options.key_file and not options.cert_file:
        raise ServeTLSError(f"{KEY_OPTION} {options.key_file}: needs {CERT_OPTION}")
    if not options.cert_file:
        raise ServeTLSError(f"{first}: mutual TLS needs the server's own certificate too: "
                            f"{CERT_OPTION} and {KEY_OPTION}")
    _Keypair.load(options.cert_file, options.key_file or "")
    _ClientCAs.load(options.client_ca_files)


def plaintext_warning(serve: str) -> str | None:
    """What to say when `serve` (a valid --serve address) listens without TLS beyond loopback:
    None for a unix socket or a loopback address."""
    if serve.startswith("unix:"):
        return None
    host = serve.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return None
    try:
        if host and ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to anything
    # Cilium: the agent's TCP Hubble listener uses TLS unless --hubble-disable-tls, and warns then.
    return (f"--serve {serve} without TLS: whoever reaches it reads every flow; give {CERT_OPTION} and "
            f"{KEY_OPTION} (and {CLIENT_CA_OPTION} to admit only clients with a certificate)")


# -- loading ------------------------------------------------------------------------------------

_Stat = tuple[int, int, int, int, int] | str  # (dev, inode, size, mtime, ctime), or why it cannot be read


def _stat(path: str) -> _Stat:
    """What tells a rewritten file apart (os.stat follows the symlinks a Kubernetes secret
    volume swaps)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _read_pem(option: str, path: str) -> bytes:
    where = f"{option} {path}"
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ServeTLSError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ServeTLSError(f"{where}: not a regular file")
    if info.st_size > _MAX_PEM_BYTES:
        raise ServeTLSError(f"{where}: {info.st_size} bytes: too large for a PEM certificate or key")
    try:
        with open(path, "rb") as pem:
            data = pem.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ServeTLSError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ServeTLSError(f"{where}: not PEM encoded data")
    return data


def _certificates_in(option: str, path: str, data: bytes) -> None:
    """Raise unless `data` holds at least one PEM certificate that parses."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise ServeTLSError(f"{option} {path}: no PEM certificate that parses in it") from None


def _no_password() -> bytes:
    return b""  # an encrypted key then fails to load instead of prompting on the terminal


@dataclass(frozen=True, slots=True)
class _Keypair:
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, cert_file: str, key_file: str) -> _Keypair:
        cert = _read_pem(CERT_OPTION, cert_file)
        key = _read_pem(KEY_OPTION, key_file)
        _certificates_in(CERT_OPTION, cert_file, cert)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                raise ServeTLSError(f"{KEY_OPTION} {key_file}: not the key of the certificate in {cert_file}") from None
            raise ServeTLSError(f"{KEY_OPTION} {key_file}: no unencrypted PEM private key that loads in it") from None
        # ssl read the files by name: make sure they are still the bytes read above (a rotation
        # may be writing them right now; the next handshake looks again).
        if _read_pem(CERT_OPTION, cert_file) != cert or _read_pem(KEY_OPTION, key_file) != key:
            raise ServeTLSError(f"{CERT_OPTION} {cert_file}: changed while it was read (being rotated?)")
        return cls(cert, key)


@dataclass(frozen=True, slots=True)
class _ClientCAs:
    bundle: bytes  # empty: no client certificates asked for

    @classmethod
    def load(cls, paths: Sequence[str]) -> _ClientCAs:
        parts = []
        for path in paths:
            data = _read_pem(CLIENT_CA_OPTION, path)
            _certificates_in(CLIENT_CA_OPTION, path, data)
            parts.append(data if data.endswith(b"\n") else data + b"\n")
        return cls(b"".join(parts))


# -- serving ------------------------------------------------------------------------------------

class ServeTLS:
    """The server's TLS configuration, as last loaded from its files, and grpcio's fetcher of it.

    ``say`` reports each reload and each file that did not load; ``on_reload_error`` is called
    once per failed reload (the daemon counts hushflow_serve_tls_reload_errors_total). Raises
    ServeTLSError when the files do not load at start."""

    def __init__(self, options: ServeTLSOptions, *, say: Callable[[str], object] = lambda _message: None,
                 on_reload_error: Callable[[], object] = lambda: None) -> None:
        if not options.cert_file or not options.key_file:
            raise ServeTLSError(f"{CERT_OPTION} and {KEY_OPTION}: TLS needs both")
        self.options = options
        self._say = say
        self._on_reload_error = on_reload_error
        self._lock = threading.Lock()  # grpcio may call fetch from several threads at once
        self._keypair_files = (options.cert_file, options.key_file)
        self._keypair_seen = self._stats(self._keypair_files)
        self._ca_seen = self._stats(options.client_ca_files)
        self.keypair = _Keypair.load(*self._keypair_files)
        self.client_cas = _ClientCAs.load(options.client_ca_files)
        self.reloads = 0
        self.reload_errors = 0

    @staticmethod
    def _stats(paths: Iterable[str]) -> tuple[_Stat, ...]:
        return tuple(_stat(path) for path in paths)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        import grpc

        return grpc.ssl_server_certificate_configuration(
            [(self.keypair.key, self.keypair.cert)], root_certificates=self.client_cas.bundle or None)

    def credentials(self) -> grpc.ServerCredentials:
        """grpcio server credentials that call :meth:`fetch` before each handshake."""
        import grpc

        return grpc.dynamic_ssl_server_credentials(self.configuration(), self.fetch,
                                                   require_client_authentication=self.options.mutual)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when a file changed and loads, else None (keep the current one).
        Never raises: grpcio would refuse the connection."""
        with self._lock:
            changed = False
            keypair_now = self._stats(self._keypair_files)
            if keypair_now != self._keypair_seen:
                self._keypair_seen = keypair_now
                changed |= self._reload("the certificate and key", self._reload_keypair)
            ca_now = self._stats(self.options.client_ca_files)
            if ca_now != self._ca_seen:
                self._ca_seen = ca_now
                changed |= self._reload("the client CAs", self._reload_client_cas)
            return self.configuration() if changed else None

    def _reload_keypair(self) -> bool:
        keypair = _Keypair.load(*self._keypair_files)
        changed, self.keypair = keypair != self.keypair, keypair
        return changed

    def _reload_client_cas(self) -> bool:
        client_cas = _ClientCAs.load(self.options.client_ca_files)
        changed, self.client_cas = client_cas != self.client_cas, client_cas
        return changed

    def _reload(self, what: str, load: Callable[[], bool]) -> bool:
        try:
            changed = load()
        except Exception as exc:  # whatever a new file holds, serving goes on with the last good one
            self.reload_errors += 1
            reason = str(exc) if isinstance(exc, ServeTLSError) else repr(exc)
            self._say(f"--serve TLS: cannot reload {what}, still serving the last good ones: {reason}")
            self._on_reload_error()
            return False
        if changed:
            self.reloads += 1
            self._say(f"--serve TLS: reloaded {what}")
        return changed
