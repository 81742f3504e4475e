"""Every lint check: one row that must trigger it and one near-identical row that must not."""

from __future__ import annotations

import textwrap

import pytest

from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions

DNS_PROXY = """
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: team}
spec:
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
"""


def cnp(spec: str, name: str = "p", kind: str = "CiliumNetworkPolicy", extra: str = DNS_PROXY) -> str:
    metadata = f"{{name: {name}, namespace: team}}" if kind == "CiliumNetworkPolicy" else f"{{name: {name}}}"
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata: {metadata}\nspec:\n{body}\n{extra}"


SEL = "endpointSelector: {matchLabels: {app: web}}\n"

# (id, yaml, code, field path it must point at, cilium version)
TRIGGERS = [
    (
        "fqdn-deny-with-ports",
        cnp(SEL + 'egressDeny:\n- toFQDNs: [{matchPattern: "*.t.example.com"}]\n'
            '  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'),
        "HF020",
        "spec.egressDeny[0].toFQDNs",
    ),
    ("fqdn-deny-without-ports", cnp(SEL + "egressDeny:\n- toFQDNs: [{matchName: t.example.com}]\n"), "HF020",
     "spec.egressDeny[0].toFQDNs"),
    ("l7-http-in-deny", cnp(SEL + 'egressDeny:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], '
                            'rules: {http: [{method: GET}]}}]\n'), "HF021", "spec.egressDeny[0].toPorts[0].rules"),
    ("server-names-in-deny", cnp(SEL + 'egressDeny:\n- toPorts: [{ports: [{port: "443"}], serverNames: [a.com]}]\n'),
     "HF021", "spec.egressDeny[0].toPorts[0].serverNames"),
    ("tls-in-deny", cnp(SEL + 'ingressDeny:\n- toPorts: [{ports: [{port: "443"}], terminatingTLS: {secret: {name: x}}}]\n'),
     "HF021", "spec.ingressDeny[0].toPorts[0].terminatingTLS"),
    ("auth-in-deny", cnp(SEL + "ingressDeny:\n- fromEntities: [world]\n  authentication: {mode: required}\n"),
     "HF022", "spec.ingressDeny[0].authentication"),
    ("fqdn-allow-without-dns-proxy", cnp(SEL + 'egress:\n- toFQDNs: [{matchName: api.example.com}]\n', extra=""),
     "HF030", "spec.egress[0]"),
    ("two-peer-kinds", cnp(SEL + "egress:\n- toEntities: [world]\n  toCIDR: [10.0.0.0/8]\n"), "HF031", "spec.egress[0]"),
    ("icmps-with-toports", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "80"}]}]\n'
                               "  icmps: [{fields: [{type: 8}]}]\n"), "HF032", "spec.egress[0]"),
    ("icmp-as-port-protocol", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "0", protocol: ICMP}]}]\n'), "HF033",
     "spec.egress[0].toPorts[0].ports[0].protocol"),
    ("dns-rule-on-ingress", cnp(SEL + 'ingress:\n- toPorts: [{ports: [{port: "53", protocol: UDP}], '
                                'rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF034", "spec.ingress[0].toPorts[0]"),
    ("dns-rule-without-port", cnp(SEL + 'egress:\n- toPorts: [{rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF035",
     "spec.egress[0].toPorts[0]"),
    ("dns-rule-port-zero", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "0"}], rules: {dns: [{matchPattern: "*"}]}}]\n'),
     "HF035", "spec.egress[0].toPorts[0].ports[0]"),
    ("endport-below-port", cnp(SEL + 'egress:\n- toEntities: [world]\n  toPorts: [{ports: [{port: "9000", endPort: 8000}]}]\n'),
     "HF036", "spec.egress[0].toPorts[0].ports[0]"),
    ("except-outside-cidr", cnp(SEL + "egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]\n"),
     "HF037", "spec.egress[0].toCIDRSet[0]"),
    ("http-on-udp", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "80", protocol: UDP}], rules: {http: [{}]}}]\n'),
     "HF038", "spec.egress[0].toPorts[0].ports[0]"),
    ("log-value-too-long", cnp(SEL + "egress: [{toEntities: [world]}]\nlog: {value: " + "x" * 33 + "}\n"), "HF040",
     "spec.log.value"),
    ("log-value-control-char", cnp(SEL + 'egress: [{toEntities: [world]}]\nlog: {value: "tab\\there"}\n'), "HF040",
     "spec.log.value"),
    ("deny-world-shadows-fqdn-allow",
     cnp(SEL + 'egressDeny:\n- toEntities: [world]\n  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'
         'egress:\n- toFQDNs: [{matchName: api.stripe.com}]\n  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'),
     "HF050", "spec.egressDeny[0]"),
    ("l4-deny-shadows-allow-in-other-policy",
     cnp(SEL + 'egressDeny:\n- toPorts: [{ports: [{port: "443"}]}]\n',
         extra=DNS_PROXY + "---\n" + cnp(SEL + 'egress:\n- toFQDNs: [{matchName: api.stripe.com}]\n'
                                         '  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n', name="q", extra="")),
     "HF050", "spec.egressDeny[0]"),
    ("double-star-on-1.18", cnp(SEL + 'egress:\n- toFQDNs: [{matchPattern: "**.example.com"}]\n'), "HF051",
     "spec.egress[0].toFQDNs[0]"),
    ("empty-egress-deny", cnp(SEL + "egressDeny: [{}]\n"), "HF052", "spec.egressDeny[0]"),
    ("empty-ingress", cnp(SEL + "ingress: [{}]\n"), "HF052", "spec.ingress[0]"),
    ("node-selector-in-cnp", cnp("nodeSelector: {}\ningress: [{fromEntities: [world]}]\n"), "HF012", "spec.nodeSelector"),
    ("namespace-overridden", cnp('endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": other}}\n'
                                 "egress: [{toEntities: [world]}]\n"), "HF013", "spec.endpointSelector"),
    ("no-rule-sections", cnp("endpointSelector: {}\n"), "HF010", "spec"),
    ("integer-port", cnp(SEL + "egress: [{toPorts: [{ports: [{port: 443}]}]}]\n"), "HF010",
     "spec.egress[0].toPorts[0].ports[0].port"),
    ("unknown-field", cnp(SEL + "egres: [{}]\n"), "HF010", "spec.egres"),
    ("empty-policy", "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\n", "HF011", ""),
    ("empty-sections", cnp(SEL + "ingress: []\negress: []\n"), "HF014", "spec"),
    ("deny-only-turns-on-default-deny", cnp(SEL + 'egressDeny:\n- toEntities: [world]\n'
                                            '  toPorts: [{ports: [{port: "25", protocol: TCP}]}]\n', extra=""),
     "HF053", "spec"),
    ("http-on-port-without-protocol", cnp(SEL + 'ingress:\n- toPorts: [{ports: [{port: "8080"}], rules: {http: [{}]}}]\n'),
     "HF038", "spec.ingress[0].toPorts[0].ports[0]"),
    ("l7-in-host-policy-ingress",
     cnp('nodeSelector: {}\ningress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]\n',
         kind="CiliumClusterwideNetworkPolicy", extra=""), "HF038", "spec.ingress[0].toPorts[0]"),
    ("dns-rule-refuses-the-fqdn-name",
     cnp(SEL + 'egress:\n- toFQDNs: [{matchName: api.partner.example}]\n', extra=DNS_PROXY.replace(
         'matchPattern: "*"', "matchName: internal.example.com")), "HF030", "spec.egress[0].toFQDNs[0]"),
    ("server-names-with-l7-without-tls",
     cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [a.example.com], '
         'rules: {http: [{method: GET}]}}]\n'), "HF039", "spec.egress[0].toPorts[0]"),
    ("listener-on-ingress",
     cnp(SEL + 'ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], '
         'listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}}]\n'), "HF041", "spec.ingress[0].toPorts[0]"),
    ("to-services-with-ports",
     cnp(SEL + 'egress:\n- toServices: [{k8sService: {serviceName: db, namespace: shop}}]\n'
         '  toPorts: [{ports: [{port: "5432", protocol: TCP}]}]\n'), "HF054", "spec.egress[0]"),
    ("bad-match-name-in-fqdn-deny", cnp(SEL + 'egressDeny:\n- toFQDNs: [{matchName: "bad name!"}]\n'), "HF010",
     "spec.egressDeny[0].toFQDNs[0].matchName"),
]

