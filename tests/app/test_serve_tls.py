"""`run --serve` with TLS and mutual TLS (app.serve_tls): a real grpcio server from serve_observer,
real grpcio clients on loopback, certificates made here; rotation of the files without a restart."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hushflow.app.serve import EventRing, ObserverServer, serve_observer
from hushflow.app.serve_tls import ServeTLS, ServeTLSError, ServeTLSOptions, check_serve_tls, split_file_list
from hushflow.flow.grpc_target import TLSOptions
from hushflow.flow.sources import HubbleSource
from hushflow.proto import observer_pb2, observer_pb2_grpc

#: The name Cilium's agents' Hubble server certificates carry (*.<cluster>.hubble-grpc.cilium.io),
#: which Relay and `hubble observe --tls-server-name` check.
SERVER_NAME = "kind-worker.default.hubble-grpc.cilium.io"
_NOW = dt.datetime.now(dt.UTC)


def _key_pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


@dataclass
class Issued:
    cert: bytes
    key: bytes
    serial: int


class CA:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = self._sign(self.name, self.key.public_key(), ca=True, sans=[], usage=None)
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def _sign(self, subject: x509.Name, public_key: Any, *, ca: bool, sans: list[Any], usage: Any) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - dt.timedelta(minutes=5)).not_valid_after(_NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def server(self) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.default.hubble-grpc.cilium.io")]),
                          key.public_key(), ca=False,
                          sans=[x509.DNSName("*.default.hubble-grpc.cilium.io"), x509.DNSName("localhost"),
                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                          usage=ExtendedKeyUsageOID.SERVER_AUTH)
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert.serial_number)

    def client(self) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubble-relay-client")]),
                          key.public_key(), ca=False, sans=[x509.DNSName("hubble-relay-client")],
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert.serial_number)


@dataclass
class PKI:
    ca: CA
    other_ca: CA
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate of the other CA
    ca_file: Path
    other_ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def authorities() -> tuple[CA, CA]:
    return CA("hushflow test CA"), CA("another CA")


@pytest.fixture
def pki(tmp_path: Path, authorities: tuple[CA, CA]) -> PKI:
    ca, other = authorities
    server = ca.server()
    paths = {name: tmp_path / name for name in ("ca.crt", "other-ca.crt", "tls.crt", "tls.key")}
    paths["ca.crt"].write_bytes(ca.pem)
    paths["other-ca.crt"].write_bytes(other.pem)
    paths["tls.crt"].write_bytes(server.cert)
    paths["tls.key"].write_bytes(server.key)
    return PKI(ca, other, server, ca.client(), other.client(), paths["ca.crt"], paths["other-ca.crt"],
               paths["tls.crt"], paths["tls.key"])


def replace(path: Path, data: bytes) -> None:
    """Rewrite a file the way a Kubernetes secret volume does: a new file swapped in."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.replace(new, path)


def event(i: int) -> dict:
    stamp = f"2026-12-01T10:00:{i:02d}.000000123Z"
    return {"flow": {"time": stamp, "verdict": "DROPPED", "node_name": "kind-worker",
                     "source": {"namespace": "shop", "pod_name": f"pod-{i}"}, "policy_log": [f"tag-{i}"]},
            "node_name": "kind-worker", "time": stamp}


class Served:
    def __init__(self, pki: PKI, *, mutual: bool, client_ca: Path | None = None) -> None:
        self.messages: list[str] = []
        self.counted = 0
        options = ServeTLSOptions(str(pki.cert_file), str(pki.key_file),
                                  (str(client_ca or pki.ca_file),) if mutual else ())
        self.tls = ServeTLS(options, say=self.messages.append, on_reload_error=self._count)
        self.ring = EventRing(capacity=10)
        for i in range(3):
            self.ring.append(event(i))
        self.server: ObserverServer = serve_observer(self.ring, "127.0.0.1:0", node_name="kind-worker",
                                                     credentials=self.tls.credentials())
        self.port = self.server.port

    def _count(self) -> None:
        self.counted += 1


