"""From paths to a validated policy model: read YAML, check the schema, build the model.

This is the entry point later stages use (`load_policies`); `hushflow lint` adds its
semantic checks on top of what this returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from hushflow.policy.agent_validation import agent_problems
from hushflow.policy.cluster_network_policy import API_VERSION as CLUSTER_NETWORK_POLICY_API
from hushflow.policy.cluster_network_policy import ENFORCED_FROM as CLUSTER_NETWORK_POLICY_SINCE
from hushflow.policy.cluster_network_policy import KIND as CLUSTER_NETWORK_POLICY
from hushflow.policy.cluster_network_policy import (
    agent_option_note,
    build_cluster_network_policy,
    check_cluster_network_policy,
    priority_ties,
)
from hushflow.policy.diagnostics import Diagnostic, Severity
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.model import (
    CCNP,
    CIDR_GROUP,
    CNP,
    REQUIRES_REMOVED_IN,
    BuildOptions,
    PolicySet,
    build_cidr_group,
    build_policy,
)
from hushflow.policy.names import label_problem, subdomain_problem
from hushflow.policy.network_policy import API_VERSION as NETWORK_POLICY_API
from hushflow.policy.network_policy import NETWORK_POLICY, build_network_policy, check_network_policy
from hushflow.policy.requires import FIELDS as REQUIRES_FIELDS
from hushflow.policy.requires import requires_problems
from hushflow.policy.schema import SchemaProblem, schema_version_for, validate_fqdn_selector, validate_object
from hushflow.policy.source import FieldPath
from hushflow.policy.yamlsource import Manifest, load_manifests

_DENY_SECTIONS = ("egressDeny", "ingressDeny")
_DENY_L7_FIELDS = ("rules", "serverNames", "terminatingTLS", "originatingTLS", "listener")
KNOWN_KINDS = {CNP: ("cilium.io/v2",), CCNP: ("cilium.io/v2",), CIDR_GROUP: ("cilium.io/v2", "cilium.io/v2alpha1"),
               NETWORK_POLICY: (NETWORK_POLICY_API,), CLUSTER_NETWORK_POLICY: (CLUSTER_NETWORK_POLICY_API,)}


@dataclass(slots=True)
class LoadedPolicies:
    policy_set: PolicySet = field(default_factory=PolicySet)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    objects: int = 0  # Kubernetes objects read, of any kind
    raw: dict[int, Manifest] = field(default_factory=dict)  # id(policy) -> its manifest
    # Valid ClusterNetworkPolicy objects: checked and counted, not yet modelled as rules.
    cluster_network_policies: list[Manifest] = field(default_factory=list)


def _rule_paths(data: dict[str, Any]) -> list[FieldPath]:
    paths: list[FieldPath] = []
    if isinstance(data.get("spec"), dict):
        paths.append(("spec",))
    specs = data.get("specs")
    if isinstance(specs, list):
        paths.extend(("specs", index) for index, spec in enumerate(specs) if isinstance(spec, dict))
    return paths


def _get(data: Any, path: FieldPath) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _fqdn_deny_message(deny_entry: dict[str, Any]) -> str:
    def listed(value: Any) -> list[Any]:  # the schema check reports a non-list; the message must not fail on it
        return value if isinstance(value, list) else []

    ports = [
        f"{p.get('port', '0')}/{p.get('protocol') or 'ANY'}"
        for port_rule in listed(deny_entry.get("toPorts"))
        if isinstance(port_rule, dict)
        for p in listed(port_rule.get("ports"))
        if isinstance(p, dict)
    ]
    if ports:
        pruned = f"deny {', '.join(ports)} to EVERY peer, which also blocks every allowed destination on those ports"
    else:
        pruned = "`egressDeny: [{}]`, which denies nothing but switches the endpoints to egress default-deny"
    return (
        "toFQDNs in egressDeny: Cilium cannot enforce it (the CRD has no such field). "
        '`kubectl apply` rejects the policy (unknown field "toFQDNs"); clients that do not '
        f"validate strictly get the field silently pruned, turning this rule into {pruned}"
    )


def _classify(problem: SchemaProblem, data: dict[str, Any]) -> tuple[str, str, str]:
    """Map a schema problem to (code, message, hint): the specific lint codes where they apply."""
    path = problem.path
    message, hint = problem.message, problem.hint
    in_deny = any(part in _DENY_SECTIONS for part in path if isinstance(part, str))
    if problem.keyword == "additionalProperties":
        if path[-1] == "toFQDNs" and len(path) >= 3 and path[-3] == "egressDeny":
            return (
                "HF020",
                _fqdn_deny_message(_get(data, path[:-1]) or {}),
                "keep it in your source of truth and run `hushflow compile` to turn it into "
                "toCIDRSet + CiliumCIDRGroup rules Cilium runs (plus DNS-level blocking)",
            )
        if in_deny and path[-1] in _DENY_L7_FIELDS and "toPorts" in path:
            return (
                "HF021",
                f"{path[-1]} in a deny rule: deny rules work at L3/L4 only (their toPorts take only `ports`). "
                "Strict clients reject the policy; others prune the field and deny the whole port at L4",
                "to deny by HTTP path or DNS name, allow only what is wanted with an L7 allow rule "
                "(HTTP 403 / DNS REFUSED for the rest)",
            )
        if in_deny and path[-1] == "authentication":
            return (
                "HF022",
                "authentication in a deny rule: it exists on allow rules only; strict clients reject the "
                "policy, others prune it",
                "move `authentication` to the allow rule that admits this traffic",
            )
        return "HF010", message, hint
    if problem.keyword == "enum" and path[-1] == "protocol" and str(problem.value).upper().startswith("ICMP"):
        return (
            "HF033",
            f"{problem.value} is not a toPorts protocol: ICMP is matched with `icmps`, not `toPorts`",
            "write `icmps: [{fields: [{family: IPv4, type: EchoRequest}]}]` in a rule without toPorts",
        )
    if path[-2:] == ("log", "value") and problem.keyword in ("maxLength", "pattern"):
        return (
            "HF040",
            f"log.value {message}",
            "Hubble copies log.value into policy_log: keep it to 32 printable characters",
        )
    return "HF010", message, hint


def _check_names(manifest: Manifest, diagnostics: list[Diagnostic]) -> bool:
    """metadata.name (a DNS-1123 subdomain) and metadata.namespace (a DNS-1123 label), as the API
    server checks them; False when one is broken."""
    metadata = manifest.data.get("metadata")
    if not isinstance(metadata, dict):
        return True  # the schema check reports it
    ok = True
    for key, problem_of, what in (("name", subdomain_problem, "a DNS-1123 subdomain"),
                                  ("namespace", label_problem, "a DNS-1123 label")):
        if key not in metadata or (key == "namespace" and metadata[key] is None):
            continue
        problem = problem_of(metadata[key])
        if problem is not None:
            ok = False
            diagnostics.append(Diagnostic(
                "HF015", f"metadata.{key} {metadata[key]!r} is not {what}: it {problem}",
                manifest.locate(("metadata", key)),
                "the API server refuses the object; hushflow also refuses to compile it",
            ))
    return ok


def _requires_problem(problem: SchemaProblem, cilium_version: tuple[int, int]) -> bool:
    """A 1.19+ schema problem of fromRequires/toRequires (`maxItems: 0`, items now strings):
    `requires_problems` reports each of those with its own message, so the schema's is dropped."""
    return cilium_version >= REQUIRES_REMOVED_IN and any(
        isinstance(part, str) and part in REQUIRES_FIELDS.values() for part in problem.path
    )


