"""Fuzz: policy YAML, as `hushflow lint`, `compile` and `run` load it.

Property: any text gives a lint report (never an exception) whose every diagnostic has a known
code and points into the text (`<stdin>:line`, the line within the text); the report renders as
text, JSON and SARIF. A near-valid CiliumNetworkPolicy that loads with no error a job refuses is
usable by every job: its FQDN denies compile, the attributor and the deny learner build, and
recorded flows and DNS answers go through them.
"""

from __future__ import annotations

import io
import json
from functools import cache
from typing import Any

import orjson
import yaml
from hypothesis import strategies as st

from hushflow.app.enrich import make_attributor
from hushflow.app.policies import ACCEPTED_ERRORS
from hushflow.enforce.compile import compile_policies
from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import DenyLearner
from hushflow.enforce.state import DenyState
from hushflow.flow.dns import dns_answer_of
from hushflow.policy.diagnostics import CHECKS, Severity
from hushflow.policy.lint import lint_paths
from hushflow.policy.lint_output import to_json, to_sarif, write_text
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions
from tests.fuzz.harness import fuzz_target, note
from tests.fuzz.seeds import EXAMPLE, json_values, mutated_bytes, sample_golden_lines, seed_lines

# -- arbitrary and YAML-shaped text -----------------------------------------------------------------

_FRAGMENTS = (
    "apiVersion: cilium.io/v2", "apiVersion: cilium.io/v2alpha1", "apiVersion: v1", "kind: CiliumNetworkPolicy",
    "kind: CiliumClusterwideNetworkPolicy", "kind: CiliumCIDRGroup", "kind: List", "kind: ConfigMapList",
    "items:", "metadata:", "  name: x", "  namespace: default", "spec:", "specs:", "  endpointSelector: {}",
    "  egressDeny:", "  egress:", "  ingress:", "  - toFQDNs:", "    - matchPattern: '*.example.com'",
    "    - matchName: a.example.com", "    toPorts:", "    - ports:", "      - port: '443'", "        protocol: TCP",
    "  log:", "    value: tag", "---", "...", "%YAML 1.1", "%TAG ! tag:x,2000:", "- ", "? ", ": ", "&a [1, 2]",
    "*a", "<<: *a", "b: &b {c: *b}", "!!binary aGVsbG8=", "!!python/object:os.system", "!!set {a, b}",
    "!!timestamp 2001-12-14", "!!int 0x1F", "!!float .inf", "{", "}", "[", "]", "'", '"', "|", ">", "#", "\t",
    "yes", "no", "on", "~", "null", "0o17", "1_000", "12:30:00", "\x1b[2J", "\x00", "\ufeff", "é: ü",
    "key: value", "key: value", "9" * 400, "-" * 3 + " !!map", "a: [" * 30,
)


@st.composite
def yaml_like_text(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=30))
    indents = draw(st.lists(st.sampled_from(["", "  ", "    ", "- "]), min_size=len(parts), max_size=len(parts)))
    return "\n".join(indent + part for indent, part in zip(indents, parts, strict=True))


@cache
def _example_texts() -> tuple[str, ...]:
    return tuple(path.read_text() for path in sorted((EXAMPLE / "policies").glob("*.yaml")))


mutated_example = st.sampled_from(_example_texts()).flatmap(
    lambda text: mutated_bytes(text.encode(), max_mutations=6)).map(lambda raw: raw.decode("utf-8", "replace"))
policy_text = st.one_of(st.text(max_size=300), yaml_like_text(), mutated_example)


def _lint_text(text: str) -> Any:
    report = lint_paths(["-"], BuildOptions(), stdin=io.StringIO(text))
    # YAML breaks lines at \r and NEL, U+2028, U+2029 too; +2: the last line, and libyaml's mark
    # one past the end.
    lines = sum(text.count(brk) for brk in ("\n", "\r", "\x85", "\u2028", "\u2029")) + 2
    for diagnostic in report.diagnostics:
        assert diagnostic.code in CHECKS, diagnostic
        assert diagnostic.location.file == "<stdin>", diagnostic
        assert 0 <= diagnostic.location.line <= lines, (diagnostic, lines)
        assert diagnostic.level in Severity
    assert report.files == ["<stdin>"]
    assert 0 <= report.policies <= report.objects
    assert report.exit_code() == (1 if report.count(Severity.ERROR) else 0)
    out = io.StringIO()
    write_text(report, out, color=False)
    json.dumps(to_json(report))
    json.dumps(to_sarif(report))
    note("clean" if not report.diagnostics else "diagnosed")
    return report


