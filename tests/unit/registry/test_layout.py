"""The registry's key scheme (``recflow.registry.layout``), spelled out: every writer relies on these names."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from recflow.registry.layout import RegistryLayout
from recflow.registry.records import PromotionRecord

WHEN = datetime(2026, 11, 24, 10, 30, 0, 123456, tzinfo=UTC)
RECORD = PromotionRecord(
    version="als-20261124T0000-3f9a2c1b7e04", family="als", uri="s3://m/registry/versions/v/", digest="d" * 64,
    promoted_at=WHEN, interval_end=None, reason="r", actor="t", kind="promote", previous=None,
    previous_digest=None, audit_key="registry/audit/20261124T103000.123456Z-als-20261124T0000-3f9a2c1b7e04.json",
    previous_audit_key=None, decision_id="x",
)  # fmt: skip


def test_keys_under_a_prefix_and_at_the_bucket_root() -> None:
    layout, root = RegistryLayout("registry"), RegistryLayout("")
    assert layout.version_key("v1", "files", "model.json") == "registry/versions/v1/files/model.json"
    assert root.version_key("v1", "manifest.json") == "versions/v1/manifest.json"
    assert (layout.champion_key, root.champion_key) == ("registry/champion.json", "champion.json")


def test_audit_records_sort_by_time_and_links_are_named_after_them() -> None:
    layout = RegistryLayout("registry")
    assert layout.audit_key(WHEN, RECORD.version) == RECORD.audit_key
    assert layout.link_key(None) == "registry/chain/after-genesis.json"
    assert layout.link_key(RECORD) == (
        "registry/chain/after-20261124T103000.123456Z-als-20261124T0000-3f9a2c1b7e04.json"
    )
    later = dataclasses.replace(RECORD, audit_key=layout.audit_key(WHEN.replace(second=1), RECORD.version))
    assert sorted([later.audit_key, RECORD.audit_key]) == [RECORD.audit_key, later.audit_key]


@pytest.mark.parametrize("version", ["", "../x", "a/b", "-lead"])
def test_a_version_key_refuses_ids_that_are_not_one_folder_name(version: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        RegistryLayout("registry").version_key(version, "manifest.json")