L7_REMOVED_IN = (1, 20)  # cilium#44610: kafka, l7proto and l7 rules removed from the CNP/CCNP CRDs
_REMOVED_L7_FIELDS = ("kafka", "l7proto", "l7")
_REMOVED_L7_MESSAGE = (
    "{field} rules were removed in Cilium 1.20 (cilium#44610, with Kafka policies in cilium#43557): the "
    "1.20 CRD has no such field, so the API server rejects the policy (strict clients for the unknown field; "
    "pruned, `rules` is left with no L7 type, which the CRD also rejects)"
)
_REMOVED_L7_HINT = "filter this protocol with a CiliumEnvoyConfig listener instead, or lint with the version you run"


def _removed_l7(problem: SchemaProblem, cilium_version: tuple[int, int]) -> bool:
    path = problem.path
    return (
        cilium_version >= L7_REMOVED_IN
        and problem.keyword == "additionalProperties"
        and len(path) >= 2
        and path[-2] == "rules"
        and path[-1] in _REMOVED_L7_FIELDS
    )


def _removed_l7_one_of(problem: SchemaProblem, data: dict[str, Any], cilium_version: tuple[int, int]) -> bool:
    """The `rules` one-of that fails only because its L7 type is one 1.20 removed: the unknown
    field is reported instead (once, with why)."""
    if cilium_version < L7_REMOVED_IN or problem.keyword != "oneOf" or problem.path[-1:] != ("rules",):
        return False
    rules = _get(data, problem.path)
    return isinstance(rules, dict) and any(field in rules for field in _REMOVED_L7_FIELDS)


