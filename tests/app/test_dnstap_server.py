"""run --dnstap: the listener against hostile senders, the daemon learning from it, and a real
Unbound sending its answers over dnstap on loopback.

Unbound runs in the foreground with everything in a temporary directory, answers from
`local-data` (nothing leaves loopback) and logs its client responses to hushflow's socket.
`make test` installs Debian's unbound when it is missing (built with dnstap); the test fails
(never skips) without it.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import fstrm
import pytest
from dnstap_pb import dnstap_pb2

from hushflow.app.daemon import Daemon, RunError, RunOptions
from hushflow.app.dnstap_server import DnstapServer, parse_dnstap_address
from hushflow.flow import dnstap
from hushflow.flow.dnstap import CONTENT_TYPE, DnstapMessage
from tests.processes import running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
DENY_ID = "cnp.my-namespace.app-external-block-policy.egressdeny-0"
MY_APP_IP = "10.0.1.10"  # my-app's pod in the example's first flow
COREDNS_IP = "10.0.0.10"  # the kube-system pod it asks


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="hf-dnstap-", dir="/tmp") as name:
        yield Path(name)


def client_response(name: str, ip: str, client: str = MY_APP_IP, ttl: int = 60) -> bytes:
    query = dns.message.make_query(name, "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", ip))
    frame = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE)
    frame.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
    frame.message.query_address = ipaddress.ip_address(client).packed
    frame.message.response_address = ipaddress.ip_address(COREDNS_IP).packed
    frame.message.response_message = reply.to_wire()
    return frame.SerializeToString()


def client_query() -> bytes:
    frame = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE)
    frame.message.type = dnstap_pb2.Message.CLIENT_QUERY
    frame.message.query_message = dns.message.make_query("a.example.", "A").to_wire()
    return frame.SerializeToString()


class Sender:
    """A dnstap sender as CoreDNS is one: connect, READY/ACCEPT, START, data frames, STOP/FINISH
    (encoded with the PyPI fstrm package, an implementation independent of hushflow's)."""

    def __init__(self, path: Path) -> None:
        self.codec = fstrm.FstrmCodec()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))

    def handshake(self) -> None:
        self.sock.sendall(self.codec.encode_ctrlready(CONTENT_TYPE))
        assert self.codec.is_ctrlaccept(self.sock.recv(4096))
        self.sock.sendall(self.codec.encode_ctrlstart(CONTENT_TYPE))

    def send(self, *payloads: bytes) -> None:
        self.sock.sendall(b"".join(self.codec.encode_data(payload) for payload in payloads))

    def stop(self) -> bytes:
        self.sock.sendall(self.codec.encode(fstrm.FSTRM_CONTROL_STOP))
        return self.sock.recv(4096)

    def closed_by_server(self) -> bool:
        """True once hushflow has closed the connection (reads end), waiting at most 5 s."""
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


class Collected:
    def __init__(self) -> None:
        self.messages: list[DnstapMessage] = []
        self.event = threading.Event()

    def __call__(self, messages: Sequence[DnstapMessage], _read_at: float) -> int:
        self.messages.extend(messages)
        self.event.set()
        return len(messages)


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


@pytest.fixture
def server(sock_dir) -> Iterator[tuple[DnstapServer, Collected, Path]]:
    collected = Collected()
    path = sock_dir / "dnstap.sock"
    listener = DnstapServer([f"unix://{path}"], collected, handshake_timeout=0.5)
    listener.bind()
    listener.start()
    try:
        yield listener, collected, path
    finally:
        listener.close()