# Rows that look like the triggers but are correct: (id, yaml, code that must NOT appear, version)
CLEAN = [
    ("fqdn-allow-is-fine", cnp(SEL + 'egress:\n- toFQDNs: [{matchPattern: "*.example.com"}]\n'), "HF020"),
    ("l7-http-in-allow", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]\n'),
     "HF021"),
    ("auth-in-allow", cnp(SEL + "ingress:\n- fromEntities: [world]\n  authentication: {mode: required}\n"), "HF022"),
    ("fqdn-allow-with-dns-proxy", cnp(SEL + 'egress:\n- toFQDNs: [{matchName: api.example.com}]\n'), "HF030"),
    ("one-peer-kind-plus-ports", cnp(SEL + 'egress:\n- toEntities: [world]\n  toPorts: [{ports: [{port: "80"}]}]\n'),
     "HF031"),
    ("icmps-alone", cnp(SEL + "egress:\n- icmps: [{fields: [{type: 8}]}]\n"), "HF032"),
    ("tcp-port", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "0", protocol: TCP}]}]\n'), "HF033"),
    ("dns-rule-on-egress-53", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "53", protocol: ANY}], '
                                  'rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF035"),
    ("endport-above-port", cnp(SEL + 'egress:\n- toEntities: [world]\n  toPorts: [{ports: [{port: "8000", endPort: 9000}]}]\n'),
     "HF036"),
    ("except-inside-cidr", cnp(SEL + "egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]\n"), "HF037"),
    ("log-value-32", cnp(SEL + "egress: [{toEntities: [world]}]\nlog: {value: " + "x" * 32 + "}\n"), "HF040"),
    ("deny-other-port", cnp(SEL + 'egressDeny:\n- toEntities: [world]\n  toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n'
                            'egress:\n- toFQDNs: [{matchName: api.stripe.com}]\n'
                            '  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'), "HF050"),
    ("deny-other-endpoints", cnp('endpointSelector: {matchLabels: {app: other}}\n'
                                 'egressDeny:\n- toPorts: [{ports: [{port: "443"}]}]\n',
                                 extra=DNS_PROXY + "---\n" + cnp(SEL + 'egress:\n- toFQDNs: [{matchName: a.com}]\n'
                                                                 '  toPorts: [{ports: [{port: "443"}]}]\n', name="q",
                                                                 extra="")), "HF050"),
    ("single-star", cnp(SEL + 'egress:\n- toFQDNs: [{matchPattern: "*.example.com"}]\n'), "HF051"),
    ("non-empty-deny", cnp(SEL + "egressDeny: [{toEntities: [world]}]\n"), "HF052"),
    ("empty-list-is-not-a-peer-kind", cnp(SEL + "egress:\n- toEndpoints: []\n  toCIDR: [192.0.2.0/24]\n"),
     "HF031"),
    ("dns-endport-equal-is-absent", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "53", endPort: 53}], '
                                        'rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF035"),
    ("deny-only-with-default-deny-off", cnp(SEL + "enableDefaultDeny: {egress: false}\n"
                                            "egressDeny: [{toEntities: [world]}]\n", extra=""), "HF053"),
    ("deny-with-allows-elsewhere", cnp(SEL + "egressDeny: [{toEntities: [world]}]\n", extra=DNS_PROXY), "HF053"),
    ("dns-rule-covers-by-in-values",
     cnp(SEL + 'egress:\n- toFQDNs: [{matchName: a.example.com}]\n', extra=DNS_PROXY.replace(
         "endpointSelector: {}", "endpointSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}")),
     "HF030"),
    ("dns-rule-any-source-covers-k8s",
     cnp('endpointSelector: {matchLabels: {"k8s:app": web}}\negress:\n- toFQDNs: [{matchName: a.example.com}]\n',
         extra=DNS_PROXY.replace("endpointSelector: {}", "endpointSelector: {matchLabels: {app: web}}")), "HF030"),
    ("dns-rule-lists-the-name",
     cnp(SEL + 'egress:\n- toFQDNs: [{matchPattern: "*.partner.example"}]\n', extra=DNS_PROXY.replace(
         'matchPattern: "*"', 'matchPattern: "*.partner.example"')), "HF030"),
    ("server-names-with-terminating-tls",
     cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [a.example.com], '
         'terminatingTLS: {secret: {name: t}}, rules: {http: [{method: GET}]}}]\n'), "HF039"),
    ("listener-on-egress",
     cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}], '
         'listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}}]\n'), "HF041"),
    ("to-services-alone", cnp(SEL + 'egress:\n- toServices: [{k8sService: {serviceName: db, namespace: shop}}]\n'),
     "HF054"),
    ("own-namespace", cnp('endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": team}}\n'
                          "egress: [{toEntities: [world]}]\n"), "HF013"),
    # pkg/policy/api/rule_validation.go: a DNS rule needs an explicit port (not 0, no range), any
    # port: OpenShift's DNS pods listen on 5353, and that rule is a DNS proxy rule like one on 53.
    ("dns-rule-on-5353", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "5353", protocol: UDP}], '
                             'rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF035"),
    ("dns-rule-on-named-port", cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: dns, protocol: UDP}], '
                                   'rules: {dns: [{matchPattern: "*"}]}}]\n'), "HF035"),
    ("fqdn-allow-with-dns-proxy-on-5353",
     cnp(SEL + 'egress:\n- toFQDNs: [{matchName: api.example.com}]\n',
         extra=DNS_PROXY.replace('port: "53", protocol: ANY', 'port: "5353", protocol: UDP')), "HF030"),
    # pkg/policy/api/icmp.go: icmps fields become ICMP/ICMPv6 port entries, so an icmps-only deny
    # covers no TCP/UDP allow, with or without L3 peers.
    ("icmps-deny-beside-tcp-allow",
     cnp(SEL + "ingressDeny:\n- fromEntities: [world]\n  icmps: [{fields: [{type: 8}]}]\n"
         'ingress:\n- fromEntities: [world]\n  toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'), "HF050"),
    ("icmps-deny-any-peer-beside-l3-allow",
     cnp(SEL + "ingressDeny:\n- icmps: [{fields: [{type: 128, family: IPv6}]}]\n"
         "ingress:\n- fromEntities: [cluster]\n"), "HF050"),
    ("icmps-deny-other-type", cnp(SEL + "ingressDeny:\n- icmps: [{fields: [{type: 8}]}]\n"
                                  "ingress:\n- fromEntities: [world]\n  icmps: [{fields: [{type: 0}]}]\n"), "HF050"),
]


