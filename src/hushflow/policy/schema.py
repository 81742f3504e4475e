"""Validate manifests against the bundled Cilium CRD schemas, as the API server would.

One schema set per Cilium minor version (1.18, 1.19, 1.20; see schemas/README.md for where
each comes from), chosen by `--cilium-version`; a version without a bundled set is validated
with the nearest one (`schema_version_for`), which the loader reports as an info (HF007).
The schemas come from Cilium's CRD OpenAPI schemas
with `additionalProperties: false` added, so an unknown field fails as it does under
`kubectl apply --validate=strict`. Their patterns are Go (RE2) regular expressions, such as
`^\\PC*$` ("no control characters"); we evaluate them with RE2 itself, so they mean exactly
what they mean to the API server, and a hostile pattern input cannot backtrack for ever.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import re2
from jsonschema import Draft7Validator, ValidationError
from jsonschema.protocols import Validator

from hushflow.policy.source import FieldPath

SCHEMA_FILES = {
    ("cilium.io/v2", "CiliumNetworkPolicy"): "ciliumnetworkpolicy_v2.json",
    ("cilium.io/v2", "CiliumClusterwideNetworkPolicy"): "ciliumclusterwidenetworkpolicy_v2.json",
    ("cilium.io/v2", "CiliumCIDRGroup"): "ciliumcidrgroup_v2.json",
    ("cilium.io/v2alpha1", "CiliumCIDRGroup"): "ciliumcidrgroup_v2alpha1.json",
}
# The Cilium minor versions whose CRD schemas are bundled, as schemas/v<major>.<minor>-<file>.
SCHEMA_VERSIONS: tuple[tuple[int, int], ...] = ((1, 18), (1, 19), (1, 20))
DEFAULT_SCHEMA_VERSION = (1, 18)


def schema_version_for(cilium_version: tuple[int, int]) -> tuple[int, int]:
    """The bundled schema set for a Cilium version: its own, else the newest older one, else the
    oldest bundled (a version before the first bundled one)."""
    if cilium_version in SCHEMA_VERSIONS:
        return cilium_version
    older = [version for version in SCHEMA_VERSIONS if version < cilium_version]
    return max(older) if older else min(SCHEMA_VERSIONS)


def _file_for(version: tuple[int, int], file_name: str) -> str:
    return f"v{version[0]}.{version[1]}-{file_name}"

# What a schema pattern means, for people.
_PATTERN_WORDS = {
    "^\\PC*$": "printable characters only (no control characters)",
    "^([-a-zA-Z0-9_]+[.]?)+$": "a DNS name: letters, digits, '-', '_' and dots",
    "^([-a-zA-Z0-9_*]+[.]?)+$": "a DNS name pattern: letters, digits, '-', '_', '*' and dots",
}


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    path: FieldPath
    message: str
    hint: str
    keyword: str
    value: Any = None


@cache
def _compiled_pattern(pattern: str) -> Any:
    return re2.compile(pattern)


def _re2_pattern(validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _compiled_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("cidr", raises=ValueError)
def _is_cidr(instance: object) -> bool:
    # Go's net.ParseCIDR: prefix notation is required, host bits may be set.
    if not isinstance(instance, str):
        return True
    if "/" not in instance:
        raise ValueError("missing prefix length")
    ipaddress.ip_network(instance, strict=False)
    return True


@_FORMATS.checks("int32")
def _is_int32(instance: object) -> bool:
    return not isinstance(instance, int) or -(2**31) <= instance < 2**31


_CiliumValidator = jsonschema.validators.extend(Draft7Validator, {"pattern": _re2_pattern})


@cache
def bundled_schema(file_name: str) -> dict[str, Any]:
    """A JSON schema of `policy/schemas/`, read once (never mutate it: it is shared)."""
    text = resources.files("hushflow.policy").joinpath("schemas", file_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator_for(
    api_version: str, kind: str, cilium_version: tuple[int, int] = DEFAULT_SCHEMA_VERSION
) -> Validator | None:
    """The validator of one kind for a Cilium version (compiled once per schema file)."""
    file_name = SCHEMA_FILES.get((api_version, kind))
    if file_name is None:
        return None
    return _validator_of(_file_for(schema_version_for(cilium_version), file_name))


@cache
def _validator_of(file_name: str) -> Validator:
    return _CiliumValidator(bundled_schema(file_name), format_checker=_FORMATS)


@cache
def fqdn_selector_validator(cilium_version: tuple[int, int] = DEFAULT_SCHEMA_VERSION) -> Validator:
    """The schema of one `toFQDNs` entry, for hushflow's FQDN-deny extension."""
    cnp = bundled_schema(_file_for(schema_version_for(cilium_version), "ciliumnetworkpolicy_v2.json"))
    egress = cnp["properties"]["spec"]["properties"]["egress"]
    item_schema = egress["items"]["properties"]["toFQDNs"]["items"]
    return _CiliumValidator(item_schema, format_checker=_FORMATS)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def strict_validator(schema: dict[str, Any]) -> Any:
    """A validator for another bundled schema (NetworkPolicy, ClusterNetworkPolicy) that checks
    as the Cilium ones are checked: Go regexp patterns through RE2, the cidr and int32 formats."""
    return _CiliumValidator(schema, format_checker=_FORMATS)


