"""Kubernetes' rules for object names and namespaces (the API server refuses anything else).

- a namespace is a DNS-1123 *label*: at most 63 characters, lowercase letters, digits and `-`,
  starting and ending with a letter or digit;
- the name of a custom resource (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy,
  CiliumCIDRGroup) is a DNS-1123 *subdomain*: at most 253 characters, labels as above joined by
  `.`.

hushflow checks them in lint (HF015) and refuses them in compile, because it also uses them in
file names under `--out`: a name such as `../../etc/cron.d/x` is no Kubernetes name and never
becomes a path.
"""

from __future__ import annotations

import re

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")


def label_problem(text: object) -> str | None:
    """Why `text` is not a DNS-1123 label (a namespace), or None when it is one."""
    return _problem(text, LABEL_MAX, _LABEL,
                    "must consist of lowercase letters, digits and '-', and start and end with a letter or digit")


def subdomain_problem(text: object) -> str | None:
    """Why `text` is not a DNS-1123 subdomain (an object name), or None when it is one."""
    return _problem(text, SUBDOMAIN_MAX, _SUBDOMAIN,
                    "must consist of lowercase letters, digits, '-' and '.', each dot-separated part starting and "
                    "ending with a letter or digit")


def _problem(text: object, limit: int, pattern: re.Pattern[str], form: str) -> str | None:
    if not isinstance(text, str):
        return f"must be a string, not {type(text).__name__}"
    if not text:
        return "must not be empty"
    if len(text) > limit:
        return f"must be at most {limit} characters (has {len(text)})"
    return None if pattern.fullmatch(text) else form
