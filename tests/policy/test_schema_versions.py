"""The CRD schema follows --cilium-version: one row per difference between the bundled versions.

Sources (see src/hushflow/policy/schemas/README.md):
- 1.18: Cilium 1.18.2's CRDs as converted by datreeio/CRDs-catalog at ea03cc2a.
- 1.19: Cilium's CRDs as converted by deedee-ops/schemas at 3266b0eb (2026-02-10); every enum
  and pattern marker of Cilium v1.19.4's pkg/policy/api (vendored by cilium/hubble 75d3a68c)
  is in it: l4.go `+kubebuilder:validation:Enum=TCP;UDP;SCTP;VRRP;IGMP;ANY` on
  PortProtocol.Protocol, `Port` now `omitempty` (optional); ingress.go/egress.go
  `FromRequires`/`ToRequires []string` with `MaxItems=0` ("Deprecated").
- 1.20: deedee-ops/schemas at c7f1b0f9 (2026-07-31, two days after Cilium 1.20.0): the
  kafka/l7/l7proto rules gone (cilium#44610 "Kafka, L7Proto and L7 fields are removed from CNP
  and CCNP CRDs"), protocols GRE/IPIP/IPV6/ESP/AH, the `cluster-mesh` entity, and the
  serverNames pattern of pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml.

The rows are our own cases, written from those schema facts.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions
from hushflow.policy.schema import SCHEMA_VERSIONS, schema_version_for, validate_object, validator_for

V118, V119, V120 = (1, 18), (1, 19), (1, 20)


def _spec(entry, section="egress"):
    return {"endpointSelector": {}, section: [entry]}


def _ports(*ports, rules=None, section="egress"):
    port_rule = {"ports": list(ports)}
    if rules is not None:
        port_rule["rules"] = rules
    return _spec({"toPorts": [port_rule]}, section)


def _valid(spec, version, kind="CiliumNetworkPolicy"):
    obj = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": {"name": "p", "namespace": "n"}, "spec": spec}
    return validate_object(obj, "cilium.io/v2", kind, version) == []


ROWS = [
    # (case, spec, valid on 1.18, valid on 1.19, valid on 1.20)
    # l4.go PortProtocol.Protocol enum: VRRP/IGMP from 1.19.
    ("VRRP protocol", _ports({"protocol": "VRRP"}), False, True, True),
    ("IGMP protocol with port 0", _ports({"port": "0", "protocol": "IGMP"}), False, True, True),
    # l4.go PortProtocol.Port `json:"port,omitempty"`: required in 1.18, optional from 1.19.
    ("port omitted", _ports({"protocol": "TCP"}), False, True, True),
    # ingress.go/egress.go FromRequires/ToRequires: selectors in 1.18, `[]string` MaxItems=0 from 1.19.
    ("fromRequires selector", _spec({"fromRequires": [{"matchLabels": {"env": "prod"}}]}, "ingress"),
     True, False, False),
    ("toRequires selector", _spec({"toRequires": [{"matchLabels": {"env": "prod"}}]}), True, False, False),
    ("fromRequires empty list", _spec({"fromRequires": []}, "ingress"), True, True, True),
    # cilium#44610 (1.20): rules.kafka, rules.l7proto and rules.l7 removed from the CRDs.
    ("kafka rules", _ports({"port": "9092", "protocol": "TCP"}, rules={"kafka": [{"topic": "t"}]}),
     True, True, False),
    ("l7proto rules", _ports({"port": "9000", "protocol": "TCP"}, rules={"l7proto": "r2d2", "l7": [{"cmd": "x"}]}),
     True, True, False),
    # 1.20 protocol enum: GRE, IPIP, IPV6, ESP, AH.
    ("GRE protocol", _ports({"port": "0", "protocol": "GRE"}), False, False, True),
    ("ESP protocol", _ports({"protocol": "ESP"}), False, False, True),
    # 1.20 entity enum: cluster-mesh.
    ("cluster-mesh entity", _spec({"toEntities": ["cluster-mesh"]}), False, False, True),
    ("cluster-mesh entity on ingress", _spec({"fromEntities": ["cluster-mesh"]}, "ingress"), False, False, True),
    # serverNames pattern: `^(\*?\*\.)?...` in 1.18/1.19 (a star prefix only), `[-a-zA-Z0-9_*]` from 1.20.
    ("serverNames with an inner star",
     _spec({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["api.*.example.com"]}]}),
     False, False, True),
    # Unchanged in every version: a control row.
    ("plain TCP port", _ports({"port": "443", "protocol": "TCP"}), True, True, True),
]


@pytest.mark.parametrize(("case", "spec", "v118", "v119", "v120"), ROWS, ids=[row[0] for row in ROWS])
@pytest.mark.parametrize("kind", ["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"])
def test_schema_differences_between_versions(case, spec, v118, v119, v120, kind):
    assert (_valid(spec, V118, kind), _valid(spec, V119, kind), _valid(spec, V120, kind)) == (v118, v119, v120)


def test_default_is_the_1_18_schema():
    assert not _valid(_ports({"protocol": "VRRP"}), BuildOptions().cilium_version)


@pytest.mark.parametrize(
    ("asked", "used"),
    [((1, 18), (1, 18)), ((1, 19), (1, 19)), ((1, 20), (1, 20)), ((1, 17), (1, 18)), ((1, 21), (1, 20)),
     ((2, 0), (1, 20))],
)
def test_version_without_a_bundled_schema_uses_the_nearest(asked, used):
    assert schema_version_for(asked) == used


def test_each_schema_is_compiled_once():
    for version in SCHEMA_VERSIONS:
        assert validator_for("cilium.io/v2", "CiliumNetworkPolicy", version) is validator_for(
            "cilium.io/v2", "CiliumNetworkPolicy", version
        )
    # 1.21 has no bundled schema: it shares 1.20's compiled validator.
    assert validator_for("cilium.io/v2", "CiliumNetworkPolicy", (1, 21)) is validator_for(
        "cilium.io/v2", "CiliumNetworkPolicy", (1, 20)
    )


def _lint(text, version):
    return lint_paths(["-"], BuildOptions(cilium_version=version), io.StringIO(text))


REQUIRES = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    fromRequires: [{matchLabels: {env: prod}}]
"""