@fuzz_target(policy_text, ci_examples=500)
def test_fuzz_policy_yaml_text(text: str) -> None:
    """Any text: a lint report with known codes at lines of the text."""
    _lint_text(text)


# -- near-valid CiliumNetworkPolicies ----------------------------------------------------------------

_NAMES = st.sampled_from(["api.example.com", "*.example.com", "**.example.com", "*", "a*b.example.com",
                          "EXAMPLE.com.", "", "-bad-.example", "x" * 260, "xn--bcher-kva.example", "*.*.example.com",
                          "a..b", "ex ample.com", "\x1b[1mred"])
_LABEL_KEYS = st.sampled_from(["app", "k8s:app", "k8s:io.kubernetes.pod.namespace", "any:x", "reserved:host",
                               "io.cilium.k8s.policy.cluster", "", "a/b/c", "k" * 70])
_LABEL_VALUES = st.sampled_from(["web", "", "kube-system", "v" * 70, "a b", "x/y", "1"])


#: Per example: 0, the policies are valid where the generator can tell; 1..3, odd values now and then.
_ODDNESS = st.shared(st.integers(0, 3), key="policy-oddness")


def _odd(valid: list[Any], odd: list[Any], anything: bool = True) -> st.SearchStrategy[Any]:
    """A valid value; in an odd example, one time in 8 an odd one of the same place, one in 16
    (`anything`) any JSON value."""
    def pick(oddness: int) -> st.SearchStrategy[Any]:
        if not oddness:
            return st.sampled_from(valid)
        return st.integers(0 if anything else 1, 15).flatmap(
            lambda n: json_values if n == 0 else st.sampled_from(odd) if n < 3 else st.sampled_from(valid))

    return _ODDNESS.flatmap(pick)


