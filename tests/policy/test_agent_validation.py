"""What the Cilium agent rejects beyond the CRD schema: one row per agent check.

Every row is a policy the bundled CRD schema of that version accepts (asserted below, so a row
the schema already catches is not mistaken for an agent check) and the agent's
`Rule.Sanitize()` rejects or reads otherwise. Source: Cilium v1.19.4 pkg/policy/api as
cilium/hubble 75d3a68c vendors it (rule_validation.go, http.go, selector.go) and
pkg/iana/svcname.go; for 1.20, cilium/cilium pkg/policy/api/rule_validation.go after the Kafka
removal (cilium#44610; `Rule.Validate`, `isExtendedIPProtocol`). The function is named on each
row group. Our own cases.
"""

from __future__ import annotations

import io

import pytest

from hushflow.policy.agent_validation import go_parse_port, is_service_name
from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions
from hushflow.policy.schema import validate_object

HEAD = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
"""


def _port_policy(port_line: str, rules: str = "") -> str:
    return HEAD + f"""  egress:
  - toEntities: [world]
    toPorts:
    - ports:
      - {port_line}
{rules}"""


ROWS = [
    # (case, yaml, cilium version, expected (code, line, field path) findings)
    # -- PortProtocol.sanitize (rule_validation.go): strconv.ParseUint(port, 0, 16) unless
    #    iana.IsSvcName(port) (pkg/iana/svcname.go); the CRD pattern only anchors the digits' start.
    ("port 65536", _port_policy('{port: "65536", protocol: TCP}'), (1, 18),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("port 99999 on 1.19", _port_policy('{port: "99999", protocol: TCP}'), (1, 19),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("port 65536 on 1.20", _port_policy('{port: "65536", protocol: UDP}'), (1, 20),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("port range written as port", _port_policy('{port: "8000-8080", protocol: TCP}'), (1, 18),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("invalid octal digits", _port_policy('{port: "0809", protocol: TCP}'), (1, 18),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("named port of 16 characters", _port_policy('{port: "metrics-exporter", protocol: TCP}'), (1, 18),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("leading zero is octal", _port_policy('{port: "0100", protocol: TCP}'), (1, 18),
     [("HF018", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("digits separated by _ read as written", _port_policy('{port: "8_080", protocol: TCP}'), (1, 18), []),
    ("largest port", _port_policy('{port: "65535", protocol: TCP}'), (1, 18), []),
    ("named port of 15 characters", _port_policy('{port: "metrics-export1", protocol: TCP}'), (1, 18), []),
    ("hex-looking name is a named port", _port_policy('{port: "0x50", protocol: TCP}'), (1, 18), []),
    # -- PortProtocol.sanitize, 1.19+: VRRP/IGMP take no port; an omitted port needs
    #    enable-extended-ip-protocols ("port must be specified").
    ("VRRP with a port", _port_policy('{port: "112", protocol: VRRP}'), (1, 19),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("IGMP with port 0", _port_policy('{port: "0", protocol: IGMP}'), (1, 19), []),
    ("port omitted", _port_policy("{protocol: TCP}"), (1, 19),
     [("HF017", 10, "spec.egress[0].toPorts[0].ports[0]")]),
    ("VRRP without a port", _port_policy("{protocol: VRRP}"), (1, 20),
     [("HF017", 10, "spec.egress[0].toPorts[0].ports[0]")]),
    # -- PortProtocol.Validate, post-1.19 rule_validation.go (isExtendedIPProtocol): the 1.20
    #    tunnel protocols take no port either.
    ("GRE with a port on 1.20", _port_policy('{port: "47", protocol: GRE}'), (1, 20),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    ("ESP with port 0 on 1.20", _port_policy('{port: "0", protocol: ESP}'), (1, 20), []),
    ("VRRP with a port on 1.20", _port_policy('{port: "8", protocol: VRRP}'), (1, 20),
     [("HF016", 10, "spec.egress[0].toPorts[0].ports[0].port")]),
    # -- IngressCommonRule/EgressCommonRule sanitize: ErrFromToNodesRequiresNodeSelectorOption
    #    (in every version, e.g. cilium/cilium rule_validation.go at 005aed24 and v1.19.4).
    ("toNodes", HEAD + """  egress:
  - toNodes: [{matchLabels: {node-role.kubernetes.io/control-plane: ""}}]
""", (1, 18), [("HF017", 7, "spec.egress[0].toNodes")]),
    ("fromNodes in a deny rule", HEAD + """  ingressDeny:
  - fromNodes: [{}]
""", (1, 20), [("HF017", 7, "spec.ingressDeny[0].fromNodes")]),
    # -- PortRule.sanitize: "Listener is not allowed with L7 rules".
    ("listener with L7 rules", HEAD + """  egress:
  - toEntities: [world]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: cec}, name: l}
      rules: {http: [{method: GET}]}
