#!/usr/bin/env python3
"""A realistic corpus of Hubble flows for the benchmarks, in the bytes Hubble writes.

    .venv/bin/python benchmarks/corpus.py -n 1000000 --seed 1 -o flows.jsonl [--stats stats.json]

The bench scripts call :func:`ensure_corpus`, which writes a corpus once into benchmarks/data/
(git-ignored) and reuses it for as long as this file is unchanged (its name carries a hash of it).

**The cluster**, "shop-prod": six EKS nodes, eleven namespaces, 23 workloads with stable labels,
identities and pod names, external services behind DNS names (S3 buckets and two telemetry names
share addresses), the staging namespace in policy audit mode. Its policies are
``benchmarks/policies/corpus.yaml``.

**The traffic.** Sessions start as a Poisson process (``--rate`` flows per second of flow time)
and their events are merged in time order:

- DNS lookups through Cilium's DNS proxy: a REDIRECTED policy verdict and a to-proxy trace, then
  L7 ``dns`` requests and responses (``ips``, ``ttl``, CNAMEs for S3, AAAA queries, search-path
  NXDOMAIN expansions). A connection to a name always follows an answer for it that is still
  live for that pod, and carries the ``destination_names`` Hubble takes from that pod's answers;
- calls inside the cluster (:data:`EDGES`, following each other down the call chain) and to the
  world (:data:`WORLD_EDGES`): policy verdicts (event type 5) at the enforcing ends, trace events
  (type 4) at each observation point of the TCP exchange, L7 HTTP through the ingress proxies of
  workloads with HTTP rules (and a few requests those rules deny);
- denied calls: a DROPPED policy verdict and a drop notification (type 1) for each SYN, retried
  with backoff: POLICY_DENY (181) for an explicit deny, POLICY_DENIED (133) for default deny; in
  the audit namespace an AUDIT verdict instead, and the connection goes through;
- internet clients of the ingress controller, kubelet probes, cilium-health ICMP, kube-apiserver
  calls.

**Verdicts agree with the policies by construction.** Every connection of :data:`EDGES` and
:data:`WORLD_EDGES` names the outcome at each enforcing end and the policy responsible
(``allow("payments/payments-api-egress")``), written from the YAML; the flow fields follow from it
as Cilium 1.19 fills them: ``*_allowed_by`` (labels, revision) and ``policy_log`` on allowed
verdicts, nothing on drops and AUDIT (cilium#42044, what hushflow fills in). Peer identities are
Cilium's: ``fqdn:`` labels for addresses the allow rules' ``toFQDNs`` select, ``cidrgroup:``
labels for those in the CIDR groups ``hushflow compile`` made of the two FQDN denies (already
filled). tests/benchmarks/test_corpus.py checks that hushflow, reading the YAML, finds no
disagreement with a single verdict.

**The bytes are Hubble's by construction.** Each event is an ``observer_pb2.GetFlowsResponse``
built field by field, and its line is what hushflow's Hubble-compatible JSON writer makes of it
(:func:`hushflow.flow.proto_dict.response_bytes_to_event` then
:func:`hushflow.flow.protojson.encode_event`: Go protojson with ``UseProtoNames`` as
``hubble observe -o jsonpb`` prints it, fields in declaration order, enums by name, 64-bit
integers as strings, 0/3/6/9 fraction digits).

Deterministic for a seed (the cluster is the same for every seed; the traffic is the seed's).
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import heapq
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hushflow.flow.proto_dict import response_bytes_to_event
from hushflow.flow.protojson import encode_event
from hushflow.proto import flow_pb2, observer_pb2

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
#: The policies of the simulated cluster.
POLICIES = HERE / "policies" / "corpus.yaml"

CLUSTER = "shop-prod"
REGION = "eu-central-1"
HUBBLE_VERSION = "1.19.4+g2c9ddf4b"
DEFAULT_START = "2026-03-02T09:00:00Z"
DEFAULT_RATE = 2000.0
NODES = 6
#: Namespaces whose endpoints run in policy audit mode.
AUDIT_NAMESPACES = frozenset({"staging"})
_NS = 1_000_000_000
_MS = 1_000_000
_NO_TTL = 4294967295  # what the DNS proxy records as TTL for an answer without records

# -- the cluster -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    name: str
    kind: str  # Deployment, StatefulSet, DaemonSet, CronJob
    replicas: int
    labels: tuple[str, ...]  # the pod's own labels, `key=value`
    port: int = 8080  # where kubelet probes it


WORKLOADS = (
    Workload("kube-system", "coredns", "Deployment", 2, ("k8s-app=kube-dns",), 8181),
    Workload("kube-system", "metrics-server", "Deployment", 1, ("k8s-app=metrics-server",), 10250),
    Workload("ingress-nginx", "ingress-nginx-controller", "Deployment", 2,
             ("app.kubernetes.io/component=controller", "app.kubernetes.io/name=ingress-nginx"), 10254),
    Workload("storefront", "web", "Deployment", 4, ("app=web", "prometheus.io/scrape=true", "tier=frontend")),
    Workload("storefront", "bff", "Deployment", 3, ("app=bff", "tier=frontend")),
    Workload("checkout", "checkout-api", "Deployment", 3,
             ("app=checkout-api", "prometheus.io/scrape=true", "tier=backend")),
    Workload("checkout", "cart", "Deployment", 2, ("app=cart", "tier=backend")),
    Workload("checkout", "redis", "StatefulSet", 1, ("app=redis", "tier=cache"), 6379),
    Workload("payments", "payments-api", "Deployment", 3,
             ("app=payments-api", "pci=true", "prometheus.io/scrape=true", "tier=backend")),
    Workload("payments", "postgres", "StatefulSet", 2, ("app=postgres", "pci=true", "tier=db"), 5432),
    Workload("catalog", "catalog-api", "Deployment", 3, ("app=catalog-api", "prometheus.io/scrape=true")),
    Workload("catalog", "opensearch", "StatefulSet", 3, ("app=opensearch", "tier=db"), 9200),
    Workload("data", "kafka", "StatefulSet", 3, ("app.kubernetes.io/name=kafka",), 9092),
    Workload("data", "etl-worker", "Deployment", 2, ("app=etl-worker",)),
    Workload("monitoring", "prometheus", "StatefulSet", 1, ("app.kubernetes.io/name=prometheus",), 9090),
    Workload("monitoring", "grafana", "Deployment", 1, ("app.kubernetes.io/name=grafana",), 3000),
    Workload("monitoring", "otel-collector", "DaemonSet", NODES, ("app.kubernetes.io/name=otel-collector",), 13133),
    Workload("my-namespace", "my-app", "Deployment", 2, ("app.kubernetes.io/name=my-app",)),
    Workload("my-namespace", "postgres", "StatefulSet", 1, ("app.kubernetes.io/name=postgres",), 5432),
    Workload("staging", "web-staging", "Deployment", 2, ("app=web-staging",)),
    Workload("staging", "sdk-demo", "Deployment", 1, ("app=sdk-demo",)),
    Workload("batch", "nightly-report", "CronJob", 1, ("app=nightly-report",)),
    Workload("batch", "db-backup", "CronJob", 1, ("app=db-backup",)),
)


@dataclass(frozen=True, slots=True)
class Name:
    """An external DNS name: how many addresses, their TTLs, a CNAME, a shared address pool."""

    name: str
    addresses: int
    ttls: tuple[int, ...]
    cname: str = ""
    pool: str = ""  # the names of one pool resolve to the same addresses (S3 buckets, a CDN)
    shares: str = ""  # a name whose first address this one has too (a shared edge address)


S3_CNAME = f"s3-r-w.{REGION}.amazonaws.com"
NAMES = (
    Name("api.stripe.com", 3, (300,)),
    Name("hooks.slack.com", 4, (60, 300)),
    Name("o4505.ingest.sentry.io", 1, (60,)),
    Name(f"catalog-media.s3.{REGION}.amazonaws.com", 6, (5,), S3_CNAME, pool="s3"),
    Name(f"data-lake.s3.{REGION}.amazonaws.com", 6, (5,), S3_CNAME, pool="s3"),
    Name(f"backups.s3.{REGION}.amazonaws.com", 6, (5,), S3_CNAME, pool="s3"),
    Name(f"sts.{REGION}.amazonaws.com", 2, (60,)),
    Name("pypi.org", 4, (300,), pool="fastly"),
    Name("files.pythonhosted.org", 4, (300,), pool="fastly"),
    Name("api.github.com", 1, (60,)),
    Name("otlp-gateway.grafana.example.net", 2, (300,)),
    Name("ingest.telemetry.example.com", 2, (60,)),
    Name("eu.telemetry.example.com", 2, (60,), shares="ingest.telemetry.example.com"),
    Name("stats.vendor-analytics.example", 2, (120, 300)),
)
#: Every `toFQDNs` selector of the allow rules: Cilium labels the addresses of the names they
#: select `fqdn:<selector>` (identities are per address, for every endpoint).
ALLOW_FQDN_SELECTORS = (
    "api.stripe.com", "hooks.slack.com", "o4505.ingest.sentry.io", f"*.s3.{REGION}.amazonaws.com",
    f"sts.{REGION}.amazonaws.com", "pypi.org", "files.pythonhosted.org", "api.github.com",
    "otlp-gateway.grafana.example.net",
)
#: The CiliumCIDRGroup `hushflow compile` makes of each FQDN deny: Cilium labels the identity of an
#: address in a group `cidrgroup:io.cilium.policy.cidrgroupname/<group>`.
DENY_GROUPS = {
    "deny-vendor-telemetry": "hushflow.ccnp.deny-vendor-telemetry.egressdeny-0",
    "my-namespace/my-app-telemetry-block": "hushflow.cnp.my-namespace.my-app-telemetry-block.egressdeny-0",
}
#: `log.value` of the policies that set one (copied into `policy_log` of the verdicts they allow).
POLICY_LOGS = {
    "payments/payments-api-egress": "pci-egress",
    "monitoring/otel-collector": "telemetry-export",
    "my-namespace/my-app-saas-egress": "app-saas-egress",
    "my-namespace/my-app-telemetry-block": "telemetry-blocked",
    "deny-vendor-telemetry": "telemetry-blocked",
    "pci-isolation": "pci-isolation",
}
DNS_POLICY = "allow-dns-proxy"
DNS_PROXY_PORT = 37_541  # Cilium's DNS proxy (tofqdns-proxy-port 0: a random port, fixed per agent)
HTTP_PROXY_PORT = 14_623  # the Envoy listener of the HTTP rules
#: An address that no DNS answer gives: my-app calls it hard-coded (the drop to look at).
HARD_CODED_IP = "198.51.100.23"
APISERVER_IPS = ("10.20.0.14", "10.20.0.87")


# -- what the policies decide --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What Cilium does at one enforcing end of a connection, and the policy responsible
    (``namespace/name`` of a CNP, ``name`` of a CCNP)."""

    kind: str  # allow, deny, default-deny
    policy: str = ""
    l7: bool = False  # allowed into an L7 proxy (HTTP rules): REDIRECTED, with L7 flows
    match_type: int = 2  # Hubble's policy_match_type: 1 L3-Only, 2 L3-L4, 0 none (default deny)