def _maybe_odd(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy`; in an odd example, one time in 16 any JSON value (a wrong type, an odd value)."""
    return _ODDNESS.flatmap(lambda oddness: strategy if not oddness else st.integers(0, 15).flatmap(
        lambda n: json_values if n == 0 else strategy))


def _rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True one time in `one_in`, in an odd example only."""
    return bool(draw(_ODDNESS)) and draw(st.integers(1, one_in)) == 1


_ODD_NAMES = ["", "-bad-.example", "x" * 260, "a..b", "ex ample.com", "\x1b[1mred", "*.", ".", "*.*.example.com"]
_NAMES = _odd(["api.example.com", "EXAMPLE.com.", "xn--bcher-kva.example", "telemetry.example.com"], _ODD_NAMES)
_PATTERNS = _odd(["*.example.com", "**.example.com", "*", "a*b.example.com", "*.telemetry.example.com"], _ODD_NAMES)
_LABEL_KEYS = _odd(["app", "k8s:app", "k8s:io.kubernetes.pod.namespace", "any:tier", "io.cilium.k8s.policy.cluster",
                    "app.kubernetes.io/name"], ["", "a/b/c", "k" * 70, "reserved:host", "k8s:", ":"], anything=False)
_LABEL_VALUES = _odd(["web", "", "kube-system", "my-app", "1"], ["v" * 70, "a b", "x/y", "-x"])
_CIDRS = _odd(["10.0.0.0/8", "192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32", "0.0.0.0/0", "::/0"],
              ["10.0.0.1", "10.0.0.0/33", "2001:db8::/129", "fe80::1%eth0/64", "300.0.0.0/8", "", "10.0.0.0/08"])
_PORTS = _odd(["443", "80", "53", "0", "65535", "8080"], ["65536", "-1", "http", "1-2", "", "0x50", 443])
_PROTOCOLS = _odd(["TCP", "UDP", "SCTP", "ANY"], ["ICMP", "tcp", "", "ICMPv6"])


def _one_of_keys(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with exactly one of `fields` (the shape a peer or an FQDN selector has)."""
    return st.sampled_from(sorted(fields)).flatmap(lambda key: fields[key].map(lambda value: {key: value}))


selector = _maybe_odd(st.fixed_dictionaries({}, optional={
    "matchLabels": st.dictionaries(_LABEL_KEYS, _LABEL_VALUES, max_size=3),
    "matchExpressions": st.lists(st.fixed_dictionaries(
        {"key": _LABEL_KEYS, "operator": _odd(["In", "NotIn", "Exists", "DoesNotExist"], ["in", "Gt", ""])},
        optional={"values": st.lists(_LABEL_VALUES, min_size=1, max_size=3)}), max_size=2),
}))
fqdn_selector = _maybe_odd(_one_of_keys(matchName=_NAMES, matchPattern=_PATTERNS))
port_list = st.lists(_maybe_odd(st.fixed_dictionaries({"port": _PORTS}, optional={
    "protocol": _PROTOCOLS, "endPort": _odd([0, 443, 8090, 65535], [-1, 70000, 10, "x"])})), min_size=1, max_size=3)
l7_rules = _maybe_odd(st.one_of(
    st.fixed_dictionaries({"dns": st.lists(_one_of_keys(matchName=_NAMES, matchPattern=_PATTERNS), min_size=1,
                                           max_size=2)}),
    st.fixed_dictionaries({"http": st.lists(st.fixed_dictionaries({}, optional={
        "method": _odd(["GET", "POST"], ["(", ""]), "path": _odd(["/a", "/api/.*"], ["[", "(?<x>"])}),
        min_size=1, max_size=2)}),
))


def port_rules(deny: bool) -> st.SearchStrategy[Any]:
    optional: dict[str, st.SearchStrategy[Any]] = {} if deny else {
        "rules": l7_rules, "serverNames": st.lists(_NAMES, min_size=1, max_size=2)}
    return _maybe_odd(st.lists(st.fixed_dictionaries({"ports": port_list}, optional=optional), min_size=1,
                               max_size=2))


def peer(direction: str, deny: bool) -> st.SearchStrategy[dict[str, Any]]:
    side = "to" if direction == "egress" else "from"
    peers: dict[str, st.SearchStrategy[Any]] = {
        f"{side}CIDR": st.lists(_CIDRS, min_size=1, max_size=2),
        f"{side}CIDRSet": st.lists(st.fixed_dictionaries({"cidr": _CIDRS}, optional={
            "except": st.lists(_CIDRS, max_size=2)}), min_size=1, max_size=2),
        f"{side}Endpoints": st.lists(selector, min_size=1, max_size=2),
        f"{side}Entities": st.lists(_odd(["world", "cluster", "host", "all", "kube-apiserver"],
                                         ["bogus", "", "world-ipv4"]), min_size=1, max_size=2),
    }
    if direction == "egress":
        peers["toFQDNs"] = st.lists(fqdn_selector, min_size=1, max_size=3)
        peers["toServices"] = st.lists(st.fixed_dictionaries({"k8sService": st.fixed_dictionaries(
            {"serviceName": st.sampled_from(["db", "api"]), "namespace": st.sampled_from(["default", "x"])})}),
            min_size=1, max_size=1)
    rule = st.one_of(_one_of_keys(**peers), st.just({}))

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = dict(draw(rule))
        if draw(st.integers(0, 2)):
            out["toPorts"] = draw(port_rules(deny))
        elif draw(st.integers(0, 5)) == 0:
            out["icmps"] = [{"fields": [{"type": draw(_odd([8, "EchoRequest", 0], [300, "Bogus"])),
                                         "family": draw(_odd(["IPv4", "IPv6"], ["IPv5"]))}]}]
        if not deny and draw(st.integers(0, 9)) == 0:
            out["authentication"] = {"mode": draw(st.sampled_from(["required", "disabled"]))}
        if _rarely(draw, 8):  # a peer kind too many, a field of the other direction, L7 in a deny
            if deny:
                out["toPorts"] = [{"ports": [{"port": "80"}], "rules": draw(l7_rules)}]
            out.update(draw(_one_of_keys(**peers)) if draw(st.booleans()) else {"toFQDNs" if side == "from"
                                                                             else "fromEndpoints": [{}]})
        return out

    return _maybe_odd(build())


@st.composite
def rule_spec(draw: st.DrawFn, clusterwide: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if clusterwide and draw(st.integers(0, 3)) == 0:
        spec["nodeSelector"] = draw(selector)
    else:
        spec["endpointSelector"] = draw(selector)
    sections = draw(st.lists(st.sampled_from(["egress", "egressDeny", "ingress", "ingressDeny"]), min_size=1,
                             max_size=3, unique=True))
    for section in sections:
        direction = "egress" if section.startswith("egress") else "ingress"
        spec[section] = draw(_maybe_odd(st.lists(peer(direction, section.endswith("Deny")), min_size=1,
                                                 max_size=3)))
    if draw(st.booleans()):
        spec["log"] = {"value": draw(_odd(["tag", "app-explicit-traffic-blocked", "t" * 32], ["t" * 40, "a\x07b"]))}
    if _rarely(draw, 8):  # Cilium rejects these; lint must say so, not crash
        spec[draw(st.sampled_from(["nodeSelector", "endpointSelector", "egress", "specs"]))] = draw(json_values)
    return spec


metadata = st.fixed_dictionaries({"name": _odd(["p", "p2", "block-telemetry"], ["Bad_Name", "a" * 300, "../x", ""])},
                                 optional={"namespace": _odd(["default", "my-namespace"], ["", "Bad NS"])})


@st.composite
def policy_documents(draw: st.DrawFn) -> list[Any]:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(_odd(["CiliumNetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy",
                          "CiliumCIDRGroup"], ["NetworkPolicy", "List", ""]))
        doc: dict[str, Any] = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": draw(metadata)}
        clusterwide = kind == "CiliumClusterwideNetworkPolicy"
        if kind == "CiliumCIDRGroup":
            doc["spec"] = {"externalCIDRs": draw(st.lists(_CIDRS, max_size=3))}
        elif draw(st.integers(0, 3)):
            doc["spec"] = draw(rule_spec(clusterwide))
        else:
            doc["specs"] = draw(st.lists(rule_spec(clusterwide), min_size=1, max_size=2))
        if clusterwide:
            doc["metadata"].pop("namespace", None)
        docs.append(doc)
    return docs


def _yaml(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


@cache
def _seed_events() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (*seed_lines()[:25], *sample_golden_lines(20))]


def _use_policies(text: str) -> None:
    """What the jobs do with policies they accept (app/policies.load_job_policies' rule)."""
    loaded = load_policies(["-"], BuildOptions(), stdin=io.StringIO(text))
    refused = [d for d in loaded.diagnostics if d.level == Severity.ERROR and d.code not in ACCEPTED_ERRORS]
    if refused or not loaded.policy_set.policies:
        note("refused by the jobs")
        return
    note("accepted by the jobs")
    state = DenyState()
    compile_policies(loaded, state)
    denies = fqdn_denies(loaded.policy_set)
    learner = DenyLearner(loaded.policy_set, denies, state)
    attributor = make_attributor(loaded.policy_set)
    for event in _seed_events():
        flow = event.get("flow")
        if not isinstance(flow, dict):
            continue
        answer = dns_answer_of(flow) if "l7" in flow else None
        if answer is not None:
            learner.learn_answer(answer, 1.0)
            attributor.learn_answer(answer, 1.0)
        else:
            attributor.observe(event, now=1.0)
    compile_policies(loaded, state)


@fuzz_target(policy_documents(), ci_examples=150)
def test_fuzz_policy_documents(docs: list[Any]) -> None:
    """Near-valid policies: diagnosed at lines of the file, or usable by every job."""
    text = _yaml(docs)
    _lint_text(text)
    _use_policies(text)


def test_the_example_policies_are_accepted_by_the_property() -> None:
    # The property's "accepted" branch is reached by real policies (not only refused ones).
    text = "\n---\n".join(_example_texts())
    report = _lint_text(text)
    assert report.policies >= 4
    _use_policies(text)
