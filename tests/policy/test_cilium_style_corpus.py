"""Cilium-style examples that must lint clean (issue 12): each file is a false positive fixed.

tests/policy/cilium-style/ holds policies written the way Cilium's docs and examples write
them, next to the non-policy YAML a real policy repository carries (a Helm chart, Prometheus
and Grafana configuration, a kustomization). Nothing in it may be an error or a warning; the
idioms and the non-policy files are reported as infos, each pinned below, so that a file that
is silently dropped or a new finding fails the test.

The decisions, each from Cilium's source or docs:
- `ingress: [{}]` / `egress: [{}]` is the documented default-deny idiom (docs: policy/language,
  "Ingress/Egress Default Deny"; examples/policies/l3/egress-default-deny): info, not warning.
- An L7 DNS rule needs an explicit port, no range and not port 0, and nothing more
  (pkg/policy/api/rule_validation.go, `L7Rules` and `PortProtocol` validation): 5353, as
  OpenShift's DNS pods listen on, is a DNS proxy rule like 53.
- `icmps` selects ICMP only (pkg/policy/api/icmp.go: each field becomes an ICMP/ICMPv6 port
  entry), so an icmps-only deny never covers a TCP/UDP allow.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hushflow.policy.diagnostics import Severity
from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions

CORPUS = Path(__file__).parent / "cilium-style"
POLICY_FILES = sorted(
    p.name for p in CORPUS.glob("*.yaml") if "cilium.io/" in p.read_text(encoding="utf-8")
)

# (file relative to the corpus, code) of every info the corpus must produce, and nothing else.
EXPECTED_INFOS = sorted([
    ("default-deny-egress.yaml", "HF052"),
    ("default-deny-ingress.yaml", "HF052"),
    ("helm-chart/Chart.yaml", "HF003"),
    ("helm-chart/values.yaml", "HF003"),
    ("helm-chart/templates/cnp.yaml", "HF003"),
    ("helm-chart/templates/_helpers.yaml", "HF003"),
    ("kustomization.yaml", "HF003"),
    ("monitoring/alert-rules.yaml", "HF003"),
    ("monitoring/grafana-datasource.yaml", "HF003"),
    ("monitoring/prometheus.yml", "HF003"),
])
EXPECTED_POLICIES = 5


def _relative(file: str) -> str:
    return Path(file).relative_to(CORPUS).as_posix()


def _problems(report) -> list[str]:
    return [str((d.location.file, d.location.line, d.code, d.message)) for d in report.diagnostics
            if d.level in (Severity.ERROR, Severity.WARNING)]


@pytest.mark.parametrize("version", [(1, 18), (1, 19)], ids=["cilium-1.18", "cilium-1.19"])
def test_cilium_style_corpus_lints_clean(version):
    report = lint_paths([str(CORPUS)], BuildOptions(cilium_version=version))
    assert _problems(report) == []
    assert report.exit_code(strict=True) == 0
    assert report.policies == EXPECTED_POLICIES
    infos = sorted((_relative(d.location.file), d.code) for d in report.diagnostics if d.level == Severity.INFO)
    assert infos == EXPECTED_INFOS


@pytest.mark.parametrize("name", POLICY_FILES)
def test_each_policy_file_lints_clean_on_its_own(name):
    report = lint_paths([str(CORPUS / name)])
    assert report.policies >= 1
    assert _problems(report) == []


def test_template_skip_names_the_file_and_says_how_to_lint_it():
    report = lint_paths([str(CORPUS / "helm-chart" / "templates" / "cnp.yaml")])
    (info,) = report.diagnostics
    assert (info.code, info.level, info.location.line) == ("HF003", Severity.INFO, 1)
    assert "template" in info.message and "helm template" in info.hint


def test_non_policy_skip_says_what_was_skipped():
    report = lint_paths([str(CORPUS / "helm-chart" / "Chart.yaml")])
    (info,) = report.diagnostics
    assert info.code == "HF003" and "not a Kubernetes object" in info.message and "apiVersion v2" in info.message


# -- what must stay an error or a warning: decided by content, not by where a file sits ----------

CNP_HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: team}\n"

# (id, file text, code that must appear, its severity)
STILL_REPORTED = [
    # A real CNP with a YAML error and no template markers is broken YAML.
    ("broken-cnp-without-template", CNP_HEAD + "spec:\n  endpointSelector: {matchLabels: {app: [web}\n",
     "HF001", Severity.ERROR),
    # Template markers only after the YAML error: the text before them is broken on its own.
    ("yaml-error-before-first-template-action",
     CNP_HEAD + "spec:\n  endpointSelector: a: b\n  description: \"{{ .Values.d }}\"\n", "HF001", Severity.ERROR),
    # A template marker in a comment does not make a broken policy a template.
    ("template-marker-only-in-a-comment", "# render with {{ helm }}\n" + CNP_HEAD + "spec: [\n",
     "HF001", Severity.ERROR),
    # A Cilium apiVersion or kind makes an incomplete object a policy, not something to skip.
    ("cilium-api-version-without-kind", "apiVersion: cilium.io/v2\nmetadata: {name: p}\nspec: {}\n",
     "HF002", Severity.ERROR),
    ("cilium-kind-without-api-version", "kind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec: {}\n",
     "HF002", Severity.ERROR),
    ("policy-spec-without-api-version-and-kind",
     "metadata: {name: p}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n", "HF002", Severity.ERROR),
    # The idiom is an info; an empty deny entry and a dead empty entry stay warnings.
    ("empty-ingress-is-info", CNP_HEAD + "spec:\n  endpointSelector: {}\n  ingress: [{}]\n", "HF052", Severity.INFO),
    ("empty-egress-deny-stays-a-warning", CNP_HEAD + "spec:\n  endpointSelector: {}\n  egressDeny: [{}]\n",
     "HF052", Severity.WARNING),
    ("dead-empty-ingress-stays-a-warning",
     CNP_HEAD + "spec:\n  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}\n  ingress: [{}]\n",
     "HF052", Severity.WARNING),
    # rule_validation.go: DNS rules take no port range, on 5353 as on 53.
    ("dns-range-on-5353-is-an-error",
     CNP_HEAD + textwrap.dedent("""\
     spec:
       endpointSelector: {}
       egress:
       - toPorts: [{ports: [{port: "5353", endPort: 5354}], rules: {dns: [{matchPattern: "*"}]}}]
     """), "HF035", Severity.ERROR),
    # An icmps deny still shadows an ICMP allow of the same type.
    ("icmps-deny-shadows-the-same-icmp-allow",
     CNP_HEAD + textwrap.dedent("""\
     spec:
       endpointSelector: {}
       ingressDeny:
       - icmps: [{fields: [{type: 8, family: IPv4}]}]
       ingress:
       - fromEntities: [world]
         icmps: [{fields: [{type: 8, family: IPv4}]}]
     """), "HF050", Severity.WARNING),
]


@pytest.mark.parametrize(("text", "code", "level"), [r[1:] for r in STILL_REPORTED], ids=[r[0] for r in STILL_REPORTED])
def test_still_reported(tmp_path, text, code, level):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    report = lint_paths([str(path)])
    found = [(d.code, d.level) for d in report.diagnostics]
    assert (code, level) in found, [str(d) for d in report.diagnostics]