def allow(policy: str, *, l7: bool = False) -> Outcome:
    return Outcome("allow", policy, l7)


def deny(policy: str, *, match_type: int = 2) -> Outcome:
    return Outcome("deny", policy, match_type=match_type)


DEFAULT_DENY = Outcome("default-deny", match_type=0)
PCI_DENY = deny("pci-isolation", match_type=1)  # an L3-only deny rule


@dataclass(frozen=True, slots=True)
class Edge:
    """A call inside the cluster: client workload -> server workload:port. ``egress``/``ingress``:
    the outcome at the client / server end, None where that direction is not enforced (no
    policy-verdict event)."""

    source: tuple[str, str]
    target: tuple[str, str]
    port: int
    weight: float
    egress: Outcome | None
    ingress: Outcome | None
    paths: tuple[str, ...] = ()  # HTTP paths, for L7 flows through the server's proxy


@dataclass(frozen=True, slots=True)
class WorldEdge:
    """A call out of the cluster, to a DNS name (or to :data:`HARD_CODED_IP`)."""

    source: tuple[str, str]
    name: str
    port: int
    weight: float
    egress: Outcome


def _w(namespace: str, name: str) -> tuple[str, str]:
    return (namespace, name)


NGINX = _w("ingress-nginx", "ingress-nginx-controller")
WEB, BFF = _w("storefront", "web"), _w("storefront", "bff")
CHECKOUT, CART, REDIS = _w("checkout", "checkout-api"), _w("checkout", "cart"), _w("checkout", "redis")
PAYMENTS, PG_PAYMENTS = _w("payments", "payments-api"), _w("payments", "postgres")
CATALOG, OPENSEARCH = _w("catalog", "catalog-api"), _w("catalog", "opensearch")
KAFKA, ETL = _w("data", "kafka"), _w("data", "etl-worker")
PROMETHEUS, GRAFANA = _w("monitoring", "prometheus"), _w("monitoring", "grafana")
OTEL = _w("monitoring", "otel-collector")
MY_APP, PG_MY = _w("my-namespace", "my-app"), _w("my-namespace", "postgres")
WEB_STAGING, SDK_DEMO = _w("staging", "web-staging"), _w("staging", "sdk-demo")
REPORT, BACKUP = _w("batch", "nightly-report"), _w("batch", "db-backup")
METRICS_SERVER = _w("kube-system", "metrics-server")

_SCRAPE = allow("allow-prometheus-scrape")
_OTLP = allow("otlp-to-collector")
_OTEL_IN = allow("monitoring/otel-collector")
EDGES = (
    Edge(NGINX, WEB, 8080, 10, allow("ingress-nginx/controller"), allow("storefront/web", l7=True),
         ("/", "/product/{id}", "/static/app.{id}.js", "/cart")),
    Edge(NGINX, BFF, 8080, 4, allow("ingress-nginx/controller"), allow("storefront/bff")),
    Edge(NGINX, MY_APP, 8080, 3, allow("ingress-nginx/controller"), allow("my-namespace/my-app-in-cluster")),
    Edge(WEB, BFF, 8080, 6, allow("storefront/web"), allow("storefront/bff")),
    Edge(BFF, CATALOG, 8080, 6, allow("storefront/bff"), allow("catalog/catalog-api", l7=True),
         ("/v1/products/{id}", "/v1/search?q=boots", "/v1/categories")),
    Edge(BFF, CHECKOUT, 8080, 4, allow("storefront/bff"), allow("checkout/checkout-api", l7=True),
         ("/v1/checkout", "/v1/orders/{id}")),
    Edge(BFF, CART, 8080, 3, allow("storefront/bff"), allow("checkout/cart")),
    Edge(CHECKOUT, CART, 8080, 3, allow("checkout/checkout-api"), allow("checkout/cart")),
    Edge(CHECKOUT, PAYMENTS, 8443, 3, allow("checkout/checkout-api"), allow("payments/payments-api-ingress")),
    Edge(CHECKOUT, KAFKA, 9092, 2, allow("checkout/checkout-api"), allow("data/kafka")),
    Edge(CART, REDIS, 6379, 5, allow("checkout/cart"), allow("checkout/redis")),
    Edge(PAYMENTS, PG_PAYMENTS, 5432, 4, allow("payments/payments-api-egress"), allow("payments/postgres")),
    Edge(CATALOG, OPENSEARCH, 9200, 5, allow("catalog/catalog-api"), allow("catalog/opensearch")),
    Edge(ETL, KAFKA, 9092, 4, allow("data/etl-worker"), allow("data/kafka")),
    Edge(ETL, OPENSEARCH, 9200, 2, allow("data/etl-worker"), allow("catalog/opensearch")),
    Edge(PROMETHEUS, WEB, 9090, 1, allow("monitoring/prometheus"), _SCRAPE),
    Edge(PROMETHEUS, CHECKOUT, 9090, 1, allow("monitoring/prometheus"), _SCRAPE),
    Edge(PROMETHEUS, PAYMENTS, 9090, 1, allow("monitoring/prometheus"), _SCRAPE),
    Edge(PROMETHEUS, CATALOG, 9090, 1, allow("monitoring/prometheus"), _SCRAPE),
    Edge(GRAFANA, PROMETHEUS, 9090, 2, allow("monitoring/grafana"), allow("monitoring/prometheus", l7=True),
         ("/api/v1/query_range", "/api/v1/query")),
    Edge(WEB, OTEL, 4317, 2, _OTLP, _OTEL_IN),
    Edge(CHECKOUT, OTEL, 4317, 2, _OTLP, _OTEL_IN),
    Edge(PAYMENTS, OTEL, 4317, 1, _OTLP, _OTEL_IN),
    Edge(CATALOG, OTEL, 4317, 2, _OTLP, _OTEL_IN),
    Edge(MY_APP, OTEL, 4317, 1, _OTLP, _OTEL_IN),
    Edge(MY_APP, PG_MY, 5432, 3, allow("my-namespace/my-app-in-cluster"), allow("my-namespace/postgres")),
    Edge(BACKUP, PG_MY, 5432, 0.5, allow("batch/db-backup"), allow("my-namespace/postgres")),
    Edge(REPORT, OPENSEARCH, 9200, 1, allow("batch/nightly-report"), allow("catalog/opensearch")),
    Edge(SDK_DEMO, WEB_STAGING, 8080, 1, allow("staging/sdk-demo"), None),  # staging has no ingress policy
    # What the policies stop.
    Edge(WEB_STAGING, CATALOG, 8080, 1, allow("staging/web-staging"), DEFAULT_DENY),  # catalog lets only bff in
    Edge(WEB_STAGING, PAYMENTS, 8443, 1, DEFAULT_DENY, PCI_DENY),  # audited at staging, dropped at payments
    Edge(REPORT, PG_PAYMENTS, 5432, 0.5, allow("batch/nightly-report"), PCI_DENY),
    Edge(ETL, PG_PAYMENTS, 5432, 0.3, DEFAULT_DENY, None),  # a new query nobody allowed
)