def check_manifest(
    manifest: Manifest, diagnostics: list[Diagnostic], cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
) -> bool:
    """Schema-check one CNP/CCNP/CIDR group against the CRDs of that Cilium version, then what
    the agent rejects beyond them; True when its model can be built safely."""
    data = manifest.data
    problems = validate_object(data, manifest.api_version, manifest.kind, cilium_version)
    buildable = _check_names(manifest, diagnostics)
    for problem in problems:
        if _requires_problem(problem, cilium_version) or _removed_l7_one_of(problem, data, cilium_version):
            continue
        code, message, hint = _classify(problem, data)
        if _removed_l7(problem, cilium_version):
            message, hint = _REMOVED_L7_MESSAGE.format(field=problem.path[-1]), _REMOVED_L7_HINT
        if code == "HF010":
            buildable = False
        diagnostics.append(Diagnostic(code, message, manifest.locate(problem.path), hint))
        if code == "HF020":
            fqdns = _get(data, problem.path)
            if not isinstance(fqdns, list):
                diagnostics.append(
                    Diagnostic("HF010", "must be an array", manifest.locate(problem.path)),
                )
                buildable = False
                continue
            for index, item in enumerate(fqdns):
                for sub in validate_fqdn_selector(item, (*problem.path, index), cilium_version):
                    diagnostics.append(Diagnostic("HF010", sub.message, manifest.locate(sub.path), sub.hint))
                    buildable = False
    if manifest.kind in (CNP, CCNP) and buildable:
        buildable = _check_shape(manifest, diagnostics)
    if manifest.kind in (CNP, CCNP) and buildable:
        agent = agent_problems(manifest, cilium_version)
        diagnostics.extend(agent)
        buildable = not any(d.level == Severity.ERROR for d in agent)
    return buildable


def _schema_substitute(manifest: Manifest, cilium_version: tuple[int, int]) -> Diagnostic | None:
    """An info when no CRD schema of this Cilium version is bundled (schemas/README.md)."""
    used = schema_version_for(cilium_version)
    if used == cilium_version:
        return None
    return Diagnostic(
        "HF007",
        f"no CRD schema of Cilium {cilium_version[0]}.{cilium_version[1]} is bundled: validated with the "
        f"Cilium {used[0]}.{used[1]} schemas (the nearest bundled)",
        manifest.locate(),
        "fields added or removed since then are not checked as that version's API server would",
    )


def _check_shape(manifest: Manifest, diagnostics: list[Diagnostic]) -> bool:
    """What Cilium's own parser rejects beyond the schema."""
    data = manifest.data
    if data.get("spec") is None and not data.get("specs"):
        diagnostics.append(
            Diagnostic(
                "HF011",
                f"{manifest.kind} has neither spec nor specs: Cilium rejects it as an empty policy",
                manifest.locate(),
                "add a `spec` with an endpointSelector and at least one rule section",
            )
        )
        return False
    for path in _rule_paths(data):
        sections = [_get(data, (*path, name)) for name in ("ingress", "ingressDeny", "egress", "egressDeny")]
        if not any(isinstance(section, list) and section for section in sections):
            diagnostics.append(
                Diagnostic(
                    "HF014",
                    "rule must have at least one of ingress, ingressDeny, egress, egressDeny with an entry: "
                    "Cilium rejects it (an empty list does not count)",
                    manifest.locate(path),
                    "to switch on default-deny and allow nothing, write `ingress: [{}]`",
                )
            )
            return False
    if manifest.kind == CNP:
        for path in _rule_paths(data):
            if _get(data, (*path, "nodeSelector")) is not None:
                diagnostics.append(
                    Diagnostic(
                        "HF012",
                        "nodeSelector in a CiliumNetworkPolicy: Cilium rejects the rule "
                        "(\"rule cannot have NodeSelector\")",
                        manifest.locate((*path, "nodeSelector")),
                        "host policies must be CiliumClusterwideNetworkPolicy objects",
                    )
                )
                return False
    return True


_RULE_KEYS = frozenset({"endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny"})