def test_a_session_delivers_the_learnable_answers_and_counts_the_rest(server):
    listener, collected, path = server
    sender = Sender(path)
    sender.handshake()
    sender.send(client_response("ingest.telemetry.example.com.", "198.51.100.77"), client_query())
    assert sender.stop() == dnstap.control_frame(dnstap.CONTROL_FINISH)
    assert sender.closed_by_server()
    (message,) = collected.messages
    assert (message.name, message.ips, message.client_ip) == ("ingest.telemetry.example.com", ("198.51.100.77",),
                                                              MY_APP_IP)
    wait_for(lambda: listener.stats.connections == 0, "the connection is closed")
    assert dict(listener.stats.messages) == {"learned": 1, "unattributed": 0, "ignored": 1}
    assert path.stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize(
    ("case", "stream", "reason"),
    [
        ("an oversized frame", dnstap.control_frame(dnstap.CONTROL_START) + (10_000_000).to_bytes(4, "big"),
         dnstap.FRAME_TOO_LARGE),
        ("a bad control frame", dnstap.control_frame(77), dnstap.BAD_CONTROL_FRAME),
        ("data before the handshake", dnstap.data_frame(b"x"), dnstap.OUT_OF_ORDER),
        ("bad protobuf", dnstap.control_frame(dnstap.CONTROL_START) + dnstap.data_frame(b"\xff\xfe not protobuf"),
         dnstap.BAD_PROTOBUF),
        ("nothing at all", b"", "no-handshake"),
    ],
)
def test_a_hostile_sender_is_counted_and_dropped_and_the_others_go_on(server, case, stream, reason):
    listener, collected, path = server
    good = Sender(path)
    good.handshake()
    bad = Sender(path)
    bad.sock.sendall(stream)
    assert bad.closed_by_server(), case
    wait_for(lambda: listener.stats.malformed[reason] == 1, f"{case} counted as {reason}")
    good.send(client_response("a.telemetry.example.com.", "198.51.100.1"))  # the open one goes on
    assert collected.event.wait(5)
    late = Sender(path)  # and new senders are accepted
    late.handshake()
    late.send(client_response("b.telemetry.example.com.", "198.51.100.2"))
    wait_for(lambda: len(collected.messages) == 2, "both good answers delivered")
    assert listener.stats.dropped == 1


def test_a_dnstap_message_with_a_bad_dns_payload_is_skipped_and_the_connection_goes_on(server):
    listener, collected, path = server
    sender = Sender(path)
    sender.handshake()
    cut = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE)
    cut.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
    cut.message.response_message = b"\x00\x01truncated"
    without = dnstap_pb2.Dnstap(type=dnstap_pb2.Dnstap.MESSAGE)  # CoreDNS's dnstap without `full`
    without.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
    sender.send(client_response("a.telemetry.example.com.", "198.51.100.1"), cut.SerializeToString(),
                without.SerializeToString(), client_response("b.telemetry.example.com.", "198.51.100.2"))
    wait_for(lambda: len(collected.messages) == 2, "the good answers around them delivered")
    assert [m.name for m in collected.messages] == ["a.telemetry.example.com", "b.telemetry.example.com"]
    assert listener.stats.malformed[dnstap.BAD_DNS_MESSAGE] == 2 and listener.stats.messages["malformed"] == 2
    assert listener.stats.connections == 1 and listener.stats.dropped == 0


def test_too_many_senders_are_refused_at_accept(sock_dir):
    path = sock_dir / "dnstap.sock"
    listener = DnstapServer([f"unix://{path}"], Collected(), max_connections=1)
    listener.bind()
    listener.start()
    try:
        first = Sender(path)
        first.handshake()
        wait_for(lambda: listener.stats.connections == 1, "the first connection is served")
        assert Sender(path).closed_by_server()
        assert listener.stats.dropped == 1
    finally:
        listener.close()


def test_addresses_and_sockets(sock_dir):
    assert parse_dnstap_address("tcp://127.0.0.1:6000").port == 6000
    for bad in ("unix://relative.sock", "tcp://host", "udp://127.0.0.1:1", "/var/run/x.sock", "tcp://h:99999"):
        with pytest.raises(ValueError):
            parse_dnstap_address(bad)
    path = sock_dir / "dnstap.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket left by an earlier run is replaced
    stale.close()
    listener = DnstapServer([f"unix://{path}", "tcp://127.0.0.1:0"], Collected())
    listener.bind()
    listener.close()
    assert not path.exists()  # and removed at the end
    path.write_text("the user's file")
    with pytest.raises(OSError, match="dnstap"):
        DnstapServer([f"unix://{path}"], Collected()).bind()
    assert path.read_text() == "the user's file"  # never removed


# -- the daemon -------------------------------------------------------------------------------------


def first_flow(tmp_path: Path) -> Path:
    """The example's first flow alone: a DNS query of my-app (10.0.1.10) to CoreDNS (10.0.0.10)."""
    flows = tmp_path / "flows.jsonl"
    flows.write_bytes((EXAMPLE / "flows.jsonl").read_bytes().splitlines(keepends=True)[0])
    return flows