@pytest.fixture
def serve(pki: PKI) -> Iterator[Any]:
    started: list[Served] = []

    def start(**kwargs: Any) -> Served:
        served = Served(pki, **kwargs)
        started.append(served)
        return served

    yield start
    for served in started:
        served.server.stop(None)


def channel(port: int, *, ca: bytes | None, client: Issued | None = None,
            name: str | None = SERVER_NAME) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=client.key if client else None,
                                               certificate_chain=client.cert if client else None)
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(f"localhost:{port}", credentials, options=options)


def status_and_flows(chan: grpc.Channel) -> tuple[int, list[str]]:
    """ServerStatus's num_flows and the pods of GetFlows number=10 (what `hubble status` and
    `hubble observe` ask), after the health check the hubble CLI makes first."""
    with chan:
        health = health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(service="hubble.server.Observer"), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = observer_pb2_grpc.ObserverStub(chan)
        status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=30)
        responses = stub.GetFlows(observer_pb2.GetFlowsRequest(number=10), timeout=30)
        flows = [r.flow.source.pod_name for r in responses if r.HasField("flow")]  # after a node_status
    return status.num_flows, flows


def refused(chan: grpc.Channel) -> grpc.StatusCode:
    with chan, pytest.raises(grpc.RpcError) as caught:
        observer_pb2_grpc.ObserverStub(chan).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=30)
    return caught.value.code()  # type: ignore[attr-defined,no-any-return]


def presented(port: int, pki: PKI, *, client: Issued | None = None, tmp: Path | None = None) -> tuple[int, str]:
    """The serial of the certificate the server presents to a new connection, and the TLS version."""
    context = ssl.create_default_context(cadata=pki.ca.pem.decode())
    context.set_alpn_protocols(["h2"])
    if client is not None and tmp is not None:
        (tmp / "c.crt").write_bytes(client.cert)
        (tmp / "c.key").write_bytes(client.key)
        context.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    with (socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
          context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls):
        der = tls.getpeercert(binary_form=True)
        version = tls.version()
    assert der is not None and version is not None
    return x509.load_der_x509_certificate(der).serial_number, version


# -- TLS ----------------------------------------------------------------------------------------

def test_tls_serves_status_and_flows_to_a_client_that_trusts_the_ca(serve, pki):
    served = serve(mutual=False)
    assert status_and_flows(channel(served.port, ca=pki.ca.pem)) == (3, ["pod-0", "pod-1", "pod-2"])
    # the IP and localhost SANs verify without a name override too
    assert status_and_flows(channel(served.port, ca=pki.ca.pem, name=None))[0] == 3


def test_tls_negotiates_tls_1_3_like_cilium_s_hubble_server(serve, pki):
    # Cilium's Hubble server requires TLS 1.3 (serveroption.MinTLSVersion), and so do its clients.
    served = serve(mutual=False)
    serial, version = presented(served.port, pki)
    assert (serial, version) == (pki.server.serial, "TLSv1.3")


def test_a_plaintext_client_is_refused(serve):
    served = serve(mutual=False)
    assert refused(grpc.insecure_channel(f"127.0.0.1:{served.port}")) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_trusts_another_ca_refuses_the_server(serve, pki):
    served = serve(mutual=False)
    assert refused(channel(served.port, ca=pki.other_ca.pem)) == grpc.StatusCode.UNAVAILABLE


def test_a_client_checking_another_name_refuses_the_server(serve, pki):
    served = serve(mutual=False)
    assert refused(channel(served.port, ca=pki.ca.pem, name="hubble-relay.example")) == grpc.StatusCode.UNAVAILABLE


# -- mutual TLS ---------------------------------------------------------------------------------