def _looks_like_policy(data: dict[str, Any]) -> bool:
    """Is a document that lacks apiVersion or kind meant as a Cilium object (an error), or other
    YAML that shares the directory (a Helm Chart.yaml or values.yaml, Prometheus or Grafana
    configuration, a kustomization: skipped)? Decided by content: a Cilium apiVersion or kind,
    or a spec written like a policy rule."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if isinstance(api_version, str) and api_version.strip().lower().startswith("cilium.io"):
        return True
    if isinstance(kind, str) and (kind in KNOWN_KINDS or kind.strip().lower().startswith("cilium")):
        return True
    specs = [data.get("spec")]
    if isinstance(data.get("specs"), list):
        specs.extend(data["specs"])
    return any(isinstance(spec, dict) and not _RULE_KEYS.isdisjoint(spec) for spec in specs)


def _skipped_non_object(manifest: Manifest, missing: str) -> Diagnostic:
    data = manifest.data
    shown = []
    for key in ("apiVersion", "kind"):
        value = data.get(key)
        if value is not None and not isinstance(value, dict | list):
            text = str(value)
            shown.append(f"{key} {text if len(text) <= 40 else text[:37] + '...'}")
    has = f" ({', '.join(shown)})" if shown else ""
    return Diagnostic(
        "HF003",
        f"skipped a document without {missing}{has}: not a Kubernetes object, so not a Cilium policy "
        "(e.g. Helm chart metadata or values, Prometheus or Grafana configuration)",
        manifest.locate(),
    )


def load_policies(
    paths: Sequence[str], options: BuildOptions | None = None, stdin: IO[str] | None = None
) -> LoadedPolicies:
    """Read, validate and model every policy and CIDR group under `paths`."""
    options = options or BuildOptions()
    loaded = LoadedPolicies()
    read = load_manifests(paths, stdin)
    loaded.files = read.files
    loaded.diagnostics.extend(Diagnostic(p.code, p.message, p.location, p.hint) for p in read.problems)
    seen: dict[tuple[str, str, str], Manifest] = {}
    substitute_reported = False
    cluster_note_given = False  # HF071, once per run
    for manifest in read.manifests:
        loaded.objects += 1
        kind, api_version = manifest.kind, manifest.api_version
        if not kind or not api_version:
            missing = " and ".join(n for n, v in (("apiVersion", api_version), ("kind", kind)) if not v)
            if _looks_like_policy(manifest.data):
                loaded.diagnostics.append(
                    Diagnostic("HF002", f"object without {missing}", manifest.locate(), "every object needs both")
                )
            else:
                loaded.diagnostics.append(_skipped_non_object(manifest, missing))
            continue
        if kind not in KNOWN_KINDS:
            loaded.diagnostics.append(
                Diagnostic("HF003", f"skipped {kind} ({api_version}): not a Cilium policy", manifest.locate())
            )
            continue
        if api_version not in KNOWN_KINDS[kind]:
            loaded.diagnostics.append(
                Diagnostic(
                    "HF010",
                    f"{kind} is not served as {api_version}",
                    manifest.locate(("apiVersion",)),
                    f"use apiVersion: {KNOWN_KINDS[kind][0]}",
                )
            )
            continue
        metadata = manifest.data.get("metadata") if isinstance(manifest.data.get("metadata"), dict) else {}
        identity = (kind, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        if identity in seen and identity[2]:
            first = seen[identity].locate()
            loaded.diagnostics.append(
                Diagnostic(
                    "HF005",
                    f"{kind} {'/'.join(p for p in identity[1:] if p)} is also defined at {first.file}:{first.line}",
                    manifest.locate(("metadata", "name")),
                    "the API server keeps only the last one applied",
                )
            )
        seen[identity] = manifest
        if kind == NETWORK_POLICY:  # Kubernetes' own kind: its schema, translated (network_policy.py)
            names_ok = _check_names(manifest, loaded.diagnostics)
            if check_network_policy(manifest, loaded.diagnostics) and names_ok:
                policy = build_network_policy(manifest, options)
                loaded.policy_set.policies.append(policy)
                loaded.raw[id(policy)] = manifest
            continue
        if kind == CLUSTER_NETWORK_POLICY:  # the Network Policy API's kind (cluster_network_policy.py)
            if not cluster_note_given:
                cluster_note_given = True
                note = agent_option_note(manifest, options.cilium_version)
                if note is not None:
                    loaded.diagnostics.append(note)
            found, valid = check_cluster_network_policy(manifest, options.cilium_version)
            loaded.diagnostics.extend(found)
            if valid:
                loaded.cluster_network_policies.append(manifest)
                if options.cilium_version >= CLUSTER_NETWORK_POLICY_SINCE:  # enforced from 1.20 (HF070)
                    loaded.policy_set.cluster_network_rules.extend(
                        build_cluster_network_policy(manifest, options.local_cluster))
            continue
        if not substitute_reported:
            substitute_reported = True
            substitute = _schema_substitute(manifest, options.cilium_version)
            if substitute is not None:
                loaded.diagnostics.append(substitute)
        if not check_manifest(manifest, loaded.diagnostics, options.cilium_version):
            continue
        if kind != CIDR_GROUP:
            # From 1.19 the CRD rejects fromRequires/toRequires (the model builds their pruned meaning).
            loaded.diagnostics.extend(requires_problems(manifest, options.cilium_version))
        if kind == CIDR_GROUP:
            loaded.policy_set.cidr_groups.append(build_cidr_group(manifest))
        else:
            policy = build_policy(manifest, options)
            loaded.policy_set.policies.append(policy)
            loaded.raw[id(policy)] = manifest
    loaded.diagnostics.extend(priority_ties(loaded.cluster_network_policies))
    return loaded