def lint_text(tmp_path, text: str, version=DEFAULT_CILIUM_VERSION):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return lint_paths([str(path)], BuildOptions(cilium_version=version))


@pytest.mark.parametrize(("text", "code", "field"), [row[1:] for row in TRIGGERS], ids=[r[0] for r in TRIGGERS])
def test_check_triggers(tmp_path, text, code, field):
    report = lint_text(tmp_path, text)
    found = [(d.code, d.location.field) for d in report.diagnostics]
    assert (code, field) in found, found
    hit = next(d for d in report.diagnostics if d.code == code and d.location.field == field)
    assert hit.location.line > 0
    assert hit.message


@pytest.mark.parametrize(("text", "code"), [row[1:] for row in CLEAN], ids=[r[0] for r in CLEAN])
def test_check_stays_quiet(tmp_path, text, code):
    report = lint_text(tmp_path, text)
    assert code not in [d.code for d in report.diagnostics], [str(d) for d in report.diagnostics]


def test_double_star_is_fine_from_1_19(tmp_path):
    report = lint_text(tmp_path, cnp(SEL + 'egress:\n- toFQDNs: [{matchPattern: "**.example.com"}]\n'), (1, 19))
    assert "HF051" not in [d.code for d in report.diagnostics]


def test_fqdn_deny_message_names_the_pruned_effect(tmp_path):
    with_ports = lint_text(tmp_path, TRIGGERS[0][1]).diagnostics
    without = lint_text(tmp_path, TRIGGERS[1][1]).diagnostics
    assert "443/TCP to EVERY peer" in next(d.message for d in with_ports if d.code == "HF020")
    assert "default-deny" in next(d.message for d in without if d.code == "HF020")
    assert "hushflow compile" in next(d.hint for d in with_ports if d.code == "HF020")