_TELEMETRY = deny("deny-vendor-telemetry")
_MY_TELEMETRY = deny("my-namespace/my-app-telemetry-block")
WORLD_EDGES = (
    WorldEdge(PAYMENTS, "api.stripe.com", 443, 6, allow("payments/payments-api-egress")),
    WorldEdge(PAYMENTS, "stats.vendor-analytics.example", 443, 1, DEFAULT_DENY),
    WorldEdge(CHECKOUT, "hooks.slack.com", 443, 1, allow("checkout/checkout-api")),
    WorldEdge(CHECKOUT, "eu.telemetry.example.com", 443, 2, _TELEMETRY),
    WorldEdge(CATALOG, f"catalog-media.s3.{REGION}.amazonaws.com", 443, 4, allow("catalog/catalog-api")),
    WorldEdge(WEB, "o4505.ingest.sentry.io", 443, 2, allow("storefront/web")),
    WorldEdge(WEB, "ingest.telemetry.example.com", 443, 3, _TELEMETRY),
    WorldEdge(ETL, f"data-lake.s3.{REGION}.amazonaws.com", 443, 5, allow("data/etl-worker")),
    WorldEdge(ETL, f"sts.{REGION}.amazonaws.com", 443, 1, allow("data/etl-worker")),
    WorldEdge(ETL, "pypi.org", 443, 1, allow("data/etl-worker")),
    WorldEdge(ETL, "files.pythonhosted.org", 443, 1, allow("data/etl-worker")),
    WorldEdge(ETL, "stats.vendor-analytics.example", 443, 1, DEFAULT_DENY),
    WorldEdge(OTEL, "otlp-gateway.grafana.example.net", 443, 6, allow("monitoring/otel-collector")),
    WorldEdge(GRAFANA, "api.github.com", 443, 1, allow("monitoring/grafana")),
    WorldEdge(GRAFANA, "hooks.slack.com", 443, 1, allow("monitoring/grafana")),
    WorldEdge(MY_APP, "api.stripe.com", 443, 4, allow("my-namespace/my-app-saas-egress")),
    WorldEdge(MY_APP, "hooks.slack.com", 443, 1, allow("my-namespace/my-app-saas-egress")),
    WorldEdge(MY_APP, "ingest.telemetry.example.com", 443, 3, _MY_TELEMETRY),
    WorldEdge(MY_APP, "eu.telemetry.example.com", 80, 1, _MY_TELEMETRY),
    WorldEdge(MY_APP, HARD_CODED_IP, 443, 0.3, DEFAULT_DENY),
    WorldEdge(WEB_STAGING, "api.stripe.com", 443, 1, allow("staging/web-staging")),
    WorldEdge(WEB_STAGING, "stats.vendor-analytics.example", 443, 4, DEFAULT_DENY),
    WorldEdge(WEB_STAGING, "eu.telemetry.example.com", 443, 1, _TELEMETRY),
    WorldEdge(SDK_DEMO, "ingest.telemetry.example.com", 443, 3, _TELEMETRY),
    WorldEdge(SDK_DEMO, "api.github.com", 443, 1, allow("staging/sdk-demo")),
    WorldEdge(SDK_DEMO, "pypi.org", 443, 2, DEFAULT_DENY),
    WorldEdge(REPORT, "hooks.slack.com", 443, 1, allow("batch/nightly-report")),
    WorldEdge(REPORT, "eu.telemetry.example.com", 443, 1, _TELEMETRY),
    WorldEdge(BACKUP, f"backups.s3.{REGION}.amazonaws.com", 443, 2, allow("batch/db-backup")),
)
#: Who calls the kube-apiserver, and the rule that allows it (None: egress not enforced).
APISERVER_CLIENTS = (
    (PROMETHEUS, allow("monitoring/prometheus"), 3),
    (OTEL, allow("monitoring/otel-collector"), 3),
    (NGINX, allow("ingress-nginx/controller"), 2),
    (METRICS_SERVER, None, 2),
)
#: Workloads that receive internet traffic through the load balancer, and the rule that allows it.
INTERNET_INGRESS = (NGINX, allow("ingress-nginx/controller"), (443, 443, 443, 80))


# -- the cluster, built once (the same for every seed) ---------------------------------------------


class _Node:
    __slots__ = ("host", "index", "ip", "labels", "name")

    def __init__(self, index: int, host: str, ip: str, labels: list[str]) -> None:
        self.index = index
        self.host = host
        self.name = f"{CLUSTER}/{host}"
        self.ip = ip
        self.labels = labels


class _Pod:
    """One pod: where it runs, its addresses and devices, its Endpoint, its live DNS answers."""

    __slots__ = ("dns", "endpoint", "host_mac", "ifindex", "ifname", "ip", "mac", "name", "node", "workload")
    workload: Workload
    name: str
    node: _Node
    ip: str
    mac: str
    host_mac: str  # the host side of its lxc device
    ifindex: int
    ifname: str
    endpoint: flow_pb2.Endpoint

    def __init__(self) -> None:
        self.dns: dict[str, tuple[int, int, tuple[str, ...]]] = {}  # name -> (answered, expires, ips)


class _Remote:
    """A peer outside the cluster's pods: its address and the Endpoint Hubble shows for it."""

    __slots__ = ("endpoint", "ip")

    def __init__(self, ip: str, endpoint: flow_pb2.Endpoint) -> None:
        self.ip = ip
        self.endpoint = endpoint


_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes


def _selects(selector: str, name: str) -> bool:
    """Cilium's matchName / matchPattern (`*` stays within one label)."""
    pattern = "".join("[-a-zA-Z0-9_]*" if c == "*" else re.escape(c) for c in selector.lower())
    return re.fullmatch(pattern, name.lower()) is not None


