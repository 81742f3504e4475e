"""`hushflow run --staged`: a proposed policy set decided beside the enforced one on every policy
verdict, counted in hushflow_staged_verdicts_total, and never enforced (no CIDR group, the
enriched flows unchanged); a staged file with an error stops the start with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from hushflow.app.daemon import Daemon, RunOptions, StagedPolicyError
from hushflow.cli.run import run
from hushflow.engine.replay import Change
from hushflow.sinks.metric_names import STAGED_CHANGES
from hushflow.sinks.metrics import OTHER

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
POLICIES = EXAMPLE / "policies"
FLOWS = EXAMPLE / "flows.jsonl"
DENY = POLICIES / "app-external-block-policy.yaml"
WORKLOAD = {"namespace": "my-namespace", "workload": "my-app"}


def staged_dir(tmp_path: Path, deny_text: str | None) -> Path:
    """The example's policies with the deny file replaced by `deny_text` (None: removed)."""
    staged = tmp_path / "staged"
    shutil.copytree(POLICIES, staged)
    if deny_text is None:
        (staged / DENY.name).unlink()
    else:
        (staged / DENY.name).write_text(deny_text)
    return staged


def replay(tmp_path: Path, staged: Path | None, **extra) -> Daemon:
    options = RunOptions(policies=(str(POLICIES),), staged=(str(staged),) if staged else (),
                         input_files=(str(FLOWS),), out_dir=str(tmp_path / "groups"), resolve=False,
                         clock="flows", **extra)
    daemon = Daemon(options)
    assert daemon.run() == 0
    return daemon


def staged_counts(daemon: Daemon) -> dict[tuple[str, str, str], float]:
    counts = {}
    for metric in daemon.registry.collect():
        for sample in metric.samples:
            if sample.name == "hushflow_staged_verdicts_total":
                labels = sample.labels
                counts[(labels["change"], labels["namespace"], labels["workload"])] = sample.value
    return counts


ALLOW_INSTEAD = DENY.read_text().replace("egressDeny:", "egress:")
UNTAGGED = DENY.read_text().replace("  log:\n    value: app-explicit-traffic-blocked\n", "")


@pytest.mark.parametrize(
    ("deny_text", "expected"),
    [
        # The deny turned into an allow of the same names and ports: the 9 planned drops would pass.
        pytest.param(ALLOW_INSTEAD, {"newly-allowed": 9, "unchanged": 8}, id="deny-becomes-allow"),
        # The deny removed: the allows still put my-app in default-deny, so the 9 drops stay drops,
        # but nothing tags them any more: after applying, they would page as unexpected.
        pytest.param(None, {"tag-lost": 9, "unchanged": 8}, id="deny-removed"),
        pytest.param(UNTAGGED, {"tag-lost": 9, "unchanged": 8}, id="log-tag-removed"),
        pytest.param(DENY.read_text(), {"unchanged": 17}, id="same-as-enforced"),
    ],
)
def test_each_verdict_is_counted_by_its_change(tmp_path: Path, deny_text: str | None,
                                              expected: dict[str, int]) -> None:
    daemon = replay(tmp_path, staged_dir(tmp_path, deny_text))
    assert staged_counts(daemon) == {(change, *WORKLOAD.values()): count for change, count in expected.items()}
    assert dict(daemon.summary.staged) == expected


def test_the_staged_set_changes_no_enforcement_and_no_flow(tmp_path: Path) -> None:
    plain = replay(tmp_path / "plain", None, export=str(tmp_path / "plain.jsonl"))
    staged = replay(tmp_path / "staged", staged_dir(tmp_path, ALLOW_INSTEAD), export=str(tmp_path / "staged.jsonl"))
    # The enriched flows (tags, *_denied_by) are those of the enforced set alone.
    exported = (tmp_path / "staged.jsonl").read_text()
    assert exported == (tmp_path / "plain.jsonl").read_text()
    tagged = [json.loads(line)["flow"] for line in exported.splitlines()]
    assert sum(flow.get("policy_log") == ["app-explicit-traffic-blocked"] for flow in tagged) == 9
    # The same CIDR groups: the staged set's allow adds nothing, and it has no deny of its own.
    groups = sorted(p.relative_to(tmp_path / "plain" / "groups") for p in (tmp_path / "plain" / "groups").rglob("*.yaml"))
    assert groups and groups == sorted(
        p.relative_to(tmp_path / "staged" / "groups") for p in (tmp_path / "staged" / "groups").rglob("*.yaml"))
    assert staged.summary.drops_by_tag == plain.summary.drops_by_tag
    assert staged.summary.events_sent == plain.summary.events_sent


