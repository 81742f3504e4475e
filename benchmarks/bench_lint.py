#!/usr/bin/env python3
"""How fast does `hushflow lint` go? Lints N generated policies and prints policies/s and memory.

Usage: .venv/bin/python benchmarks/bench_lint.py [--policies 2000] [--files 200]

The policies are realistic and varied: FQDN allows with a DNS proxy rule, L7 HTTP, CIDR sets
with except, entities, deny rules, multi-rule `specs`, clusterwide policies, one hushflow FQDN
deny in every tenth file. The target (issue 2) is 2,000 policies in under 2 s; `--mixed` makes a
third of them Kubernetes NetworkPolicies and ClusterNetworkPolicies (issue 13: the same target).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from hushflow.policy.lint import lint_paths

TEMPLATES = [
    """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: dns-{i}, namespace: ns-{ns}}}
spec:
  endpointSelector: {{}}
  egress:
  - toEndpoints:
    - matchLabels: {{"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}
    toPorts:
    - ports: [{{port: "53", protocol: ANY}}]
      rules: {{dns: [{{matchPattern: "*"}}]}}
""",
    """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: saas-{i}, namespace: ns-{ns}}}
spec:
  endpointSelector: {{matchLabels: {{app: app-{i}}}}}
  egress:
  - toFQDNs: [{{matchName: api-{i}.example.com}}, {{matchPattern: "*.svc-{i}.example.net"}}]
    toPorts: [{{ports: [{{port: "443", protocol: TCP}}]}}]
  log: {{value: saas-{i}}}
""",
    """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: web-{i}, namespace: ns-{ns}}}
spec:
  endpointSelector:
    matchLabels: {{app: web-{i}}}
    matchExpressions: [{{key: tier, operator: In, values: [front, edge]}}]
  ingress:
  - fromEndpoints: [{{matchLabels: {{app: lb}}}}]
    toPorts:
    - ports: [{{port: "8080", protocol: TCP}}]
      rules:
        http: [{{method: GET, path: "/api/v1/.*"}}, {{method: POST, path: "/api/v1/orders"}}]
  egress:
  - toCIDRSet: [{{cidr: 10.{b}.0.0/16, except: [10.{b}.1.0/24]}}]
    toPorts: [{{ports: [{{port: "5432", protocol: TCP}}, {{port: "6379", endPort: 6380, protocol: TCP}}]}}]
""",
    """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {{name: cw-{i}}}
specs:
- endpointSelector: {{matchLabels: {{"k8s:io.kubernetes.pod.namespace": ns-{ns}}}}}
  ingressDeny:
  - fromEntities: [world]
    toPorts: [{{ports: [{{port: "22", protocol: TCP}}]}}]
  ingress:
  - fromEntities: [cluster]
- endpointSelector: {{matchLabels: {{team: t-{i}}}}}
  egress:
  - toEntities: [kube-apiserver]
  - icmps: [{{fields: [{{family: IPv4, type: EchoRequest}}]}}]
""",
    """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: block-{i}, namespace: ns-{ns}}}
spec:
  endpointSelector: {{matchLabels: {{app: app-{i}}}}}
  egressDeny:
  - toFQDNs: [{{matchPattern: "*.telemetry-{i}.example.com"}}]
    toPorts: [{{ports: [{{port: "443", protocol: TCP}}, {{port: "80", protocol: TCP}}]}}]
  log: {{value: blocked-{i}}}
""",
]


# Issue 13: the kinds Cilium enforces beside its own, mixed in (a third of the policies).
MIXED_TEMPLATES = [
    *TEMPLATES[:4],
    """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: np-{i}, namespace: ns-{ns}}}
spec:
  podSelector: {{matchLabels: {{app: db-{i}}}}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {{matchLabels: {{app: web-{i}}}}}
    - namespaceSelector: {{matchLabels: {{team: t-{i}}}}}
      podSelector: {{matchLabels: {{role: client}}}}
    ports: [{{port: 5432, protocol: TCP}}]
  egress:
  - to: [{{ipBlock: {{cidr: 10.{b}.0.0/16, except: [10.{b}.1.0/24]}}}}]
    ports: [{{port: 443}}, {{port: 8000, endPort: 8080}}]
""",
    """apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: kcnp-{i}}}
spec:
  tier: {tier}
  priority: {priority}
  subject: {{namespaces: {{matchLabels: {{team: t-{i}}}}}}}
  ingress:
  - name: from-monitoring
    action: Accept
    from: [{{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: monitoring}}}}}}]
  egress:
  - action: Deny
    to: [{{networks: [192.0.2.0/24]}}]
    protocols: [{{tcp: {{destinationPort: {{number: 25}}}}}}]
""",
]


def write_corpus(directory: str, policies: int, files: int, templates: list[str] = TEMPLATES) -> None:
    per_file = max(1, policies // files)
    written = 0
    file_index = 0
    kinds = len(templates) if templates is not TEMPLATES else 4
    while written < policies:
        docs = []
        for _ in range(min(per_file, policies - written)):
            i = written
            template = templates[i % kinds] if (file_index % 10 or written % per_file) else TEMPLATES[4]
            docs.append(template.format(i=i, ns=(i // 4) % 50, b=i % 250, tier=("Admin", "Baseline")[i % 2],
                                        priority=i % 1000))
            written += 1
        with open(os.path.join(directory, f"policies-{file_index:04d}.yaml"), "w", encoding="utf-8") as handle:
            handle.write("---\n".join(docs))
        file_index += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=int, default=2000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--mixed", action="store_true",
                        help="a third of the policies NetworkPolicies and ClusterNetworkPolicies (issue 13)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        write_corpus(directory, args.policies, args.files, MIXED_TEMPLATES if args.mixed else TEMPLATES)
        lint_paths([directory])  # warm-up: schema loading and compilation happen once per process
        best = float("inf")
        report = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            report = lint_paths([directory])
            best = min(best, time.perf_counter() - start)
        assert report is not None
        cold_start = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"policies linted:   {report.policies} in {len(report.files)} files "
          f"({len(report.diagnostics)} diagnostics)")
    print(f"best of {args.repeat}:        {best:.3f} s  ({report.policies / best:,.0f} policies/s)")
    print(f"peak memory (RSS): {peak_mb:.0f} MB")
    del cold_start
    target = 2.0 * args.policies / 2000
    print(f"target:            < {target:.2f} s  -> {'OK' if best < target else 'MISSED'}")


if __name__ == "__main__":
    main()