class Cluster:
    """Nodes, pods, services, external addresses and the Policy entries Hubble prints."""

    def __init__(self) -> None:
        rng = random.Random(CLUSTER)
        zones = [f"{REGION}{z}" for z in "abc"]
        self.nodes: list[_Node] = []
        for i in range(NODES):
            ip = f"10.20.{i % 3 * 16 + 1}.{rng.randint(10, 250)}"
            host = f"ip-{ip.replace('.', '-')}.{REGION}.compute.internal"
            zone = zones[i % 3]
            group = "ng-general" if i < 4 else "ng-memory"
            instance = "m6i.2xlarge" if i < 4 else "r6i.2xlarge"
            labels = [
                f"eks.amazonaws.com/nodegroup={group}", "kubernetes.io/arch=amd64", f"kubernetes.io/hostname={host}",
                "kubernetes.io/os=linux", f"node.kubernetes.io/instance-type={instance}",
                f"topology.kubernetes.io/zone={zone}",
            ]
            self.nodes.append(_Node(i, host, ip, sorted(labels)))

        self.pods: dict[tuple[str, str], list[_Pod]] = {}
        self.service_ip: dict[tuple[str, str], str] = {}
        identities: set[int] = set()
        endpoint_ids: set[int] = set()
        next_ip = [10] * NODES
        for n, wl in enumerate(WORKLOADS):
            identity = self._unique(rng, identities, 10_000, 65_000)
            labels = sorted(
                [f"k8s:{label}" for label in wl.labels]
                + [
                    f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={wl.namespace}",
                    f"k8s:io.cilium.k8s.policy.cluster={CLUSTER}",
                    f"k8s:io.cilium.k8s.policy.serviceaccount={wl.name}",
                    f"k8s:io.kubernetes.pod.namespace={wl.namespace}",
                ]
            )
            template = "".join(rng.choice(_SUFFIX) for _ in range(9 + n % 2))
            pods = []
            for r in range(wl.replicas):
                pod = _Pod()
                pod.workload = wl
                suffix = "".join(rng.choice(_SUFFIX) for _ in range(5))
                pod.name = {
                    "Deployment": f"{wl.name}-{template}-{suffix}",
                    "StatefulSet": f"{wl.name}-{r}",
                    "DaemonSet": f"{wl.name}-{suffix}",
                    "CronJob": f"{wl.name}-{29_545_000 + rng.randint(0, 9_999)}-{suffix}",
                }[wl.kind]
                pod.node = self.nodes[r % NODES if wl.kind == "DaemonSet" else rng.randrange(NODES)]
                pod.ip = f"10.244.{pod.node.index}.{next_ip[pod.node.index]}"
                next_ip[pod.node.index] += rng.randint(1, 3)
                pod.mac = self._mac(rng)
                pod.host_mac = self._mac(rng)
                pod.ifindex = rng.randint(14, 220)
                pod.ifname = f"lxc{rng.getrandbits(48):012x}"
                pod.endpoint = flow_pb2.Endpoint(
                    ID=self._unique(rng, endpoint_ids, 100, 4095), identity=identity, cluster_name=CLUSTER,
                    namespace=wl.namespace, labels=labels, pod_name=pod.name,
                    workloads=[flow_pb2.Workload(name=wl.name, kind=wl.kind)],
                )
                pods.append(pod)
            self.pods[(wl.namespace, wl.name)] = pods
            self.service_ip[(wl.namespace, wl.name)] = f"10.100.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        self.coredns = self.pods[("kube-system", "coredns")]
        self.all_pods = [pod for pods in self.pods.values() for pod in pods]
        self.otel_on_node = {pod.node.index: pod for pod in self.pods[OTEL]}
        self.health = [
            (flow_pb2.Endpoint(ID=self._unique(rng, endpoint_ids, 100, 4095), identity=4, labels=["reserved:health"]),
             f"10.244.{i}.{next_ip[i] + 1}")
            for i in range(NODES)
        ]
        self.host = flow_pb2.Endpoint(identity=1, labels=["reserved:host"])
        self.remote_health = flow_pb2.Endpoint(identity=4, labels=["reserved:health"])

        # External addresses, and the identity Cilium gives each one.
        used: set[str] = set()
        pools: dict[str, list[str]] = {}
        self.addresses: dict[str, list[str]] = {}
        for spec in NAMES:
            if spec.pool and spec.pool in pools:
                ips = list(pools[spec.pool])
            else:
                ips = [self._public_ip(rng, used) for _ in range(spec.addresses)]
                if spec.shares:
                    ips[0] = self.addresses[spec.shares][0]
                if spec.pool:
                    pools[spec.pool] = ips
            self.addresses[spec.name] = ips
        self.names = {spec.name: spec for spec in NAMES}
        names_of: dict[str, set[str]] = {}
        for name, ips in self.addresses.items():
            for ip in ips:
                names_of.setdefault(ip, set()).add(name)
        in_group: dict[str, set[str]] = {}
        for edge in WORLD_EDGES:
            if edge.egress.kind == "deny" and edge.name in self.addresses:
                for ip in self.addresses[edge.name]:
                    in_group.setdefault(ip, set()).add(edge.egress.policy)
        self.world: dict[str, _Remote] = {}
        label_identities: dict[tuple[str, ...], int] = {}
        next_local = 16_777_217  # local (CIDR/FQDN) identities start at 1 << 24
        apiserver_labels = ("reserved:kube-apiserver", "reserved:world")
        label_identities[apiserver_labels] = next_local
        next_local += 1
        for ip, names in sorted(names_of.items()):
            labels_set = {f"fqdn:{s}" for s in ALLOW_FQDN_SELECTORS if any(_selects(s, n) for n in names)}
            labels_set.update(f"cidrgroup:io.cilium.policy.cidrgroupname/{DENY_GROUPS[policy]}"
                              for policy in in_group.get(ip, ()))
            if not labels_set:
                self.world[ip] = _Remote(ip, flow_pb2.Endpoint(identity=2, labels=["reserved:world"]))
                continue
            identity_labels = (*sorted(labels_set), "reserved:world")
            if identity_labels not in label_identities:
                label_identities[identity_labels] = next_local
                next_local += 1
            self.world[ip] = _Remote(ip, flow_pb2.Endpoint(identity=label_identities[identity_labels],
                                                           labels=identity_labels))
        self.world[HARD_CODED_IP] = _Remote(HARD_CODED_IP, flow_pb2.Endpoint(identity=2, labels=["reserved:world"]))
        apiserver = flow_pb2.Endpoint(identity=label_identities[apiserver_labels], labels=apiserver_labels)
        self.apiservers = [_Remote(ip, apiserver) for ip in APISERVER_IPS]
        self.internet_clients = [self._public_ip(rng, used) for _ in range(3000)]
        self.internet_client = flow_pb2.Endpoint(identity=2, labels=["reserved:world"])

        self.policies: dict[str, flow_pb2.Policy] = {}
        for key in sorted(self._policy_keys()):
            namespace, _, policy = key.rpartition("/")
            kind = "CiliumNetworkPolicy" if namespace else "CiliumClusterwideNetworkPolicy"
            uid = hashlib.sha256(f"{CLUSTER}/{key}".encode()).hexdigest()
            policy_labels = [f"k8s:io.cilium.k8s.policy.derived-from={kind}", f"k8s:io.cilium.k8s.policy.name={policy}"]
            if namespace:
                policy_labels.append(f"k8s:io.cilium.k8s.policy.namespace={namespace}")
            policy_labels.append(
                f"k8s:io.cilium.k8s.policy.uid={uid[:8]}-{uid[8:12]}-4{uid[13:16]}-a{uid[17:20]}-{uid[20:32]}")
            self.policies[key] = flow_pb2.Policy(name=policy, namespace=namespace, labels=policy_labels,
                                                 revision=3 + int(uid[32:36], 16) % 40, kind=kind)

    @staticmethod
    def _policy_keys() -> set[str]:
        keys = {DNS_POLICY}
        outcomes = [e.egress for e in EDGES] + [e.ingress for e in EDGES] + [e.egress for e in WORLD_EDGES]
        outcomes += [o for _, o, _ in APISERVER_CLIENTS] + [INTERNET_INGRESS[1]]
        keys.update(o.policy for o in outcomes if o is not None and o.policy)
        return keys

    @staticmethod
    def _unique(rng: random.Random, used: set[int], low: int, high: int) -> int:
        while True:
            value = rng.randint(low, high)
            if value not in used:
                used.add(value)
                return value

    @staticmethod
    def _mac(rng: random.Random) -> str:
        octets = [(rng.getrandbits(8) & 0xFE) | 0x02] + [rng.getrandbits(8) for _ in range(5)]
        return ":".join(f"{o:02x}" for o in octets)

    @staticmethod
    def _public_ip(rng: random.Random, used: set[str]) -> str:
        while True:
            ip = f"{rng.choice((3, 13, 18, 35, 44, 52, 54, 104, 140, 151, 185))}.{rng.randint(0, 255)}." \
                 f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            if ip not in used:
                used.add(ip)
                return ip


# -- traffic ------------------------------------------------------------------------------------------

_V = flow_pb2.Verdict
FORWARDED, DROPPED, AUDIT, REDIRECTED = _V.FORWARDED, _V.DROPPED, _V.AUDIT, _V.REDIRECTED
_P = flow_pb2.TraceObservationPoint
TO_PROXY, TO_HOST, TO_STACK = _P.TO_PROXY, _P.TO_HOST, _P.TO_STACK
TO_OVERLAY, TO_ENDPOINT = _P.TO_OVERLAY, _P.TO_ENDPOINT
# The trace event's sub_type is its observation point, numbered as in pkg/monitor/api/types.go.
_TRACE_SUB_TYPE = {TO_ENDPOINT: 0, TO_PROXY: 1, TO_HOST: 2, TO_STACK: 3, TO_OVERLAY: 4}
NEW, ESTABLISHED, REPLY = flow_pb2.NEW, flow_pb2.ESTABLISHED, flow_pb2.REPLY
INGRESS, EGRESS = flow_pb2.INGRESS, flow_pb2.EGRESS
L3_L4, L7 = flow_pb2.L3_L4, flow_pb2.L7
POLICY_DENIED, POLICY_DENY = flow_pb2.POLICY_DENIED, flow_pb2.POLICY_DENY
_DROP_CODES = {POLICY_DENIED: 133, POLICY_DENY: 181}
_DNS_ALLOW = allow(DNS_POLICY, l7=True)  # the DNS rule sends the query to the proxy: REDIRECTED