def test_a_staged_deny_writes_no_cidr_group(tmp_path: Path) -> None:
    """Only the enforced denies are filled: a deny that exists only in the staged set is decided
    (newly-dropped), never written."""
    enforced = tmp_path / "enforced"
    shutil.copytree(POLICIES, enforced)
    (enforced / DENY.name).unlink()
    options = RunOptions(policies=(str(enforced),), staged=(str(POLICIES),), input_files=(str(FLOWS),),
                         out_dir=str(tmp_path / "groups"), resolve=False, clock="flows")
    daemon = Daemon(options)
    assert daemon.run() == 0
    assert not list((tmp_path / "groups").rglob("*.yaml"))
    # enforced: default-deny untagged (unexpected); staged: the tagged deny (planned)
    assert daemon.summary.staged["tag-changed"] == 9


def test_metrics_are_exported_and_bounded(tmp_path: Path) -> None:
    daemon = replay(tmp_path, staged_dir(tmp_path, ALLOW_INSTEAD), max_series=1)
    text = generate_latest(daemon.registry).decode()
    assert "# TYPE hushflow_staged_verdicts_total counter" in text
    # One series allowed: the first change keeps its labels, the next one folds into _other.
    counts = staged_counts(daemon)
    assert sum(counts.values()) == 17
    assert any(key[1:] == (OTHER, OTHER) for key in counts)


def test_workload_labels_follow_metric_labels(tmp_path: Path) -> None:
    daemon = replay(tmp_path, staged_dir(tmp_path, ALLOW_INSTEAD), metric_context=frozenset({"namespace"}))
    assert staged_counts(daemon) == {("newly-allowed", "my-namespace", ""): 9, ("unchanged", "my-namespace", ""): 8}


BAD_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bad
  namespace: my-namespace
spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports:
      - port: "99999"
"""


def test_a_bad_staged_file_stops_the_start(tmp_path: Path) -> None:
    staged = staged_dir(tmp_path, BAD_POLICY)
    with pytest.raises(StagedPolicyError, match=r"(?s)--staged: .*app-external-block-policy.yaml:11:9 "):
        Daemon(RunOptions(policies=(str(POLICIES),), staged=(str(staged),), input_files=(str(FLOWS),),
                          resolve=False))


def test_cli_staged_counts_and_bad_file_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--policies", str(POLICIES), "--input-file", str(FLOWS), "--no-resolve", "--clock", "flows",
            "--metrics-address", "127.0.0.1:0"]
    good = runner.invoke(run, [*base, "--staged", str(staged_dir(tmp_path / "good", ALLOW_INSTEAD))])
    assert good.exit_code == 0, good.output
    assert "staged policies: 9 newly-allowed, 8 unchanged" in good.output
    bad = runner.invoke(run, [*base, "--staged", str(staged_dir(tmp_path / "bad", BAD_POLICY))])
    assert bad.exit_code == 2
    assert isinstance(bad.exception, SystemExit)
    assert "error: --staged: the policies have 1 error(s)" in bad.output
    assert "app-external-block-policy.yaml:11:" in bad.output and "Traceback" not in bad.output


def test_the_metric_contract_names_every_change_kind_in_order() -> None:
    # sinks may not import the engine: the contract keeps its own copy of the values
    assert tuple(change.value for change in Change) == STAGED_CHANGES


@pytest.mark.parametrize("deny_text", [ALLOW_INSTEAD, UNTAGGED, None], ids=["deny-as-allow", "untagged", "removed"])
def test_the_attributions_decision_gives_the_same_change_as_deciding_again(tmp_path: Path, deny_text) -> None:
    """run --staged reuses the decision the attribution made with the enforced set (one decision
    less per verdict): for every verdict it is the change a full replay of the connection gives."""
    options = RunOptions(policies=(str(POLICIES),), staged=(str(staged_dir(tmp_path, deny_text)),),
                         input_files=(str(FLOWS),), out_dir=str(tmp_path / "groups"), resolve=False, clock="flows")
    daemon = Daemon(options)
    count, compared = daemon._count, []

    def count_and_compare(flow, attribution) -> None:  # type: ignore[no-untyped-def]
        count(flow, attribution)
        if attribution.connection is not None and daemon.staged is not None:
            compared.append((daemon.staged.change_given(attribution.connection, attribution.decision),
                             daemon.staged.replay_connection(attribution.connection).change))

    daemon._count = count_and_compare  # type: ignore[method-assign]
    assert daemon.run() == 0
    assert len(compared) == 17 and all(given == replayed for given, replayed in compared)
    assert any(given != Change.UNCHANGED for given, _ in compared)