""", (1, 19), [("HF016", 10, "spec.egress[0].toPorts[0].listener")]),
    # -- PortRuleHTTP.Sanitize (http.go): path and method are compiled as Go regexps; an empty
    #    secret name is "Secret name missing".
    ("http path not a regexp", _port_policy('{port: "80", protocol: TCP}', """      rules:
        http: [{method: GET, path: "/api/v[12"}]
"""), (1, 19), [("HF016", 12, "spec.egress[0].toPorts[0].rules.http[0].path")]),
    ("http method not a regexp", _port_policy('{port: "80", protocol: TCP}', """      rules:
        http: [{method: "GET|(POST"}]
"""), (1, 18), [("HF016", 12, "spec.egress[0].toPorts[0].rules.http[0].method")]),
    ("header secret without a name", _port_policy('{port: "80", protocol: TCP}', """      rules:
        http:
        - headerMatches:
          - name: x-token
            secret: {name: ""}
"""), (1, 19), [("HF016", 15, "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].secret.name")]),
    ("http regexps that compile", _port_policy('{port: "80", protocol: TCP}', """      rules:
        http: [{method: "GET|POST", path: "/api/v[12]/.*"}]
"""), (1, 19), []),
    # -- EndpointSelector.Sanitize (selector.go) -> Kubernetes label selector validation.
    ("In without values", HEAD.replace("{matchLabels: {app: web}}",
                                       "{matchExpressions: [{key: app, operator: In}]}") + """  ingress:
  - fromEndpoints: [{}]
""", (1, 18), [("HF016", 5, "spec.endpointSelector.matchExpressions[0]")]),
    ("Exists with values", HEAD + """  ingress:
  - fromEndpoints:
    - matchExpressions: [{key: tier, operator: Exists, values: [front]}]
""", (1, 19), [("HF016", 8, "spec.ingress[0].fromEndpoints[0].matchExpressions[0]")]),
    ("cidrGroupSelector NotIn without values", HEAD + """  egress:
  - toCIDRSet:
    - cidrGroupSelector:
        matchExpressions: [{key: team, operator: NotIn, values: []}]
""", (1, 19), [("HF016", 9, "spec.egress[0].toCIDRSet[0].cidrGroupSelector.matchExpressions[0]")]),
]


def _findings(text: str, version: tuple[int, int]):
    report = lint_paths(["-"], BuildOptions(cilium_version=version), io.StringIO(text))
    return report, [
        (d.code, d.location.line, d.location.field)
        for d in report.diagnostics
        if d.code in ("HF016", "HF017", "HF018")
    ]


@pytest.mark.parametrize(("case", "text", "version", "expected"), ROWS, ids=[row[0] for row in ROWS])
def test_agent_checks(case, text, version, expected):
    import yaml

    data = yaml.safe_load(text)
    assert validate_object(data, data["apiVersion"], data["kind"], version) == [], "the CRD schema accepts it"
    report, found = _findings(text, version)
    assert found == expected
    errors = [d for d in report.diagnostics if d.code == "HF016"]
    if errors:
        assert report.exit_code() == 1
        assert report.policies == 0  # the agent enforces none of an invalid object


def test_agent_checks_in_specs_and_deny_rules():
    text = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  egressDeny:
  - toEntities: [world]
    toPorts: [{ports: [{port: "70000", protocol: TCP}]}]
"""
    _, found = _findings(text, (1, 19))
    assert found == [("HF016", 8, "specs[0].egressDeny[0].toPorts[0].ports[0].port")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", (0, "")), ("80", (80, "")), ("65535", (65535, "")), ("65536", (None, "value out of range")),
     ("010", (8, "")), ("0777", (511, "")), ("08", (None, "invalid syntax")), ("1_000", (1000, "")),
     ("_1", (None, "invalid syntax")), ("1__0", (None, "invalid syntax")), ("80 ", (None, "invalid syntax")),
     ("８０", (None, "invalid syntax"))],
)
def test_go_parse_port(text, expected):
    # strconv.ParseUint(s, 0, 16) as PortProtocol.sanitize calls it.
    assert go_parse_port(text) == expected


@pytest.mark.parametrize(
    ("name", "is_name"),
    [("http", True), ("http-8080", True), ("a", True), ("8080", False), ("-http", False), ("http-", False),
     ("ht--tp", False), ("abcdefghijklmno", True), ("abcdefghijklmnop", False), ("0x50", True), ("", False)],
)
def test_service_name(name, is_name):
    # pkg/iana/svcname.go IsSvcName.
    assert is_service_name(name) is is_name
