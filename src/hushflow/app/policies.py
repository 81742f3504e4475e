"""The one way every job loads the policies it enforces or attributes with, and refuses them.

`hushflow run`, `hushflow compile` and `hushflow observe --enrich` all need a policy set they
can trust: any error Cilium would reject a policy for makes enforcement and attribution wrong,
so the job stops with the list (file:line, code, message) and a pointer to `hushflow lint`. The
one error that is not refused is HF020, `toFQDNs` in `egressDeny`: Cilium cannot run it, and
running it is exactly what hushflow is for.
"""

from __future__ import annotations

from collections.abc import Sequence

from hushflow.policy.diagnostics import Diagnostic, Severity
from hushflow.policy.loading import LoadedPolicies, load_policies
from hushflow.policy.model import BuildOptions
from hushflow.policy.source import printable

#: Errors hushflow's jobs accept: the FQDN deny Cilium cannot run and hushflow compiles.
ACCEPTED_ERRORS = frozenset({"HF020"})
_SHOWN = 8


class PolicyError(Exception):
    """Policies a job cannot run with, worded for the user (with where and what to do)."""


def diagnostics_listing(title: str, diagnostics: Sequence[Diagnostic]) -> str:
    """``title:`` and the first diagnostics, one ``  file:line field: [code] message`` each."""
    # The location is escaped already; messages quote keys and values from the files.
    shown = "\n".join(f"  {d.location}: [{d.code}] {printable(d.message)}" for d in diagnostics[:_SHOWN])
    more = f"\n  ... and {len(diagnostics) - _SHOWN} more" if len(diagnostics) > _SHOWN else ""
    return f"{title}:\n{shown}{more}"


def load_job_policies(paths: Sequence[str], options: BuildOptions) -> LoadedPolicies:
    """Load `paths` (files, directories, ``-``); raise `PolicyError` when they have errors other
    than `ACCEPTED_ERRORS`, or hold no Cilium policy at all."""
    loaded = load_policies(list(paths), options)
    errors = [d for d in loaded.diagnostics if d.level == Severity.ERROR and d.code not in ACCEPTED_ERRORS]
    if errors:
        raise PolicyError(diagnostics_listing(
            f"the policies have {len(errors)} error(s); run `hushflow lint` on them", errors
        ))
    if not loaded.policy_set.policies:
        raise PolicyError(
            f"no CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy in {', '.join(paths) or '(nothing given)'}"
        )
    return loaded