def describe_error(error: ValidationError) -> list[SchemaProblem]:
    path: FieldPath = tuple(error.absolute_path)
    keyword = str(error.validator)
    expected: Any = error.validator_value
    value = error.instance
    if keyword == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extras = [key for key in value if key not in allowed] if isinstance(value, dict) else []
        hint = f"allowed fields here: {', '.join(allowed)}" if allowed else "no fields are allowed here"
        return [
            SchemaProblem((*path, str(key)), f'unknown field "{key}"', hint, keyword, key) for key in extras
        ]
    if keyword == "type":
        message = f"must be {_article(expected)}, not {_article(_type_name(value))}"
        hint = ""
        if expected == "string" and isinstance(value, int) and not isinstance(value, bool):
            hint = f'quote it: "{value}"'
        return [SchemaProblem(path, message, hint, keyword, value)]
    if keyword == "enum":
        choices = ", ".join(str(choice) for choice in expected)
        return [SchemaProblem(path, f"{value!r} is not one of: {choices}", "", keyword, value)]
    if keyword == "pattern":
        words = _PATTERN_WORDS.get(expected, f"the pattern {expected}")
        return [SchemaProblem(path, f"{value!r} is not valid: expected {words}", "", keyword, value)]
    if keyword == "required":
        missing = [key for key in expected if isinstance(value, dict) and key not in value]
        return [
            SchemaProblem(path, f'missing required field "{key}"', "", keyword, key) for key in missing or expected
        ]
    if keyword in ("maxLength", "minLength"):
        bound = "at most" if keyword == "maxLength" else "at least"
        return [
            SchemaProblem(path, f"is {len(value)} characters long; {bound} {expected} allowed", "", keyword, value)
        ]
    if keyword in ("maxItems", "minItems"):
        bound = "at most" if keyword == "maxItems" else "at least"
        return [SchemaProblem(path, f"has {len(value)} items; {bound} {expected} allowed", "", keyword, value)]
    if keyword in ("maximum", "minimum"):
        bound = "at most" if keyword == "maximum" else "at least"
        return [SchemaProblem(path, f"{value} is out of range: must be {bound} {expected}", "", keyword, value)]
    if keyword == "format":
        return [SchemaProblem(path, f"{value!r} is not a valid {expected}", _format_hint(expected), keyword, value)]
    if keyword in ("oneOf", "anyOf"):
        return [_combination_problem(path, keyword, expected, value)]
    return [SchemaProblem(path, error.message, "", keyword, value)]


def _combination_problem(path: FieldPath, keyword: str, branches: Any, value: Any) -> SchemaProblem:
    names = [name for branch in branches for name in branch.get("required", [])]
    if keyword == "oneOf":
        present = [name for name in names if isinstance(value, dict) and name in value]
        if present:
            return SchemaProblem(path, f"{' and '.join(present)} cannot be used together", "keep exactly one", keyword)
        return SchemaProblem(path, f"one of {' or '.join(names)} is required", "", keyword)
    return SchemaProblem(
        path,
        f"a rule needs at least one of {', '.join(names)}",
        "to only switch on default-deny, write `ingress: [{}]` or `egress: [{}]`",
        keyword,
    )


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _format_hint(fmt: str) -> str:
    if fmt == "cidr":
        return "write a prefix such as 192.0.2.0/24 or 2001:db8::/32"
    return ""


def validate_object(
    data: Mapping[str, Any],
    api_version: str,
    kind: str,
    cilium_version: tuple[int, int] = DEFAULT_SCHEMA_VERSION,
) -> list[SchemaProblem]:
    """Problems of one object against its CRD schema in that Cilium version; [] when valid or
    when no schema exists."""
    validator = validator_for(api_version, kind, cilium_version)
    if validator is None:
        return []
    problems: list[SchemaProblem] = []
    for error in validator.iter_errors(data):
        problems.extend(describe_error(error))
    return problems


def validate_fqdn_selector(
    data: Any, path: FieldPath, cilium_version: tuple[int, int] = DEFAULT_SCHEMA_VERSION
) -> list[SchemaProblem]:
    problems: list[SchemaProblem] = []
    for error in fqdn_selector_validator(cilium_version).iter_errors(data):
        for problem in describe_error(error):
            problems.append(
                SchemaProblem((*path, *problem.path), problem.message, problem.hint, problem.keyword, problem.value)
            )
    return problems
