#!/usr/bin/env python3
"""Turn a Cilium CRD (or a catalog's JSON Schema of one) into the JSON Schema hushflow bundles.

Usage:
    scripts/cilium_crd_schema.py INPUT --served v2 -o src/hushflow/policy/schemas/v1.19-ciliumnetworkpolicy_v2.json

INPUT is either Cilium's own CRD manifest (`pkg/k8s/apis/cilium.io/client/crds/v2/*.yaml`,
an apiextensions.k8s.io/v1 CustomResourceDefinition) or a JSON Schema already taken from one
(the datreeio/CRDs-catalog and deedee-ops/schemas catalogs hold such files). From a CRD, the
`openAPIV3Schema` of the version named by --served is taken.

The conversion is the one the catalogs use, so that an unknown field fails as it does under
`kubectl apply --validate=strict`: every object schema (`type: object`, not the root) that lists `properties`, sets no
`additionalProperties` of its own and is not `x-kubernetes-preserve-unknown-fields` gets
`additionalProperties: false`. Nothing else changes; a catalog file that was converted this
way comes out byte for byte as it went in, which is how the bundled files are checked
(see schemas/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml


def close_objects(node: Any, root: bool = True) -> Any:
    """The schema with `additionalProperties: false` on every closed object (see module doc).
    The object itself (the root) stays open, as the catalogs leave it."""
    if isinstance(node, list):
        return [close_objects(item, False) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            # A map of names to schemas: the names are data, the values schemas.
            out[key] = {name: close_objects(sub, False) for name, sub in value.items()}
        else:
            out[key] = close_objects(value, False)
    if (
        not root
        and out.get("type") == "object"
        and isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_of(document: Any, served: str) -> dict[str, Any]:
    """The OpenAPI schema of `served` in a CRD, or the document itself when it is a schema."""
    if not isinstance(document, dict):
        raise ValueError("the input is not a mapping")
    if document.get("kind") == "CustomResourceDefinition":
        for version in document.get("spec", {}).get("versions", []):
            if version.get("name") == served:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if not isinstance(schema, dict):
                    raise ValueError(f"version {served} has no openAPIV3Schema")
                return schema
        raise ValueError(f"the CRD serves no version {served}")
    return document


def convert(text: str, served: str) -> str:
    document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    return json.dumps(close_objects(schema_of(document, served)), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a CRD YAML or a JSON Schema file")
    parser.add_argument("--served", default="v2", help="the CRD version to take (default v2)")
    parser.add_argument("-o", "--output", help="where to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        with open(args.input, encoding="utf-8") as handle:
            result = convert(handle.read(), args.served)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"cilium_crd_schema: {args.input}: {error}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(result)
    else:
        sys.stdout.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
