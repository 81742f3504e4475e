"""The live publisher: journal before publish, one group rewritten per new IP, re-sharding."""

from __future__ import annotations

import os
from pathlib import Path

from hushflow.enforce.compile import group_name
from hushflow.enforce.denies import fqdn_denies
from hushflow.enforce.learner import Change
from hushflow.enforce.publish import GroupPublisher
from hushflow.enforce.state import DenyState, Journal
from hushflow.policy.loading import load_policies

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"


def setup(tmp_path, cap=4):
    (deny,) = fqdn_denies(load_policies([str(EXAMPLE)]).policy_set)
    state = DenyState()
    journal = Journal(str(tmp_path / "state.json"))
    publisher = GroupPublisher([deny], state, out_dir=str(tmp_path / "out"), journal=journal, group_cap=cap,
                               monotonic=iter(range(5, 1000)).__next__)
    return deny, state, publisher


def learn(state, deny, ip, at=1.0):
    state.add(deny.id, ip, "x.telemetry.example.com", 60, at, "observed")
    return Change(deny.id, ip, True, "x.telemetry.example.com", "observed", 60, at)


def files(tmp_path):
    root = tmp_path / "out" / "ciliumcidrgroups"
    return {p.name: p.stat().st_mtime_ns for p in root.iterdir()} if root.exists() else {}


def test_one_new_ip_rewrites_one_group_and_is_journaled_first(tmp_path):
    deny, state, publisher = setup(tmp_path, cap=4)
    publisher.publish_all()
    changes = [learn(state, deny, f"192.0.2.{i}") for i in range(1, 12)]
    publisher.publish_changes(changes)
    before = files(tmp_path)
    assert len(before) >= 4 and publisher.stats.deletes >= 1  # re-sharded: the one unsharded group went away
    assert all(size <= 4 for _name, _policy, size in publisher.group_sizes())
    writes = publisher.stats.writes
    publisher.publish_changes([learn(state, deny, "192.0.2.200")])
    assert publisher.stats.writes == writes + 1
    journal = (tmp_path / "state.json.journal").read_text()
    assert journal.count('"ip":') == 12 and "192.0.2.200" in journal
    # The journal alone brings every IP back.
    assert set(DenyState.load(str(tmp_path / "state.json")).ips(deny.id)) == set(state.ips(deny.id))


def test_leak_window_measured_from_read_time(tmp_path):
    deny, state, publisher = setup(tmp_path)
    publisher.publish_all()
    window = publisher.publish_changes([learn(state, deny, "192.0.2.1")], read_at=0)
    assert window == 5  # the fake monotonic clock reads 5 when the group is written
    assert publisher.stats.leak_windows == [window]


def test_expiry_republishes_and_deletes_empty_shards(tmp_path):
    deny, state, publisher = setup(tmp_path, cap=2)
    publisher.publish_all()
    publisher.publish_changes([learn(state, deny, f"192.0.2.{i}") for i in range(1, 8)])
    assert len(files(tmp_path)) > 1
    state.expire(10_000)
    publisher.publish_all()
    assert list(files(tmp_path)) == [f"{group_name(deny.id, 0, 0)}.yaml"]
    assert os.path.exists(tmp_path / "out" / "ciliumcidrgroups" / f"{group_name(deny.id, 0, 0)}.yaml")