def test_requires_reported_once_from_1_19():
    # The 1.19 schema rejects the selector (maxItems 0, string items); requires.py's HF010 with
    # its own message is the one reported, at the field.
    report = _lint(REQUIRES, V119)
    found = [(d.code, d.location.line) for d in report.diagnostics if d.level == "error"]
    assert found == [("HF010", 8)]
    assert "takes no entries from Cilium 1.19" in report.diagnostics[0].message


def test_empty_requires_list_is_valid_on_1_19():
    # `[]string` with MaxItems=0 (v1.19.4 ingress.go): an empty list passes the 1.19 schema.
    report = _lint(REQUIRES.replace("[{matchLabels: {env: prod}}]", "[]"), V119)
    assert [d.code for d in report.diagnostics if d.level == "error"] == []


def test_requires_clean_on_1_18():
    assert [d.code for d in _lint(REQUIRES, V118).diagnostics if d.level == "error"] == []


VRRP = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: keepalived}
spec:
  nodeSelector: {}
  ingress:
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "0", protocol: VRRP}]}]
"""


def test_lint_uses_the_version_asked_for():
    assert [d.code for d in _lint(VRRP, V118).diagnostics] == ["HF010"]
    assert [d.code for d in _lint(VRRP, V119).diagnostics if d.level == "error"] == []


def test_unbundled_version_is_reported_as_info_once():
    report = _lint(VRRP + "---\n" + VRRP.replace("keepalived", "other"), (1, 21))
    infos = [d for d in report.diagnostics if d.code == "HF007"]
    assert len(infos) == 1
    assert infos[0].level == "info"
    assert "Cilium 1.20 schemas" in infos[0].message
    assert infos[0].location.line == 1
    assert report.exit_code() == 0


CORPUS = Path(__file__).parent / "corpus"
CILIUM_STYLE = Path(__file__).parent / "cilium-style"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS, ids=lambda v: f"cilium-{v[0]}.{v[1]}")
def test_cilium_style_examples_lint_clean_on_every_version(version):
    # The documented examples (tests/policy/cilium-style) hold no Kafka rule: clean everywhere.
    report = lint_paths([str(CILIUM_STYLE)], BuildOptions(cilium_version=version))
    assert [str(d) for d in report.diagnostics if d.level in ("error", "warning")] == []


@pytest.mark.parametrize("version", SCHEMA_VERSIONS, ids=lambda v: f"cilium-{v[0]}.{v[1]}")
def test_policy_corpus_on_every_version(version):
    # The corpus of valid policies is clean on 1.18 and 1.19; on 1.20 only its Kafka example
    # fails, once per kafka field (cilium#44610 removed the field), with the reason.
    report = lint_paths([str(CORPUS)], BuildOptions(cilium_version=version))
    found = [(Path(d.location.file).name, d.location.line, d.code) for d in report.diagnostics
             if d.level in ("error", "warning")]
    if version < (1, 20):
        assert found == []
    else:
        assert found == [("l7-kafka.yaml", 21, "HF010"), ("l7-kafka.yaml", 33, "HF010")]
        assert all("removed in Cilium 1.20" in d.message for d in report.diagnostics if d.code == "HF010")