def test_fqdn_deny_line_points_at_the_field(tmp_path):
    text = cnp(SEL + 'egressDeny:\n- toFQDNs: [{matchName: t.example.com}]\n')
    report = lint_text(tmp_path, text)
    hit = next(d for d in report.diagnostics if d.code == "HF020")
    line = text.splitlines()[hit.location.line - 1]
    assert line[hit.location.column - 1 :].startswith("toFQDNs")


@pytest.mark.parametrize(
    ("section", "level"),
    [("ingress", "info"), ("egress", "info"), ("ingressDeny", "warning"), ("egressDeny", "warning")],
)
def test_empty_rule_is_info_only_as_the_documented_default_deny_idiom(tmp_path, section, level):
    """Cilium's docs (policy language, "Ingress/Egress Default Deny") write `ingress: [{}]` for
    default-deny with nothing allowed; an empty deny entry is no idiom."""
    report = lint_text(tmp_path, cnp(SEL + f"{section}: [{{}}]\n", extra=""))
    (hit,) = [d for d in report.diagnostics if d.code == "HF052"]
    assert hit.level.value == level


def test_dns_rule_on_5353_with_a_range_is_still_an_error(tmp_path):
    report = lint_text(tmp_path, cnp(SEL + 'egress:\n- toPorts: [{ports: [{port: "5353", endPort: 5360}], '
                                     'rules: {dns: [{matchPattern: "*"}]}}]\n'))
    (hit,) = [d for d in report.diagnostics if d.code == "HF035"]
    assert hit.level.value == "error"