def _flags(**set_flags: bool) -> flow_pb2.TCPFlags:
    return flow_pb2.TCPFlags(**set_flags)


# TCP flags of a packet -> (TCPFlags, Hubble's summary)
TCP = {
    "S": (_flags(SYN=True), "TCP Flags: SYN"),
    "SA": (_flags(SYN=True, ACK=True), "TCP Flags: SYN, ACK"),
    "A": (_flags(ACK=True), "TCP Flags: ACK"),
    "PA": (_flags(PSH=True, ACK=True), "TCP Flags: ACK, PSH"),
    "FA": (_flags(FIN=True, ACK=True), "TCP Flags: ACK, FIN"),
}
# A short TCP conversation: (flags, from the server?).
_CONVERSATION = (("S", False), ("SA", True), ("A", False), ("PA", False), ("PA", True))
_CLOSE = (("FA", False), ("FA", True))
_HTTP_CODES = ((200, 80), (201, 3), (204, 3), (304, 5), (404, 6), (500, 2), (503, 1))
_USER_AGENTS = {
    "ingress-nginx-controller": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "grafana": "Grafana/11.4.0",
}


class _End:
    """One end of a connection: its address, its Endpoint, the pod (None outside the cluster)."""

    __slots__ = ("endpoint", "ip", "pod")

    def __init__(self, ip: str, endpoint: flow_pb2.Endpoint, pod: _Pod | None = None) -> None:
        self.ip = ip
        self.endpoint = endpoint
        self.pod = pod


def _of(pod: _Pod) -> _End:
    return _End(pod.ip, pod.endpoint, pod)


def _verdict_of(outcome: Outcome, audit: bool) -> flow_pb2.Verdict:
    """Hubble's verdict: REDIRECTED into an L7 proxy; what policy drops is only AUDIT in audit mode."""
    if outcome.kind == "allow":
        return REDIRECTED if outcome.l7 else FORWARDED
    return AUDIT if audit else DROPPED