def daemon_options(tmp_path: Path, socket_path: Path, **extra) -> RunOptions:
    base = dict(policies=(str(EXAMPLE),), input_files=(str(first_flow(tmp_path)),), follow=True,
                out_dir=str(tmp_path / "groups"), resolve=False, metrics_address="127.0.0.1:0",
                dnstap=(f"unix://{socket_path}",))
    base.update(extra)
    return RunOptions(**base)


@pytest.fixture
def running_daemon(tmp_path, sock_dir) -> Iterator[tuple[Daemon, Path]]:
    path = sock_dir / "dnstap.sock"
    daemon = Daemon(daemon_options(tmp_path, path))
    worker = threading.Thread(target=daemon.run)
    worker.start()
    try:
        wait_for(lambda: daemon.summary.flows == 1, "the flow is read")
        yield daemon, path
    finally:
        daemon.stop()
        worker.join(20)
        assert not worker.is_alive()


def held(daemon: Daemon) -> set[str]:
    with daemon._lock:
        return set(daemon.state.denies.get(DENY_ID, {}))


def test_the_daemon_learns_dnstap_answers_by_the_pod_that_asked(running_daemon, tmp_path):
    daemon, path = running_daemon
    sender = Sender(path)
    sender.handshake()
    sender.send(
        client_response("ingest.telemetry.example.com.", "198.51.100.77", client=MY_APP_IP),  # the deny's pod
        client_response("other.telemetry.example.com.", "198.51.100.78", client=COREDNS_IP),  # a pod it does not select
        client_response("lost.telemetry.example.com.", "198.51.100.79", client="10.0.9.9"),  # no flow names it
    )
    wait_for(lambda: sum(daemon.dnstap.stats.messages.values()) == 3, "the answers are learned")
    # The deny holds what its pod resolved and what an unknown address resolved (the name is
    # denied whoever asks); a pod the deny does not select teaches it nothing.
    assert held(daemon) == {"198.51.100.77", "198.51.100.79"}
    assert dict(daemon.dnstap.stats.messages) == {"learned": 2, "unattributed": 1, "ignored": 0}
    # The attribution's DNS knowledge has every answer, for the pod that asked.
    assert daemon.attributor.dns.names_for_ip("198.51.100.77", daemon.clock()) == ("ingest.telemetry.example.com",)

    def written() -> str:  # the group writes land from their own thread
        return "".join(p.read_text() for p in (tmp_path / "groups").rglob("*.yaml"))

    wait_for(lambda: "198.51.100.77/32" in written() and "198.51.100.79/32" in written(), "the CIDR group written")
    with daemon._lock:
        daemon._periodic({"expire": daemon.monotonic(), "snapshot": daemon.monotonic()})
    sample = daemon.registry.get_sample_value
    assert sample("hushflow_dnstap_messages_total", {"kind": "unattributed"}) == 1
    assert sample("hushflow_dnstap_connections", {}) == 1


def test_the_run_summary_counts_the_dnstap_messages(tmp_path, sock_dir):
    import io

    from rich.console import Console

    from hushflow.cli.run import print_summary

    path = sock_dir / "dnstap.sock"
    daemon = Daemon(daemon_options(tmp_path, path))
    worker = threading.Thread(target=daemon.run)
    worker.start()
    try:
        sender = Sender(path)
        sender.handshake()
        sender.send(client_response("a.telemetry.example.com.", "198.51.100.1"), client_query())
        wait_for(lambda: sum(daemon.dnstap.stats.messages.values()) == 2, "the messages are read")
    finally:
        daemon.stop()
        worker.join(20)
    out = io.StringIO()
    print_summary(daemon.summary, Console(file=out, width=200))
    assert "dnstap messages: 1 learned, 0 unattributed, 1 ignored, 0 malformed" in out.getvalue()