def test_empty_rule_with_default_deny_off_is_called_dead(tmp_path):
    report = lint_text(tmp_path, cnp(SEL + "enableDefaultDeny: {ingress: false}\ningress: [{}]\n"))
    (hit,) = [d for d in report.diagnostics if d.code == "HF052"]
    assert "does nothing at all" in hit.message


def test_endport_below_port_is_a_warning_that_says_what_cilium_does(tmp_path):
    report = lint_text(tmp_path, TRIGGERS[[r[0] for r in TRIGGERS].index("endport-below-port")][1])
    (hit,) = [d for d in report.diagnostics if d.code == "HF036"]
    assert hit.level.value == "warning" and "enforces port 9000 alone" in hit.message


def test_a_deny_with_only_requirements_shadows_nothing(tmp_path):
    """pkg/policy/rules.go (1.18): fromRequires only narrows other rules' selectors; alone it selects
    no peer, so an `ingressDeny` of only requirements denies nothing (no HF050)."""
    from hushflow.policy.lint import lint_paths

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: n}\n"
        "spec:\n  endpointSelector: {matchLabels: {app: web}}\n"
        "  ingress:\n  - fromEndpoints: [{matchLabels: {app: api}}]\n"
        "  ingressDeny:\n  - fromRequires: [{matchLabels: {env: prod}}]\n"
    )
    codes = [d.code for d in lint_paths([str(policy)]).diagnostics]
    assert "HF050" not in codes, codes


def test_from_1_19_requirements_are_a_lint_error(tmp_path):
    """cilium#42615: the 1.19 CRD has no fromRequires/toRequires; 1.18 accepts them."""
    from click.testing import CliRunner

    from hushflow.cli import main

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: n}\n"
        "spec:\n  endpointSelector: {matchLabels: {app: web}}\n"
        "  ingress:\n  - fromEndpoints: [{matchLabels: {app: api}}]\n"
        "  - fromRequires: [{matchLabels: {env: prod}}]\n"
    )
    new = CliRunner().invoke(main, ["lint", "--cilium-version", "1.19", str(policy)])
    assert new.exit_code == 1 and "HF010" in new.output and "p.yaml:8" in new.output, new.output
    old = CliRunner().invoke(main, ["lint", "--cilium-version", "1.18", str(policy)])
    assert "HF010" not in old.output, old.output


@pytest.mark.parametrize(("pattern", "warned"), [("**.ads.example", True), ("***.ads.example", True),
                                                 ("*.ads.example", False)])
def test_hf051_warns_for_every_multi_label_prefix_before_1_19(tmp_path, pattern, warned):
    """pkg/fqdn/matchpattern (1.19): two or more leading stars and a dot are one or more labels;
    before 1.19 they are one label."""
    from hushflow.policy.lint import lint_paths

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: n}\n"
        "spec:\n  endpointSelector: {}\n  egress:\n"
        f"  - toFQDNs: [{{matchPattern: '{pattern}'}}]\n"
    )
    codes = [d.code for d in lint_paths([str(policy)]).diagnostics]
    assert ("HF051" in codes) is warned, codes