class Traffic:
    """The seed's traffic over the cluster: :meth:`lines` yields the corpus, in time order."""

    def __init__(self, seed: int = 1, start: str = DEFAULT_START, rate: float = DEFAULT_RATE,
                 cluster: Cluster | None = None) -> None:
        self.cluster = cluster if cluster is not None else Cluster()
        self.rng = random.Random(seed)
        self.t = parse_time(start)
        self.rate = rate
        self.stats: Counter[str] = Counter()
        self._heap: list[tuple[int, int, bytes, str]] = []
        self._seq = 0
        self._emitter = flow_pb2.Emitter(name="Hubble", version=HUBBLE_VERSION)
        self._edges_from: dict[tuple[str, str], list[Edge]] = {}
        for edge in EDGES:
            self._edges_from.setdefault(edge.source, []).append(edge)
        self._edge_weights = [e.weight for e in EDGES]
        self._world_weights = [e.weight for e in WORLD_EDGES]
        self._probed = [p for p in self.cluster.all_pods if p.workload.kind != "CronJob"]
        self._apiserver_weights = [w for _, _, w in APISERVER_CLIENTS]
        self._scenarios: list[Callable[[int], None]] = [
            self.call, self.call_world, self.lookup_service, self.internet, self.probe, self.apiserver,
            self.health,
        ]
        self._scenario_weights = [30, 24, 24, 10, 14, 10, 3]

    # -- the output --------------------------------------------------------------------------------

    def lines(self, count: int) -> Iterator[bytes]:
        """The first ``count`` lines of the corpus (no newline), in time order."""
        rng = self.rng
        heap = self._heap
        pop = heapq.heappop
        to_event = response_bytes_to_event
        stats = self.stats
        written = 0
        while True:
            before = self._seq
            rng.choices(self._scenarios, self._scenario_weights)[0](self.t)
            # Flow time advances with what was emitted: `rate` flows per second on average. Events
            # are written once no session still to come can start before them.
            self.t += int(rng.expovariate(1.0) * (self._seq - before) * _NS / self.rate) + 1
            while heap and heap[0][0] <= self.t:
                _, _, raw, key = pop(heap)
                stats[key] += 1
                yield encode_event(to_event(raw))
                written += 1
                if written == count:
                    return

    def _push(self, t: int, response: observer_pb2.GetFlowsResponse, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, response.SerializeToString(), key))

    def _flow(self, t: int, node: _Node, verdict: flow_pb2.Verdict, kind: flow_pb2.FlowType
              ) -> tuple[observer_pb2.GetFlowsResponse, flow_pb2.Flow]:
        """A new event at ``t`` on ``node``: what every Hubble flow carries filled in."""
        response = observer_pb2.GetFlowsResponse()
        f = response.flow
        seconds, nanos = divmod(t, _NS)
        f.time.seconds = seconds
        f.time.nanos = nanos
        u = self.rng.getrandbits(128)
        f.uuid = f"{u >> 96:08x}-{(u >> 80) & 0xFFFF:04x}-4{(u >> 68) & 0xFFF:03x}-" \
                 f"{0x8000 | (u >> 52) & 0x3FFF:04x}-{u & 0xFFFFFFFFFFFF:012x}"
        f.emitter.CopyFrom(self._emitter)
        f.verdict = verdict
        f.Type = kind
        f.node_name = node.name
        f.node_labels.extend(node.labels)
        response.node_name = node.name
        response.time.seconds = seconds
        response.time.nanos = nanos
        return response, f

    @staticmethod
    def _ports(f: flow_pb2.Flow, tcp: bool, sport: int, dport: int) -> None:
        ports = f.l4.TCP if tcp else f.l4.UDP
        ports.source_port = sport
        ports.destination_port = dport

    @staticmethod
    def _addresses(f: flow_pb2.Flow, src: _End, dst: _End) -> None:
        f.IP.source = src.ip
        f.IP.destination = dst.ip
        f.IP.ipVersion = flow_pb2.IPv4
        f.source.CopyFrom(src.endpoint)
        f.destination.CopyFrom(dst.endpoint)

    # -- events ------------------------------------------------------------------------------------

    def _verdict(self, t: int, node: _Node, client: _End, server: _End, sport: int, dport: int,
                 direction: flow_pb2.TrafficDirection, outcome: Outcome, audit: bool, names: Sequence[str] = (),
                 tcp: bool = True) -> None:
        """A policy-verdict event (type 5) for the first packet of a connection, at the enforcing end."""
        verdict = _verdict_of(outcome, audit)
        response, f = self._flow(t, node, verdict, L3_L4)
        reason: flow_pb2.DropReason | None = None
        self._ethernet(f, client, server, direction)
        if verdict == DROPPED:
            reason = POLICY_DENY if outcome.kind == "deny" else POLICY_DENIED
            f.drop_reason = _DROP_CODES[reason]
            f.drop_reason_desc = reason
        else:
            f.is_reply.value = False  # Hubble: known on verdicts, left unset on drops
        self._addresses(f, client, server)
        if tcp:
            self._ports(f, True, sport, dport)
            f.l4.TCP.flags.CopyFrom(TCP["S"][0])
            f.Summary = TCP["S"][1]
        else:
            self._ports(f, False, sport, dport)
            f.Summary = "UDP"
        if names:
            (f.destination_names if direction == EGRESS else f.source_names).extend(names)
        f.event_type.type = 5
        f.traffic_direction = direction
        f.policy_match_type = outcome.match_type
        if outcome.kind == "allow":
            policy = self.cluster.policies[outcome.policy]
            (f.egress_allowed_by if direction == EGRESS else f.ingress_allowed_by).append(policy)
            log = POLICY_LOGS.get(outcome.policy)
            if log:
                f.policy_log.append(log)
        elif verdict == DROPPED and reason == POLICY_DENY:
            # Cilium <= 1.19 names the deny rule on its own verdicts, but not its log value (cilium#42044).
            policy = self.cluster.policies[outcome.policy]
            (f.egress_denied_by if direction == EGRESS else f.ingress_denied_by).append(policy)
        self._push(t, response, f"verdict {flow_pb2.Verdict.Name(verdict)}" +
                   (f" {flow_pb2.DropReason.Name(reason)}" if reason is not None else ""))

    def _drop(self, t: int, node: _Node, client: _End, server: _End, sport: int, dport: int,
              direction: flow_pb2.TrafficDirection, reason: flow_pb2.DropReason, names: Sequence[str] = ()) -> None:
        """A drop notification (type 1) for a packet the datapath dropped."""
        response, f = self._flow(t, node, DROPPED, L3_L4)
        code = _DROP_CODES[reason]
        f.drop_reason = code
        self._ethernet(f, client, server, direction)
        self._addresses(f, client, server)
        self._ports(f, True, sport, dport)
        f.l4.TCP.flags.CopyFrom(TCP["S"][0])
        if names:
            (f.destination_names if direction == EGRESS else f.source_names).extend(names)
        f.event_type.type = 1
        f.event_type.sub_type = code
        f.traffic_direction = direction
        f.file.name = "bpf_lxc.c"
        f.file.line = 1486 if direction == EGRESS else 2213
        f.drop_reason_desc = reason
        f.Summary = TCP["S"][1]
        self._push(t, response, f"drop {flow_pb2.DropReason.Name(reason)}")

    def _trace(self, t: int, node: _Node, point: flow_pb2.TraceObservationPoint,
               direction: flow_pb2.TrafficDirection, reason: flow_pb2.TraceReason, src: _End, dst: _End,
               sport: int, dport: int, flags: str, reply: bool, *, names: Sequence[str] = (),
               interface: _Pod | None = None, tcp: bool = True, proxy_port: int = 0) -> None:
        """A trace event (type 4): a forwarded packet at one observation point."""
        response, f = self._flow(t, node, FORWARDED, L3_L4)
        if point == TO_ENDPOINT and dst.pod is not None:  # delivered to the pod through its lxc device
            f.ethernet.source, f.ethernet.destination = dst.pod.host_mac, dst.pod.mac
        elif point != TO_HOST and src.pod is not None and src.pod.node is node:  # leaving the pod
            f.ethernet.source, f.ethernet.destination = src.pod.mac, src.pod.host_mac
        self._addresses(f, src, dst)
        self._ports(f, tcp, sport, dport)
        if tcp:
            f.l4.TCP.flags.CopyFrom(TCP[flags][0])
            f.Summary = TCP[flags][1]
        else:
            f.Summary = "UDP"
        if names:
            (f.source_names if reply else f.destination_names).extend(names)
        if reply:
            f.reply = True
            f.is_reply.value = True
        else:
            f.is_reply.value = False
        f.event_type.type = 4
        f.event_type.sub_type = _TRACE_SUB_TYPE[point]
        f.traffic_direction = direction
        f.trace_observation_point = point
        f.trace_reason = reason
        if interface is not None:
            f.interface.index = interface.ifindex
            f.interface.name = interface.ifname
        if proxy_port:
            f.proxy_port = proxy_port
        self._push(t, response, "trace")

    @staticmethod
    def _ethernet(f: flow_pb2.Flow, client: _End, server: _End, direction: flow_pb2.TrafficDirection) -> None:
        if direction == EGRESS and client.pod is not None:
            f.ethernet.source, f.ethernet.destination = client.pod.mac, client.pod.host_mac
        elif direction == INGRESS and server.pod is not None:
            f.ethernet.source, f.ethernet.destination = server.pod.host_mac, server.pod.mac

    # -- DNS ----------------------------------------------------------------------------------------

    def _lookup(self, t: int, pod: _Pod, name: str, *, aaaa: bool = False) -> int:
        """Resolve ``name`` for ``pod`` through the DNS proxy; returns the time of the last answer."""
        rng = self.rng
        dns = rng.choice(self.cluster.coredns)
        client, server = _of(pod), _of(dns)
        node = pod.node
        sport = rng.randint(32768, 60999)
        self._verdict(t, node, client, server, sport, 53, EGRESS, _DNS_ALLOW, False, tcp=False)
        t += rng.randint(2_000, 15_000)
        self._trace(t, node, TO_PROXY, EGRESS, NEW, client, server, sport, 53, "", False, tcp=False,
                    proxy_port=DNS_PROXY_PORT)
        queries = []
        if not name.endswith(".cluster.local") and rng.random() < 0.4:
            ns = pod.workload.namespace
            queries = [f"{name}.{ns}.svc.cluster.local.", f"{name}.svc.cluster.local.", f"{name}.cluster.local.",
                       f"{name}.{REGION}.compute.internal."]
        queries.append(name + ".")
        for query in queries:
            for qtype in ("A", "AAAA") if aaaa else ("A",):
                t += rng.randint(20_000, 200_000)
                self._dns_request(t, node, client, server, sport, query, qtype)
                latency = rng.randint(150_000, 900_000) if query != name + "." else rng.randint(300_000, 6_000_000)
                self._dns_response(t + latency, node, server, client, sport, query, qtype, latency, pod, name)
                t += latency
        return t

    def _dns_request(self, t: int, node: _Node, client: _End, server: _End, sport: int, query: str,
                     qtype: str) -> None:
        response, f = self._flow(t, node, FORWARDED, L7)
        self._addresses(f, client, server)
        self._ports(f, False, sport, 53)
        f.l7.type = flow_pb2.REQUEST
        f.l7.dns.query = query
        f.l7.dns.observation_source = "proxy"
        f.l7.dns.qtypes.append(qtype)
        f.event_type.type = 129
        f.traffic_direction = EGRESS
        f.is_reply.value = False
        f.Summary = f"DNS Query {query} {qtype}"
        self._push(t, response, "dns request")

    def _dns_response(self, t: int, node: _Node, server: _End, client: _End, sport: int, query: str,
                      qtype: str, latency: int, pod: _Pod, name: str) -> None:
        cluster = self.cluster
        ips: list[str] = []
        cnames: list[str] = []
        rcode = 0
        ttl = _NO_TTL
        if query != name + ".":
            rcode = 3  # NXDOMAIN: a search-path expansion
        elif name in cluster.addresses:
            known = cluster.names[name]
            if qtype == "A":
                ips = list(cluster.addresses[name])
                shift = self.rng.randrange(len(ips))
                ips = ips[shift:] + ips[:shift]  # round robin
                ttl = self.rng.choice(known.ttls)
            if known.cname:
                cnames = [known.cname + "."]
        elif qtype == "A":  # a Service name: its ClusterIP
            ips = [cluster.service_ip[_service_of(name)]]
            ttl = 30
        response, f = self._flow(t, node, FORWARDED, L7)
        self._addresses(f, server, client)
        self._ports(f, False, 53, sport)
        f.l7.type = flow_pb2.RESPONSE
        f.l7.latency_ns = latency
        d = f.l7.dns
        d.query = query
        d.ips.extend(ips)
        d.ttl = ttl
        d.cnames.extend(cnames)
        d.observation_source = "proxy"
        d.rcode = rcode
        d.qtypes.append(qtype)
        d.rrtypes.extend(["CNAME"] * len(cnames) + ["A"] * len(ips))
        f.reply = True
        f.event_type.type = 129
        f.traffic_direction = EGRESS
        f.is_reply.value = True
        answer = "RCode: Non-Existent Domain" if rcode == 3 else f'"{",".join(ips)}"' if ips else ""
        f.Summary = f"DNS Answer {answer} TTL: {ttl} (Proxy {query} {qtype})"
        self._push(t, response, "dns response")
        if ips:
            pod.dns[name] = (t, t + ttl * _NS, tuple(ips))

    def _resolved(self, t: int, pod: _Pod, name: str) -> tuple[int, tuple[str, ...]]:
        """The pod's live answer for ``name`` (looked up first when it has none, and now and then
        anyway): (time the connection can start, addresses)."""
        cached = self.pod_answer(pod, name, t)
        if cached is None or self.rng.random() < 0.5:
            t = self._lookup(t, pod, name, aaaa=self.rng.random() < 0.3) + self.rng.randint(20_000, 300_000)
            cached = self.pod_answer(pod, name, t)
            assert cached is not None
        return t, cached

    @staticmethod
    def pod_answer(pod: _Pod, name: str, t: int) -> tuple[str, ...] | None:
        answer = pod.dns.get(name)
        if answer is None or not answer[0] <= t < answer[1]:
            return None
        return answer[2]

    @staticmethod
    def destination_names(pod: _Pod, ip: str, t: int) -> list[str]:
        """What Hubble names ``ip`` for ``pod``: the names of the pod's live answers that hold it."""
        return sorted(name for name, (at, expires, ips) in pod.dns.items() if at <= t < expires and ip in ips)

    # -- connections ---------------------------------------------------------------------------------

    def _connection(self, t: int, client: _End, server: _End, dport: int, egress: Outcome | None,
                    ingress: Outcome | None, *, names: Sequence[str] = (), paths: Sequence[str] = (),
                    rtt: int = 0) -> int:
        """One TCP connection from ``client`` to ``server``: verdicts, drops, traces, HTTP. Returns
        the time the server answered the request (when the calls it makes in turn happen)."""
        rng = self.rng
        sport = rng.randint(32768, 60999)
        cpod, spod = client.pod, server.pod
        cnode = cpod.node if cpod is not None else None
        snode = spod.node if spod is not None else None
        rtt = rtt or rng.randint(80_000, 900_000)
        audit_client = cpod is not None and cpod.workload.namespace in AUDIT_NAMESPACES
        audit_server = spod is not None and spod.workload.namespace in AUDIT_NAMESPACES
        # Where packets leaving the client's node are seen (none when both ends share a node).
        out_point: flow_pb2.TraceObservationPoint | None = None
        if cnode is not None and snode is not cnode:
            out_point = TO_OVERLAY if snode is not None else TO_STACK
        if egress is not None and cnode is not None:
            if egress.kind != "allow" and not audit_client:
                self._retransmits(t, cnode, client, server, sport, dport, EGRESS, egress, names)
                return t
            self._verdict(t, cnode, client, server, sport, dport, EGRESS, egress, audit_client, names)
            t += rng.randint(3_000, 30_000)
        if ingress is not None and snode is not None and ingress.kind != "allow" and not audit_server:
            self._retransmits(t, snode, client, server, sport, dport, INGRESS, ingress, (), out_point=out_point,
                              client_node=cnode)
            return t
        http = bool(paths) and ingress is not None and ingress.l7
        # With monitor aggregation (the default), a trace event only for new TCP flags in each direction.
        conversation = (*_CONVERSATION, *_CLOSE)
        answered = 0
        half = rtt // 2 if cnode is not snode else rng.randint(5_000, 40_000)
        for flags, from_server in conversation:
            if from_server:
                if snode is not None and cnode is not snode:
                    back_point = TO_OVERLAY if cnode is not None else TO_STACK
                    self._trace(t, snode, back_point, INGRESS, REPLY, server, client, dport, sport, flags, True)
                if cnode is not None:
                    self._trace(t + half, cnode, TO_ENDPOINT, EGRESS, REPLY, server, client, dport, sport, flags,
                                True, names=names, interface=cpod)
                if flags == "PA" and not answered:
                    answered = t
                t += half + rng.randint(20_000, 2_000_000)
                continue
            reason = NEW if flags == "S" else ESTABLISHED
            if out_point is not None and cnode is not None:
                self._trace(t, cnode, out_point, EGRESS, reason, client, server, sport, dport, flags, False,
                            names=names)
            if snode is not None:
                t_in = t + half
                if flags == "S" and ingress is not None:
                    self._verdict(t_in, snode, client, server, sport, dport, INGRESS, ingress, audit_server)
                    t_in += rng.randint(2_000, 10_000)
                if http:
                    self._trace(t_in, snode, TO_PROXY, INGRESS, reason, client, server, sport, dport, flags, False,
                                proxy_port=HTTP_PROXY_PORT)
                else:
                    self._trace(t_in, snode, TO_ENDPOINT, INGRESS, reason, client, server, sport, dport, flags,
                                False, interface=spod)
                if http and flags == "PA":
                    t = self._http(t_in + rng.randint(30_000, 200_000), snode, client, server, sport, dport,
                                   rng.choice(paths))
                    http = False
                    continue
            t += half + rng.randint(10_000, 400_000)
        return answered or t

    def _retransmits(self, t: int, node: _Node, client: _End, server: _End, sport: int, dport: int,
                     direction: flow_pb2.TrafficDirection, outcome: Outcome, names: Sequence[str], *,
                     out_point: flow_pb2.TraceObservationPoint | None = None,
                     client_node: _Node | None = None) -> None:
        """A dropped SYN and its retransmits (1 s, 2 s, 4 s backoff): for each, the policy verdict
        and the drop notification at the enforcing end (and the SYN leaving the client's node)."""
        rng = self.rng
        reason = POLICY_DENY if outcome.kind == "deny" else POLICY_DENIED
        backoff = _NS
        for attempt in range(rng.choice((1, 2, 3, 3, 4))):
            if attempt:
                t += backoff + rng.randint(0, 40 * _MS)
                backoff *= 2
            t_at = t
            if out_point is not None and client_node is not None:
                self._trace(t, client_node, out_point, EGRESS, NEW, client, server, sport, dport, "S", False)
                t_at = t + rng.randint(100_000, 500_000)
            self._verdict(t_at, node, client, server, sport, dport, direction, outcome, False, names)
            self._drop(t_at + rng.randint(1_000, 8_000), node, client, server, sport, dport, direction, reason, names)

    def _http(self, t: int, node: _Node, client: _End, server: _End, sport: int, dport: int, path: str) -> int:
        """An HTTP request and its response through the server's ingress proxy (L7 flows); returns
        the time of the response."""
        rng = self.rng
        assert server.pod is not None
        wl = server.pod.workload
        path = path.replace("{id}", str(rng.randint(1000, 99999)))
        denied = rng.random() < 0.02
        method = "DELETE" if denied else ("GET" if rng.random() < 0.8 or "?" in path else "POST")
        if wl.name == "web" and method == "POST":
            path = "/cart"
        authority = f"{wl.name}.{wl.namespace}.svc.cluster.local:{dport}"
        url = f"http://{authority}{path}"
        request_id = f"{rng.getrandbits(128):032x}"
        agent = _USER_AGENTS.get(client.pod.workload.name if client.pod is not None else "", "Go-http-client/1.1")
        headers = [flow_pb2.HTTPHeader(key=":authority", value=authority),
                   flow_pb2.HTTPHeader(key="user-agent", value=agent),
                   flow_pb2.HTTPHeader(key="x-request-id", value=request_id)]
        for is_response in (False, True):
            response, f = self._flow(t, node, DROPPED if denied and not is_response else FORWARDED, L7)
            if is_response:
                latency = rng.randint(400_000, 60_000_000)
                t += latency
                seconds, nanos = divmod(t, _NS)
                f.time.seconds = response.time.seconds = seconds
                f.time.nanos = response.time.nanos = nanos
                self._addresses(f, server, client)
                self._ports(f, True, dport, sport)
                f.l7.type = flow_pb2.RESPONSE
                f.l7.latency_ns = latency
                code = 403 if denied else rng.choices([c for c, _ in _HTTP_CODES], [w for _, w in _HTTP_CODES])[0]
                f.l7.http.code = code
                f.reply = True
                f.is_reply.value = True
                f.Summary = f"HTTP/1.1 {code} {latency // _MS}ms ({method} {url})"
            else:
                self._addresses(f, client, server)
                self._ports(f, True, sport, dport)
                f.l7.type = flow_pb2.REQUEST
                f.is_reply.value = False
                f.Summary = f"HTTP/1.1 {method} {url}"
            f.l7.http.method = method
            f.l7.http.url = url
            f.l7.http.protocol = "HTTP/1.1"
            f.l7.http.headers.extend(headers)
            f.event_type.type = 129
            f.traffic_direction = INGRESS
            self._push(t, response, "http response" if is_response else "http request")
        return t

    # -- scenarios -----------------------------------------------------------------------------------

    def call(self, t: int, edge: Edge | None = None, depth: int = 0, client_pod: _Pod | None = None) -> None:
        """A call inside the cluster, and (often) the calls its server makes to handle it."""
        rng = self.rng
        cluster = self.cluster
        if edge is None:
            edge = rng.choices(EDGES, self._edge_weights)[0]
        if client_pod is None:
            client_pod = rng.choice(cluster.pods[edge.source])
        if edge.target == OTEL:  # the collector on the client's own node (internalTrafficPolicy: Local)
            server_pod = cluster.otel_on_node[client_pod.node.index]
        else:
            server_pod = rng.choice(cluster.pods[edge.target])
        if rng.random() < 0.3:
            t = self._lookup(t, client_pod, _service_name(edge.target)) + rng.randint(20_000, 200_000)
        answered = self._connection(t, _of(client_pod), _of(server_pod), edge.port, edge.egress, edge.ingress,
                                    paths=edge.paths)
        onward = self._edges_from.get(edge.target)
        allowed = edge.ingress is None or edge.ingress.kind == "allow"
        if onward and allowed and depth < 3 and rng.random() < 0.5:
            self._onward(t, answered, onward, depth + 1, server_pod)

    def _onward(self, start: int, answered: int, onward: list[Edge], depth: int, pod: _Pod) -> None:
        """``pod`` calls one of its dependencies while it handles a request (never before ``start``:
        the corpus is written in time order)."""
        t = max(start + 1, answered - self.rng.randint(50_000, 400_000))
        self.call(t, self.rng.choices(onward, [e.weight for e in onward])[0], depth, pod)

    def call_world(self, t: int) -> None:
        """A call to a service outside the cluster, after the DNS lookup it needs."""
        rng = self.rng
        cluster = self.cluster
        edge = rng.choices(WORLD_EDGES, self._world_weights)[0]
        pod = rng.choice(cluster.pods[edge.source])
        if edge.name in cluster.addresses:
            t, ips = self._resolved(t, pod, edge.name)
            ip = rng.choice(ips)
            names = self.destination_names(pod, ip, t)
        else:
            ip, names = edge.name, []
        self._connection(t, _of(pod), _End(ip, cluster.world[ip].endpoint), edge.port, edge.egress, None,
                         names=names, rtt=rng.randint(2 * _MS, 40 * _MS))

    def lookup_service(self, t: int) -> None:
        """A lookup of a Service name (connection pools, health checks of dependencies...)."""
        edge = self.rng.choices(EDGES, self._edge_weights)[0]
        pod = self.rng.choice(self.cluster.pods[edge.source])
        self._lookup(t, pod, _service_name(edge.target), aaaa=self.rng.random() < 0.5)

    def internet(self, t: int) -> None:
        """A client on the internet reaches the ingress controller through the load balancer."""
        rng = self.rng
        target, outcome, ports = INTERNET_INGRESS
        pod = rng.choice(self.cluster.pods[target])
        client = _End(rng.choice(self.cluster.internet_clients), self.cluster.internet_client)
        answered = self._connection(t, client, _of(pod), rng.choice(ports), None, outcome,
                                    rtt=rng.randint(8 * _MS, 120 * _MS))
        if rng.random() < 0.8:
            self._onward(t, answered, self._edges_from[target], 1, pod)

    def probe(self, t: int) -> None:
        """kubelet probes a pod (from reserved:host): traces only, host traffic is always allowed."""
        rng = self.rng
        pod = rng.choice(self._probed)
        node = pod.node
        host, target = _End(node.ip, self.cluster.host), _of(pod)
        sport, dport = rng.randint(32768, 60999), pod.workload.port
        for flags, from_pod in (*_CONVERSATION, *_CLOSE):
            if from_pod:
                self._trace(t, node, TO_HOST, INGRESS, REPLY, target, host, dport, sport, flags, True)
            else:
                self._trace(t, node, TO_ENDPOINT, INGRESS, NEW if flags == "S" else ESTABLISHED, host, target,
                            sport, dport, flags, False, interface=pod)
            t += rng.randint(20_000, 600_000)

    def apiserver(self, t: int) -> None:
        """A pod talks to the kube-apiserver (watches: mostly an established connection)."""
        rng = self.rng
        source, outcome, _ = rng.choices(APISERVER_CLIENTS, self._apiserver_weights)[0]
        pod = rng.choice(self.cluster.pods[source])
        server = rng.choice(self.cluster.apiservers)
        client, target = _of(pod), _End(server.ip, server.endpoint)
        if rng.random() < 0.25:
            self._connection(t, client, target, 443, outcome, None, rtt=rng.randint(400_000, 2 * _MS))
            return
        sport = rng.randint(32768, 60999)
        for flags, from_server in (("PA", True), ("A", False), ("PA", True), ("A", False)):
            if from_server:
                self._trace(t, pod.node, TO_ENDPOINT, EGRESS, REPLY, target, client, 443, sport, flags, True,
                            interface=pod)
            else:
                self._trace(t, pod.node, TO_STACK, EGRESS, ESTABLISHED, client, target, sport, 443, flags, False)
            t += rng.randint(50_000, 5 * _MS)

    def health(self, t: int) -> None:
        """cilium-health checks another node: ICMP echo over the overlay."""
        rng = self.rng
        a = rng.randrange(NODES)
        b = (a + rng.randint(1, NODES - 1)) % NODES
        (ep_a, ip_a), (_, ip_b) = self.cluster.health[a], self.cluster.health[b]
        node = self.cluster.nodes[a]
        for echo_type, reply in ((8, False), (0, True)):
            response, f = self._flow(t, node, FORWARDED, L3_L4)
            local, remote = _End(ip_a, ep_a), _End(ip_b, self.cluster.remote_health)
            src, dst = (remote, local) if reply else (local, remote)
            self._addresses(f, src, dst)
            f.l4.ICMPv4.type = echo_type
            if reply:
                f.reply = True
            f.is_reply.value = reply
            f.event_type.type = 4
            point = TO_ENDPOINT if reply else TO_OVERLAY
            f.event_type.sub_type = _TRACE_SUB_TYPE[point]
            f.traffic_direction = EGRESS
            f.trace_observation_point = point
            f.trace_reason = REPLY if reply else NEW
            f.Summary = "ICMPv4 EchoReply" if reply else "ICMPv4 EchoRequest"
            self._push(t, response, "trace")
            t += rng.randint(200_000, 1_500_000)


