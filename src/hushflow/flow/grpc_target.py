"""Where a Hubble server is and how to reach it: the address and the TLS options.

A server is ``host:port`` (TCP), ``tls://host:port`` or ``unix:///path`` (a node's Hubble socket);
:class:`TLSOptions` are the hubble CLI's ``--tls*`` options (TLS, mutual TLS, a server name,
``--tls-allow-insecure``). :func:`parse_server` turns an address into a :class:`Target`;
:func:`read_pem`, :func:`unverified_server_certificate` and :func:`certificate_names` are what
:class:`~hushflow.flow.grpc_source.GrpcFlowSource` builds its channel credentials from. A bad
address or TLS file raises :class:`TargetError`, whose message names the server.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SERVER",
    "NODE_SOCKET",
    "TLSOptions",
    "Target",
    "TargetError",
    "certificate_names",
    "parse_server",
    "read_pem",
    "unverified_server_certificate",
]

#: The hubble CLI's default server: Hubble Relay (e.g. ``cilium hubble port-forward``).
DEFAULT_SERVER = "localhost:4245"
#: A node's own Hubble server (``hostPath`` in a DaemonSet pod).
NODE_SOCKET = "unix:///var/run/cilium/hubble.sock"

_TLS_PREFIX = "tls://"


class TargetError(Exception):
    """A bad server address or TLS file. The message names the server and says what is wrong."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """How to reach a TLS server; the fields are the hubble CLI's ``--tls*`` options.

    TLS is used when ``enabled`` (``--tls``), when the address starts with ``tls://`` (both as in
    the hubble CLI), and also when any other option is given: the CLI documents the client
    certificate as implying TLS but otherwise ignores them silently and talks plaintext.
    """

    enabled: bool = False
    """``--tls``."""
    ca_cert_files: tuple[str, ...] = ()
    """``--tls-ca-cert-files``: PEM CA certificates to trust instead of the system roots."""
    client_cert_file: str | None = None
    """``--tls-client-cert-file``: PEM client certificate (mutual TLS)."""
    client_key_file: str | None = None
    """``--tls-client-key-file``: PEM key of the client certificate."""
    server_name: str | None = None
    """``--tls-server-name``: the name to verify the server certificate against (and SNI), e.g.
    ``instance.hubble-relay.cilium.io``; default: the host of the address."""
    allow_insecure: bool = False
    """``--tls-allow-insecure``: do not verify the server's certificate chain and name. (grpcio
    cannot skip verification: the certificate the server presents is fetched first and trusted
    under one of its own names, read with the ``cryptography`` package; without that package,
    give ``server_name`` too.)"""

    @property
    def any_file(self) -> bool:
        return bool(self.ca_cert_files or self.client_cert_file or self.client_key_file)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TLSOptions:
        """From parsed CLI options keyed like the hubble flags (``tls``, ``tls_ca_cert_files``,
        ``tls_client_cert_file``, ``tls_client_key_file``, ``tls_server_name``,
        ``tls_allow_insecure``); missing or None keys keep their defaults."""
        def get(key: str) -> Any:
            return options.get(f"tls_{key}", options.get(key))

        ca = get("ca_cert_files") or ()
        return cls(
            enabled=bool(options.get("tls", options.get("enabled"))),
            ca_cert_files=(ca,) if isinstance(ca, str) else tuple(ca),
            client_cert_file=get("client_cert_file") or None,
            client_key_file=get("client_key_file") or None,
            server_name=get("server_name") or None,
            allow_insecure=bool(get("allow_insecure")),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed server address: what grpcio dials and, for TLS, where."""

    grpc_target: str
    host: str  # for TLS: the name the certificate is checked against by default
    port: int | None
    tls: bool


def parse_server(server: str, tls: TLSOptions) -> Target:
    """``host:port``, ``tls://host:port`` or ``unix:///path`` as a Target."""
    if not server:
        raise TargetError("no server address given (e.g. localhost:4245 or unix:///var/run/cilium/hubble.sock)")
    use_tls = tls.enabled or tls.allow_insecure or tls.any_file or bool(tls.server_name)
    address = server
    if address.startswith(_TLS_PREFIX):
        use_tls = True
        address = address[len(_TLS_PREFIX) :]
    if address.startswith("unix:"):
        path = address.removeprefix("unix:").removeprefix("//")
        if not path:
            raise TargetError(f"{server}: no socket path (e.g. unix:///var/run/cilium/hubble.sock)")
        return Target(f"unix:{path}" if not path.startswith("/") else f"unix://{path}", "localhost", None, use_tls)
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise TargetError(f"{server}: expected host:port (e.g. localhost:4245) or unix:///path")
    return Target(address, host.strip("[]"), int(port_text), use_tls)


def read_pem(path: str, what: str, server: str) -> bytes:
    """The PEM file at ``path``; a missing or non-PEM file is a TargetError naming ``what``."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TargetError(f"{server}: cannot read {what} {path}: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise TargetError(f"{server}: {what} {path}: must be PEM encoded data")
    return data


def unverified_server_certificate(target: Target, server_name: str | None, timeout: float) -> bytes:
    """The certificate the server presents, fetched without verifying it (--tls-allow-insecure)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if target.port is None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.connect(target.grpc_target.removeprefix("unix:").removeprefix("//"))
    else:
        raw = socket.create_connection((target.host, target.port), timeout=timeout)
    with raw, ctx.wrap_socket(raw, server_hostname=server_name or target.host) as tls_sock:
        der = tls_sock.getpeercert(binary_form=True)
    if der is None:
        raise OSError("the server sent no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")


def certificate_names(pem: bytes) -> list[str]:
    """DNS names of a certificate (SAN, else CN), to accept it whatever name was dialled."""
    try:
        from cryptography import x509
    except ImportError:  # the name check then needs --tls-server-name
        return []
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return names

