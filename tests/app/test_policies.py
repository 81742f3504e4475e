"""The one load-and-refuse every job uses: what is refused, what is accepted, and the wording."""

from __future__ import annotations

import pytest

from hushflow.app.policies import PolicyError, load_job_policies
from hushflow.policy.model import BuildOptions

FQDN_DENY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: block, namespace: ns}
spec:
  endpointSelector: {}
  egressDeny:
  - toFQDNs: [{matchPattern: "*.telemetry.example.com"}]
"""


def test_hushflows_own_fqdn_deny_is_accepted(tmp_path):
    (tmp_path / "p.yaml").write_text(FQDN_DENY)
    loaded = load_job_policies([str(tmp_path)], BuildOptions())
    assert [d.code for d in loaded.diagnostics if d.code == "HF020"] == ["HF020"]
    assert len(loaded.policy_set.policies) == 1


def test_other_errors_are_refused_with_file_line_and_code(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(FQDN_DENY.replace("egressDeny:", "egresDeny:"))
    with pytest.raises(PolicyError) as caught:
        load_job_policies([str(path)], BuildOptions())
    message = str(caught.value)
    assert message.startswith("the policies have 2 error(s); run `hushflow lint` on them:\n")
    assert f"  {path}:6:3 spec.egresDeny: [HF010] unknown field" in message


def test_more_than_eight_errors_are_summarised(tmp_path):
    for index in range(10):
        (tmp_path / f"p{index}.yaml").write_text(FQDN_DENY.replace("egressDeny:", "egresDeny:"))
    with pytest.raises(PolicyError, match=r"\n  \.\.\. and 12 more$"):
        load_job_policies([str(tmp_path)], BuildOptions())


def test_a_path_with_no_cilium_policy_is_refused(tmp_path):
    (tmp_path / "notes.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(PolicyError, match="no CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy in"):
        load_job_policies([str(tmp_path)], BuildOptions())


def test_a_refused_policy_set_never_prints_terminal_escapes_from_the_files(tmp_path):
    from hushflow.app.policies import PolicyError, load_job_policies
    from hushflow.policy.model import BuildOptions

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x, namespace: n}\n"
        'spec:\n  endpointSelector: {}\n  "\\e[2J\\e]8;;http://evil\\a": 1\n  egress: [{}]\n'
    )
    try:
        load_job_policies([str(policy)], BuildOptions())
    except PolicyError as exc:
        text = str(exc)
    else:
        raise AssertionError("the unknown field must be refused")
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text