def test_mtls_accepts_a_client_certificate_of_the_client_ca(serve, pki):
    served = serve(mutual=True)
    assert status_and_flows(channel(served.port, ca=pki.ca.pem, client=pki.client)) == (3, ["pod-0", "pod-1", "pod-2"])


def test_mtls_refuses_a_client_without_a_certificate(serve, pki):
    served = serve(mutual=True)
    assert refused(channel(served.port, ca=pki.ca.pem)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_client_certificate_of_another_ca(serve, pki):
    served = serve(mutual=True)
    assert refused(channel(served.port, ca=pki.ca.pem, client=pki.stranger)) == grpc.StatusCode.UNAVAILABLE


def test_hushflow_s_own_hubble_source_reads_a_tls_serve_of_another_hushflow(serve, pki, tmp_path):
    """The two ends agree: a relay-side hushflow can read a per-node hushflow's --serve (mTLS),
    with the options `run --hubble-server ... --tls ...` takes."""
    served = serve(mutual=True)
    (tmp_path / "client.crt").write_bytes(pki.client.cert)
    (tmp_path / "client.key").write_bytes(pki.client.key)
    tls = TLSOptions(enabled=True, ca_cert_files=(str(pki.ca_file),), client_cert_file=str(tmp_path / "client.crt"),
                     client_key_file=str(tmp_path / "client.key"), server_name=SERVER_NAME)
    source = HubbleSource(f"127.0.0.1:{served.port}", tls, allowlist=(), field_mask=(), follow=False,
                          number=10, max_retries=0)
    events = [e for e in source.events() if "flow" in e.data]
    assert [e.data["flow"]["policy_log"] for e in events] == [["tag-0"], ["tag-1"], ["tag-2"]]
    assert {e.data["node_name"] for e in events} == {"kind-worker"}


# -- rotation -----------------------------------------------------------------------------------

def test_a_rotated_certificate_is_served_to_the_next_connection(serve, pki):
    served = serve(mutual=False)
    assert presented(served.port, pki)[0] == pki.server.serial
    renewed = pki.ca.server()
    replace(pki.key_file, renewed.key)
    replace(pki.cert_file, renewed.cert)
    assert presented(served.port, pki)[0] == renewed.serial
    assert status_and_flows(channel(served.port, ca=pki.ca.pem))[0] == 3
    assert (served.tls.reloads, served.tls.reload_errors, served.counted) == (1, 0, 0)
    assert served.messages == ["--serve TLS: reloaded the certificate and key"]


def test_a_bad_new_certificate_keeps_the_old_one_served_and_is_counted_once(serve, pki):
    served = serve(mutual=False)
    replace(pki.cert_file, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    for _ in range(2):  # the same bad file is reported once, not at every connection
        assert presented(served.port, pki)[0] == pki.server.serial
    assert (served.tls.reload_errors, served.counted) == (1, 1)
    assert served.messages == [f"--serve TLS: cannot reload the certificate and key, still serving the last good "
                               f"ones: --serve-tls-cert-file {pki.cert_file}: no PEM certificate that parses in it"]
    # half a rotation: the new certificate is there, its key not yet
    renewed = pki.ca.server()
    replace(pki.cert_file, renewed.cert)
    assert presented(served.port, pki)[0] == pki.server.serial
    assert served.counted == 2 and "not the key of the certificate" in served.messages[-1]
    replace(pki.key_file, renewed.key)  # the rotation completes
    assert presented(served.port, pki)[0] == renewed.serial
    assert (served.tls.reloads, served.counted) == (1, 2)


def test_a_removed_file_keeps_serving_the_last_good_certificate(serve, pki):
    served = serve(mutual=False)
    pki.key_file.unlink()
    assert presented(served.port, pki)[0] == pki.server.serial
    assert served.counted == 1 and "cannot read it: No such file or directory" in served.messages[-1]


def test_a_rotated_client_ca_takes_effect_for_the_next_connection(serve, pki):
    served = serve(mutual=True)
    assert refused(channel(served.port, ca=pki.ca.pem, client=pki.stranger)) == grpc.StatusCode.UNAVAILABLE
    replace(pki.ca_file, pki.ca.pem + pki.other_ca.pem)  # the other CA joins the client CAs
    assert status_and_flows(channel(served.port, ca=pki.ca.pem, client=pki.stranger))[0] == 3
    replace(pki.ca_file, b"garbage\n")  # a bad CA bundle keeps the last good one
    assert status_and_flows(channel(served.port, ca=pki.ca.pem, client=pki.stranger))[0] == 3
    assert served.counted == 1 and "not PEM encoded data" in served.messages[-1]


# -- options and files --------------------------------------------------------------------------

def test_client_ca_files_split_like_cilium_s_string_slice():
    assert split_file_list(["a.crt,b.crt", "c.crt", " d.crt , "]) == ("a.crt", "b.crt", "c.crt", "d.crt")


@pytest.mark.parametrize(("options", "serve", "message"), [
    (ServeTLSOptions("tls.crt"), "127.0.0.1:4245", "--serve-tls-cert-file tls.crt: needs --serve-tls-key-file"),
    (ServeTLSOptions(key_file="tls.key"), "127.0.0.1:4245", "--serve-tls-key-file tls.key: needs --serve-tls-cert-file"),
    (ServeTLSOptions(client_ca_files=("ca.crt",)), "127.0.0.1:4245",
     "--serve-tls-client-ca-files ca.crt: mutual TLS needs the server's own certificate too"),
    (ServeTLSOptions("tls.crt", "tls.key"), None, "--serve-tls-cert-file tls.crt: needs --serve HOST:PORT"),
    (ServeTLSOptions("tls.crt", "tls.key"), "unix:///run/hushflow.sock",
     "--serve-tls-cert-file tls.crt: --serve unix:///run/hushflow.sock is a unix socket, served without TLS"),
], ids=["cert-without-key", "key-without-cert", "client-ca-without-cert", "without-serve", "unix-socket"])
def test_option_mistakes(options, serve, message):
    with pytest.raises(ServeTLSError) as caught:
        check_serve_tls(options, serve)
    assert str(caught.value).startswith(message)


def test_file_problems_name_the_file(pki, tmp_path):
    def problem(**files: str) -> str:
        options = ServeTLSOptions(files.get("cert", str(pki.cert_file)), files.get("key", str(pki.key_file)),
                                  (files["ca"],) if "ca" in files else ())
        with pytest.raises(ServeTLSError) as caught:
            check_serve_tls(options, "127.0.0.1:4245")
        return str(caught.value)

    (tmp_path / "empty.pem").write_bytes(b"")
    (tmp_path / "other.key").write_bytes(pki.client.key)
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    missing = str(tmp_path / "missing.crt")
    assert problem(cert=missing) == f"--serve-tls-cert-file {missing}: cannot read it: No such file or directory"
    assert problem(key=str(tmp_path)) == f"--serve-tls-key-file {tmp_path}: not a regular file"
    assert problem(cert=str(tmp_path / "empty.pem")).endswith("empty.pem: not PEM encoded data")
    assert problem(cert=str(pki.key_file)).endswith("tls.key: no PEM certificate that parses in it")
    assert problem(key=str(tmp_path / "other.key")) == (f"--serve-tls-key-file {tmp_path / 'other.key'}: not the key "
                                                        f"of the certificate in {pki.cert_file}")
    assert problem(key=str(tmp_path / "encrypted.key")).endswith(
        "encrypted.key: no unencrypted PEM private key that loads in it")
    assert problem(ca=str(pki.key_file)).startswith(f"--serve-tls-client-ca-files {pki.key_file}: no PEM certificate")
    check_serve_tls(ServeTLSOptions(str(pki.cert_file), str(pki.key_file), (str(pki.ca_file),)), "127.0.0.1:4245")
