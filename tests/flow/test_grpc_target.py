"""Reaching the server: addresses (TCP, unix sockets) and TLS / mutual TLS, against the Observer test
double on loopback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from hushflow.flow.grpc_source import GrpcFlowSource, GrpcSourceError
from hushflow.flow.grpc_target import TLSOptions
from tests.doubles.observer_server import ObserverTestServer, ServerTLS
from tests.flow.conftest import numbered, summaries


def test_unix_socket(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "hubble.sock"
    with ObserverTestServer(lines[:20], address=f"unix://{path}") as server:
        assert server.address == f"unix://{path}"
        events = list(GrpcFlowSource(f"unix://{path}", follow=False))
    assert [e.raw for e in events] == lines[:20]
    assert {e.source for e in events} == {f"unix://{path}"}


@pytest.mark.parametrize("server_address", ["", "localhost", "localhost:http", "unix://"])
def test_bad_addresses(server_address: str) -> None:
    with pytest.raises(GrpcSourceError):
        GrpcFlowSource(server_address)


class PKI:
    """A CA, a server certificate for relay.hubble.test (and 127.0.0.1), a client certificate."""

    def __init__(self, directory: Path) -> None:
        x509 = pytest.importorskip("cryptography.x509")
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)

        def key_pem(key: Any) -> bytes:
            return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

        def issue(name: str, key: Any, issuer: Any, issuer_key: Any, *, ca: bool, sans: list[Any],
                  usage: Any = None) -> Any:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            if usage is not None:
                builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            return builder.sign(issuer_key, hashes.SHA256())

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hushflow test CA")])
        ca = issue("hushflow test CA", ca_key, ca_name, ca_key, ca=True, sans=[])
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = issue("relay.hubble.test", server_key, ca_name, ca_key, ca=False,
                       sans=[x509.DNSName("relay.hubble.test"), x509.DNSName("*.hubble-relay.cilium.io")],
                       usage=ExtendedKeyUsageOID.SERVER_AUTH)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = issue("hushflow", client_key, ca_name, ca_key, ca=False, sans=[x509.DNSName("hushflow")],
                       usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        pem = serialization.Encoding.PEM
        self.ca_pem = ca.public_bytes(pem)
        self.server_cert = server.public_bytes(pem)
        self.server_key = key_pem(server_key)
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.ca_pem)
        self.client_cert_file = directory / "client.crt"
        self.client_cert_file.write_bytes(client.public_bytes(pem))
        self.client_key_file = directory / "client.key"
        self.client_key_file.write_bytes(key_pem(client_key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def test_tls_with_a_ca_and_a_server_name(pki: PKI, lines: list[bytes]) -> None:
    tls = ServerTLS(pki.server_cert, pki.server_key)
    with ObserverTestServer(lines[:10], tls=tls) as server:
        options = TLSOptions(enabled=True, ca_cert_files=(str(pki.ca_file),), server_name="relay.hubble.test")
        events = list(GrpcFlowSource(server.address, tls=options, follow=False))
        assert [e.raw for e in events] == lines[:10]
        # tls:// implies TLS, as in the hubble CLI; a wildcard SAN matches like Relay's certificates.
        options = TLSOptions(ca_cert_files=(str(pki.ca_file),), server_name="instance.hubble-relay.cilium.io")
        assert len(list(GrpcFlowSource(f"tls://{server.address}", tls=options, follow=False))) == 10


@pytest.mark.parametrize(
    ("trust_ca", "server_name"),
    [(False, "relay.hubble.test"), (True, "other.hubble.test")],
    ids=["unknown-ca", "wrong-name"],
)
def test_tls_verification_failures_are_reported(pki: PKI, trust_ca: bool, server_name: str) -> None:
    options = TLSOptions(enabled=True, ca_cert_files=(str(pki.ca_file),) if trust_ca else (), server_name=server_name)
    with ObserverTestServer(numbered(1), tls=ServerTLS(pki.server_cert, pki.server_key)) as server:
        with pytest.raises(GrpcSourceError, match="giving up after 1 attempt: UNAVAILABLE"):
            list(GrpcFlowSource(server.address, tls=options, follow=False, max_retries=0))
        assert server.requests == []


def test_plaintext_client_to_a_tls_server_fails(pki: PKI) -> None:
    with (ObserverTestServer(numbered(1), tls=ServerTLS(pki.server_cert, pki.server_key)) as server,
          pytest.raises(GrpcSourceError, match="UNAVAILABLE")):
        list(GrpcFlowSource(server.address, follow=False, max_retries=0))


def test_tls_allow_insecure_skips_verification(pki: PKI) -> None:
    with ObserverTestServer(numbered(3), tls=ServerTLS(pki.server_cert, pki.server_key)) as server:
        events = list(GrpcFlowSource(server.address, tls=TLSOptions(allow_insecure=True), follow=False))
    assert summaries(events) == ["#0", "#1", "#2"]


def test_mutual_tls(pki: PKI, lines: list[bytes]) -> None:
    tls = ServerTLS(pki.server_cert, pki.server_key, client_ca=pki.ca_pem)
    with ObserverTestServer(lines[:10], tls=tls) as server:
        without_cert = TLSOptions(enabled=True, ca_cert_files=(str(pki.ca_file),), server_name="relay.hubble.test")
        with pytest.raises(GrpcSourceError, match="UNAVAILABLE"):
            list(GrpcFlowSource(server.address, tls=without_cert, follow=False, max_retries=0))
        with_cert = TLSOptions.from_options({
            "tls": True, "tls_ca_cert_files": [str(pki.ca_file)], "tls_client_cert_file": str(pki.client_cert_file),
            "tls_client_key_file": str(pki.client_key_file), "tls_server_name": "relay.hubble.test",
        })
        events = list(GrpcFlowSource(server.address, tls=with_cert, follow=False))
    assert [e.raw for e in events] == lines[:10]


def test_tls_file_problems_name_the_file(tmp_path: Path, pki: PKI) -> None:
    missing = TLSOptions(enabled=True, ca_cert_files=(str(tmp_path / "nope.crt"),))
    with pytest.raises(GrpcSourceError, match=r"cannot read CA certificate .*nope\.crt"):
        list(GrpcFlowSource("localhost:4245", tls=missing))
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82")
    with pytest.raises(GrpcSourceError, match="must be PEM encoded data"):
        list(GrpcFlowSource("localhost:4245", tls=TLSOptions(ca_cert_files=(str(not_pem),))))
    with pytest.raises(GrpcSourceError, match="needs --tls-client-key-file"):
        GrpcFlowSource("localhost:4245", tls=TLSOptions(client_cert_file=str(pki.client_cert_file)))