def test_the_daemon_counts_malformed_dnstap_as_input_left_out(running_daemon):
    daemon, path = running_daemon
    sender = Sender(path)
    sender.sock.sendall(dnstap.control_frame(77))
    assert sender.closed_by_server()
    wait_for(lambda: daemon.dnstap.stats.malformed[dnstap.BAD_CONTROL_FRAME] == 1, "counted")
    with daemon._lock:
        daemon._periodic({"expire": daemon.monotonic(), "snapshot": daemon.monotonic()})
    assert daemon.registry.get_sample_value(
        "hushflow_malformed_input_total", {"source": "dnstap", "reason": dnstap.BAD_CONTROL_FRAME}) == 1


def test_a_dnstap_socket_that_cannot_be_bound_stops_the_start(tmp_path, sock_dir):
    taken = sock_dir / "file"
    taken.write_text("x")
    with pytest.raises(RunError, match="--dnstap"):
        Daemon(daemon_options(tmp_path, taken))


def test_the_command_line_refuses_a_bad_dnstap_address(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli import main

    result = CliRunner().invoke(main, ["run", "--policies", str(EXAMPLE), "--input-file", str(first_flow(tmp_path)),
                                       "--dnstap", "udp://127.0.0.1:53"])
    assert result.exit_code == 2 and "--dnstap" in result.output and "Traceback" not in result.output


# -- a real Unbound -----------------------------------------------------------------------------------


def unbound_config(directory: Path, port: int, socket_path: Path) -> str:
    return f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-tcp: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{directory}"
    pidfile: "{directory}/unbound.pid"
    use-syslog: no
    logfile: "{directory}/unbound.log"
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    outgoing-interface: 127.0.0.1
    do-not-query-localhost: yes
    module-config: "iterator"
    local-zone: "example.com." static
    local-data: "ingest.telemetry.example.com. 300 IN A 198.51.100.77"
    local-data: "ready.example.com. 300 IN A 192.0.2.1"
remote-control:
    control-enable: no
dnstap:
    dnstap-enable: yes
    dnstap-socket-path: "{socket_path}"
    dnstap-bidirectional: yes
    dnstap-send-identity: yes
    dnstap-identity: "unbound-test"
    dnstap-log-client-response-messages: yes
"""


@contextmanager
def unbound(directory: Path, socket_path: Path, connected=lambda: True) -> Iterator[int]:
    """Unbound on a free loopback port, sending dnstap to `socket_path`; yields the port once it
    answers and `connected()` holds."""
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(binary).is_file():
        pytest.fail("unbound is not installed: run `make test`, which installs Debian's unbound package")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    conf = directory / "unbound.conf"
    conf.write_text(unbound_config(directory, port, socket_path))
    log = directory / "unbound.log"

    def ready() -> bool:
        try:
            reply = query("ready.example.com.", port, timeout=0.3)
        except dns.exception.Timeout:
            return False
        return reply.rcode() == dns.rcode.NOERROR and connected()

    with running([binary, "-d", "-c", str(conf)], ready=ready, what=f"unbound on 127.0.0.1@{port}", timeout=20,
                 details=lambda: log.read_text(errors="replace") if log.exists() else "",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield port


def query(name: str, port: int, timeout: float = 2.0) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout)


def test_a_real_unbound_sends_its_answers_and_the_deny_learns_them(tmp_path, sock_dir):
    socket_path = sock_dir / "dnstap.sock"
    # Unbound asks from 127.0.0.1: a flow makes it my-app's address, so the answer is attributed.
    flow = json.loads((EXAMPLE / "flows.jsonl").read_text().splitlines()[0])
    flow["flow"]["IP"]["source"] = "127.0.0.1"
    flows = tmp_path / "local.jsonl"
    flows.write_text(json.dumps(flow) + "\n")
    daemon = Daemon(daemon_options(tmp_path, socket_path, input_files=(str(flows),)))
    worker = threading.Thread(target=daemon.run)
    worker.start()  # hushflow listens first; Unbound connects to it
    try:
        wait_for(lambda: daemon.summary.flows == 1, "the flow is read")
        with unbound(tmp_path, socket_path, connected=lambda: daemon.dnstap.stats.connections >= 1) as port:
            reply = query("ingest.telemetry.example.com.", port)
            assert [str(rr) for rrset in reply.answer for rr in rrset] == ["198.51.100.77"]
            wait_for(lambda: "198.51.100.77" in held(daemon), "Unbound's answer reaches the deny")
        stats = daemon.dnstap.stats
        # Attributed to my-app (ready.example.com's answers too, once Unbound's dnstap was connected).
        assert stats.messages["learned"] >= 1 and stats.messages["unattributed"] == 0
        assert not stats.malformed
        wait_for(lambda: "198.51.100.77/32" in "".join(p.read_text() for p in (tmp_path / "groups").rglob("*.yaml")),
                 "the CIDR group holds it")
    finally:
        daemon.stop()
        worker.join(20)
    assert not worker.is_alive()


def test_unbound_connects_when_hushflow_starts_after_it_and_again_after_a_restart(tmp_path, sock_dir):
    socket_path = sock_dir / "dnstap.sock"
    with unbound(tmp_path, socket_path) as port:  # no socket yet: Unbound retries
        for start in ("first", "restart"):
            collected = Collected()
            listener = DnstapServer([f"unix://{socket_path}"], collected)
            listener.bind()
            listener.start()
            try:
                wait_for(lambda listener=listener: listener.stats.connections == 1, f"Unbound connects ({start})",
                         timeout=30)
                query("ingest.telemetry.example.com.", port)
                wait_for(lambda collected=collected: any(m.name == "ingest.telemetry.example.com"
                                                         for m in collected.messages), f"its answer arrives ({start})")
            finally:
                listener.close()


# -- deploy/ ------------------------------------------------------------------------------------------


def test_the_deploy_snippets_agree_with_each_other_with_the_daemonset_and_with_run():
    import re

    import yaml

    from hushflow.cli.run import run

    per_node = ROOT / "deploy" / "kubernetes" / "per-node"
    text = (per_node / "coredns-dnstap.md").read_text()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
    hushflow_patch, dns_patch = (yaml.safe_load(body) for language, body in blocks if language == "yaml")
    (corefile,) = [body for language, body in blocks if not language]
    base = yaml.safe_load((per_node / "daemonset.yaml").read_text())
    assert hushflow_patch["kind"] == base["kind"]
    assert hushflow_patch["metadata"] == {key: base["metadata"][key] for key in ("name", "namespace")}
    pod = hushflow_patch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (base_container,) = base["spec"]["template"]["spec"]["containers"]
    assert container["name"] == base_container["name"]
    # The patch replaces args whole: the base's, and --dnstap.
    assert container["args"][:-2] == base_container["args"] and container["args"][-2] == "--dnstap"
    address = container["args"][-1]
    assert run.make_context("hushflow run", list(container["args"][1:])).params["dnstap"] == (address,)
    socket_dir = str(Path(parse_dnstap_address(address).path).parent)
    for patch in (hushflow_patch, dns_patch):
        spec = patch["spec"]["template"]["spec"]
        (volume,) = spec["volumes"]
        assert volume["hostPath"] == {"path": socket_dir, "type": "DirectoryOrCreate"}
        for item in spec["containers"] + spec.get("initContainers", []):
            assert {"name": volume["name"], "mountPath": socket_dir} in item["volumeMounts"]
    assert f"dnstap {address} full" in corefile


def test_one_read_of_answers_is_published_once(running_daemon, monkeypatch):
    """A dnstap read's answers change the deny's group together: it is rendered and written once
    for the read, not once per answer (bench_dnstap: 13.3k → 24.7k messages/s when every denied
    answer is a new IP of a 2,000-IP deny)."""
    from hushflow.flow.dnstap import DnstapMessage

    daemon, _path = running_daemon
    publishes: list[int] = []
    publish = daemon.publisher.publish_changes
    monkeypatch.setattr(daemon.publisher, "publish_changes",
                        lambda changes, read_at=None: publishes.append(len(changes)) or publish(changes, read_at))
    answers = [DnstapMessage("client-response", "192.0.2.99", "10.96.0.10", name="ingest.telemetry.example.com",
                             ips=(f"198.51.100.{20 + i}",), ttl=300) for i in range(3)]
    daemon._dnstap_answers(answers, time.monotonic())
    assert publishes == [3]

    def written() -> bool:  # the group writes land from their own thread
        groups = " ".join(p.read_text() for p in Path(str(daemon.options.out_dir)).rglob("*.yaml"))
        return all(f"198.51.100.{20 + i}/32" in groups for i in range(3))

    wait_for(written, "the three addresses in the deny's group file")