def _service_name(workload: tuple[str, str]) -> str:
    namespace, name = workload
    return f"{name}.{namespace}.svc.cluster.local"


def _service_of(name: str) -> tuple[str, str]:
    service, namespace = name.split(".")[:2]
    return (namespace, service)


# -- files ------------------------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """`YYYY-MM-DDTHH:MM:SSZ` -> nanoseconds since the epoch."""
    return calendar.timegm(time.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S")) * _NS


def generate(count: int, seed: int = 1, *, start: str = DEFAULT_START, rate: float = DEFAULT_RATE) -> list[bytes]:
    """The corpus in memory: ``count`` lines (no newlines)."""
    return list(Traffic(seed, start, rate).lines(count))


def write_corpus(path: str | Path, count: int, seed: int = 1, *, start: str = DEFAULT_START,
                 rate: float = DEFAULT_RATE) -> Counter[str]:
    """Write ``count`` flows to ``path`` ("-": stdout); returns the counts by kind of event."""
    traffic = Traffic(seed, start, rate)
    out = sys.stdout.buffer if str(path) == "-" else open(path, "wb")  # noqa: SIM115
    try:
        batch: list[bytes] = []
        for line in traffic.lines(count):
            batch.append(line)
            if len(batch) == 4096:
                batch.append(b"")
                out.write(b"\n".join(batch))
                batch = []
        if batch:
            batch.append(b"")
            out.write(b"\n".join(batch))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return traffic.stats


def corpus_path(flows: int, seed: int = 1) -> Path:
    """Where :func:`ensure_corpus` keeps a corpus: the name changes with this file's contents."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    return DATA / f"corpus-{flows}-seed{seed}-{digest}.jsonl"


def ensure_corpus(flows: int, seed: int = 1) -> Path:
    """The corpus of ``flows`` lines for ``seed`` in benchmarks/data/, generated on first use by a
    child process: the memory generating takes is not the caller's (Linux starts a child's
    ru_maxrss at its parent's RSS, and the benchmarks report the peak RSS of their children)."""
    path = corpus_path(flows, seed)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    print(f"generating {flows:,} flows into {path} ...", file=sys.stderr)
    subprocess.run([sys.executable, __file__, "-n", str(flows), "--seed", str(seed), "-o", str(tmp)], check=True)
    tmp.rename(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", "--count", type=int, default=10_000, help="number of flows (default 10,000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("-o", "--output", default="-", help="output file ('-': stdout, the default)")
    ap.add_argument("--start", default=DEFAULT_START, help=f"time of the first flow (default {DEFAULT_START})")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE,
                    help=f"mean flows per second of flow time (default {DEFAULT_RATE:,.0f})")
    ap.add_argument("--stats", help="write the counts by kind of event here, as JSON")
    args = ap.parse_args(argv)
    began = time.perf_counter()
    stats = write_corpus(args.output, args.count, args.seed, start=args.start, rate=args.rate)
    seconds = time.perf_counter() - began
    if args.stats:
        Path(args.stats).write_text(json.dumps(dict(sorted(stats.items())), indent=1) + "\n")
    print(f"corpus: {args.count:,} flows in {seconds:.1f} s ({args.count / seconds:,.0f} flows/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
