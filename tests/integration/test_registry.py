"""The model registry against the real S3 server (S3Proxy, filesystem backend): no mocks.

Each test works under its own prefix in the models bucket, so the demo's ``registry/`` champion is never
touched and tests can run in any order; the prefix is deleted afterwards.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.registry import (
    ChampionMoved,
    ChecksumMismatch,
    IncompleteModelVersion,
    ModelNotFound,
    ModelRegistry,
    NoChampion,
    resolve_serving_version,
)
from recflow.registry.blessing import NotBlessed, bless
from recflow.registry.objects import MULTIPART_THRESHOLD, PART_SIZE
from recflow.registry.version_ids import parse_version_id

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 24, tzinfo=UTC)
LINEAGE = {"params": {"rank": 16}, "code_version": "0123abc", "run_id": "run-1"}


def artifact(folder: Path, tag: str, extra: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(f'{{"family": "als", "tag": "{tag}"}}')
    (folder / "factors").mkdir(exist_ok=True)
    # larger than boto3's 8 MiB multipart threshold would be slow here; 1 MiB of varied bytes suffices
    (folder / "factors" / "items.npy").write_bytes(hashlib.sha256(tag.encode()).digest() * 32768)
    if extra:
        (folder / "users.json").write_text('["u1", "u2"]')
    return folder


def register(reg: ModelRegistry, folder: Path, family: str = "als", **kw: Any) -> Any:
    return reg.register(
        folder,
        family=family,
        metrics=kw.pop("metrics", {"ndcg@10": 0.2, "precision@10": 0.05}),
        lineage=kw.pop("lineage", LINEAGE),
        created_at=kw.pop("created_at", DAY),
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def keys_under(reg: ModelRegistry, live_services: Settings, prefix: str) -> dict[str, Any]:
    client = s3_client(live_services.s3)
    listed = client.list_objects_v2(Bucket=reg.bucket, Prefix=f"{reg.prefix}/{prefix}")
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed.get("Contents", [])}


def test_round_trip_and_serving(registry: ModelRegistry, live_services: Settings, tmp_path: Path) -> None:
    als = artifact(tmp_path / "als", "als")
    mv = register(registry, als)
    ncf = register(registry, artifact(tmp_path / "ncf", "ncf", extra=False), family="ncf")
    family, interval, digest = parse_version_id(mv.version) or ("", "", "")
    assert (family, interval) == ("als", "20261124T0000") and mv.content_digest.startswith(digest)
    assert mv.uri == f"s3://{live_services.s3.models_bucket}/{registry.prefix}/versions/{mv.version}/"
    assert {v.version for v in registry.list_versions()} == {mv.version, ncf.version}
    assert [v.version for v in registry.list_versions(family="ncf")] == [ncf.version]
    got = registry.get(mv.version)
    assert got == mv and len(got.digest) == 64
    assert [(f.path, f.size) for f in got.files] == [
        ("factors/items.npy", 1048576),
        ("model.json", len((als / "model.json").read_bytes())),
        ("users.json", 12),
    ]

    with pytest.raises(NoChampion, match="no champion yet"):
        resolve_serving_version(registry)
    registry.chain.swap(mv.version, expected_champion=None, reason="first model", actor="it")
    serving = resolve_serving_version(registry)
    assert (serving.version, serving.digest) == (mv.version, mv.digest)
    assert serving.record is not None and serving.record.digest == mv.digest
    out = registry.fetch(serving.model, tmp_path / "dl")
    assert files_under(out) == files_under(als)
    with pytest.raises(NotBlessed, match="pinned version refused"):
        resolve_serving_version(registry, pinned=ncf.version, digest=ncf.digest)
    bless(registry, ncf, kind="model", passed=True, reasons=["test"], details={})
    pinned = resolve_serving_version(registry, pinned=ncf.version, digest=ncf.digest)
    assert pinned.version == ncf.version and pinned.record is None
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_serving_version(registry, pinned="als-20990101T0000-000000000000")
    with pytest.raises(ChecksumMismatch, match="expected"):
        resolve_serving_version(registry, pinned=ncf.version, digest="0" * 64)


def test_identical_reregister_is_a_noop_and_rerun_is_a_new_version(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a", "run-1")
    first = register(registry, folder)
    before = keys_under(registry, live_services, f"versions/{first.version}/")
    assert register(registry, folder) == first  # identical bytes: nothing rewritten
    assert keys_under(registry, live_services, f"versions/{first.version}/") == before

    registry.chain.swap(first.version, expected_champion=None, reason="first", actor="it")
    # a re-run of the same interval with different output: a new version, the champion untouched
    second = register(registry, artifact(tmp_path / "b", "run-2", extra=False), metrics={"ndcg@10": 0.25})
    assert second.version != first.version and second.version.startswith("als-20261124T0000-")
    assert keys_under(registry, live_services, f"versions/{first.version}/") == before
    serving = resolve_serving_version(registry)
    assert (serving.version, serving.digest) == (first.version, first.digest)
    assert [v.version for v in registry.list_versions()] == [first.version, second.version]


def test_version_objects_are_create_only(registry: ModelRegistry, live_services: Settings, tmp_path: Path) -> None:
    """A file that exists with other bytes under a version (tampering, or a digest collision) is refused."""
    folder = artifact(tmp_path / "a", "a")
    mv = register(registry, folder)
    # simulate an earlier attempt that left a different file under the same id, then lost its manifest
    client = s3_client(live_services.s3)
    client.delete_object(Bucket=registry.bucket, Key=f"{registry.prefix}/versions/{mv.version}/manifest.json")
    client.put_object(
        Bucket=registry.bucket, Key=f"{registry.prefix}/versions/{mv.version}/files/users.json", Body=b"x"
    )
    with pytest.raises(ChecksumMismatch, match="already exists with other bytes"):
        register(registry, folder)
    with pytest.raises(IncompleteModelVersion, match=registry.uri(mv.version)):
        registry.get(mv.version)


def test_fetch_detects_a_changed_file_and_manifest(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    mv = register(registry, artifact(tmp_path / "a", "a"))
    client = s3_client(live_services.s3)
    client.put_object(
        Bucket=registry.bucket, Key=f"{registry.prefix}/versions/{mv.version}/files/users.json", Body=b"[]"
    )
    with pytest.raises(ChecksumMismatch, match=r"users\.json: got sha256"):
        registry.fetch(mv, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-downloaded is left
    key = f"{registry.prefix}/versions/{mv.version}/manifest.json"
    body = client.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=registry.bucket, Key=key, Body=body.replace(b'"ndcg@10": 0.2', b'"ndcg@10": 0.9'))
    with pytest.raises(ChecksumMismatch, match="manifest changed"):
        registry.fetch(mv, tmp_path / "out")


def test_swap_back_fetches_a_fresh_folder_each_time(registry: ModelRegistry, tmp_path: Path) -> None:
    """A -> B -> A: every load is a new, verified folder, so A's bytes serve again."""
    a = register(registry, artifact(tmp_path / "a", "a"))
    b = register(registry, artifact(tmp_path / "b", "b"), family="ncf")
    registry.chain.swap(a.version, expected_champion=None, reason="a", actor="it")
    first = registry.fetch(resolve_serving_version(registry).model, tmp_path / "cache")
    registry.chain.swap(b.version, expected_champion=a.version, reason="b", actor="it")
    second = registry.fetch(resolve_serving_version(registry).model, tmp_path / "cache")
    registry.chain.swap(a.version, expected_champion=b.version, reason="back to a", actor="it", kind="rollback")
    serving = resolve_serving_version(registry)
    third = registry.fetch(serving.model, tmp_path / "cache")
    assert len({first, second, third}) == 3
    assert serving.digest == a.digest and files_under(third) == files_under(tmp_path / "a")


def test_promotion_is_bound_to_the_expected_champion(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, artifact(tmp_path / "a", "a"))
    b = register(registry, artifact(tmp_path / "b", "b"))
    c = register(registry, artifact(tmp_path / "c", "c"))
    registry.chain.swap(a.version, expected_champion=None, reason="a", actor="it", decision_id="d-a")
    registry.chain.swap(b.version, expected_champion=a.version, reason="b", actor="it")
    with pytest.raises(ChampionMoved, match=f"made against champion '{a.version}'"):
        registry.chain.swap(c.version, expected_champion=a.version, reason="decided against a", actor="it")
    assert [r.version for r in registry.history()] == [a.version, b.version]
    assert [r["version"] for r in registry.audit_log()] == [a.version, b.version]


def test_history_and_champion_at(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, artifact(tmp_path / "a", "a"))
    b = register(registry, artifact(tmp_path / "b", "b"))
    before = datetime.now(UTC) - timedelta(seconds=1)
    ra = registry.chain.swap(a.version, expected_champion=None, reason="a", actor="it", interval_end=DAY)
    rb = registry.chain.swap(b.version, expected_champion=a.version, reason="b", actor="it", interval_end=DAY)
    history = registry.history()
    assert [(r.version, r.previous, r.digest) for r in history] == [
        (a.version, None, a.digest),
        (b.version, a.version, b.digest),
    ]
    assert ra.promoted_at < rb.promoted_at and ra.interval_end == DAY
    assert registry.champion_at(before) is None
    mid = ra.promoted_at + (rb.promoted_at - ra.promoted_at) / 2
    assert resolve_serving_version(registry, at=mid).version == a.version
    assert resolve_serving_version(registry, at=rb.promoted_at).version == b.version
    with pytest.raises(NoChampion, match="no champion at"):
        resolve_serving_version(registry, at=before)


def test_champion_of_a_data_interval_from_the_chain(registry: ModelRegistry, tmp_path: Path) -> None:
    """Batch scoring's question: promoted for day 1 and day 2, then rolled back by hand (no interval)."""
    a = register(registry, artifact(tmp_path / "a", "a"), created_at=DAY)
    b = register(registry, artifact(tmp_path / "b", "b"), created_at=DAY + timedelta(days=1))
    registry.chain.swap(a.version, expected_champion=None, reason="day 1", actor="it", interval_end=DAY)
    registry.chain.swap(b.version, expected_champion=a.version, reason="day 2", actor="it",
                           interval_end=DAY + timedelta(days=1))  # fmt: skip

    def day(n: int) -> datetime:  # the batch_scoring run of day n ends at 04:00 that day
        return DAY + timedelta(days=n - 1, hours=4)

    assert resolve_serving_version(registry, interval_end=day(1)).version == a.version
    assert resolve_serving_version(registry, interval_end=day(2)).version == b.version
    with pytest.raises(NoChampion, match=r"no champion for the data interval ending .* serves intervals ending at"):
        resolve_serving_version(registry, interval_end=day(0))
    registry.chain.swap(a.version, expected_champion=b.version, reason="b is bad", actor="it", kind="rollback")
    assert resolve_serving_version(registry, interval_end=day(2)).version == a.version
    assert resolve_serving_version(registry, interval_end=day(1)).record.interval_end == DAY  # type: ignore[union-attr]


def test_retry_of_a_finished_promotion_returns_it(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, artifact(tmp_path / "a", "a"))
    first = registry.chain.swap(a.version, expected_champion=None, reason="a", actor="it", decision_id="run-1/a")
    again = registry.chain.swap(a.version, expected_champion=None, reason="a", actor="it", decision_id="run-1/a")
    assert again == first and len(registry.history()) == 1


def test_stale_pointer_is_resolved_along_the_chain(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    """A promoter that died after linking (or a delayed writer) leaves an old champion.json behind:
    the registry still reports the newest champion, and the next promotion builds on it."""
    a, b, c = (register(registry, artifact(tmp_path / t, t)) for t in "abc")
    registry.chain.swap(a.version, expected_champion=None, reason="first", actor="it")
    client = s3_client(live_services.s3)
    key = f"{registry.prefix}/champion.json"
    stale = client.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.chain.swap(b.version, expected_champion=a.version, reason="second", actor="it")
    client.put_object(Bucket=registry.bucket, Key=key, Body=stale)  # the pointer regresses

    assert resolve_serving_version(registry).version == b.version
    third = registry.chain.swap(c.version, expected_champion=b.version, reason="third", actor="it")
    assert third.previous == b.version
    assert [r.version for r in registry.history()] == [a.version, b.version, c.version]


RACER = """
import json, sys, time
from recflow.config.settings import load_settings
from recflow.registry import ChampionMoved, ModelRegistry
prefix, version, expected, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
reg = ModelRegistry.from_settings(load_settings(), prefix=prefix)
time.sleep(max(0.0, start - time.time()))
try:
    rec = reg.chain.swap(version, expected_champion=expected, reason="race", actor=f"pid:{version}")
    print(json.dumps({"won": rec.version, "previous": rec.previous}))
except ChampionMoved as exc:
    print(json.dumps({"lost": version, "error": str(exc)}))
"""


def test_four_processes_race_exactly_one_wins(registry: ModelRegistry, tmp_path: Path) -> None:
    """Four OS processes promote from the same expected champion at the same instant."""
    import json
    import subprocess
    import sys
    import time

    base = register(registry, artifact(tmp_path / "base", "base"))
    registry.chain.swap(base.version, expected_champion=None, reason="base", actor="it")
    racers = [register(registry, artifact(tmp_path / f"r{i}", f"r{i}")).version for i in range(4)]
    start = time.time() + 4.0  # after every interpreter has imported boto3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, registry.prefix, v, base.version, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in racers
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    winners = [r["won"] for r in results if "won" in r]
    losers = [r for r in results if "lost" in r]
    assert len(winners) == 1 and len(losers) == 3, results
    assert all("champion moved" in r["error"] for r in losers), losers
    assert [r.version for r in registry.history()] == [base.version, winners[0]]  # one new link
    assert resolve_serving_version(registry).version == winners[0]


def test_a_file_above_the_part_threshold_goes_in_parts_and_stays_create_only(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    """A 10^6-item model's factors (256 MB) are more than S3Proxy takes in one signed PUT (32 MiB): such a
    file is uploaded in parts, whose completion is as create-only as a PUT, and fetched back intact."""
    folder = artifact(tmp_path / "big", "big")
    size = MULTIPART_THRESHOLD + PART_SIZE // 2 + 7  # two parts, the last a short one
    big = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (folder / "factors" / "items.npy").write_bytes(big)
    mv = register(registry, folder)
    assert dict((f.path, f.size) for f in mv.files)["factors/items.npy"] == size
    out = registry.fetch(mv, tmp_path / "dl")
    assert (out / "factors" / "items.npy").read_bytes() == big
    key = f"{registry.prefix}/versions/{mv.version}/files/factors/items.npy"
    other = tmp_path / "other.bin"
    other.write_bytes(big[::-1])
    assert registry.store.create(key, lambda: other.open("rb")) is False  # the completion was refused
    client = s3_client(live_services.s3)
    stored = client.get_object(Bucket=registry.bucket, Key=key)
    assert stored["ETag"].endswith('-2"')  # S3's ETag of a two-part upload
    assert hashlib.sha256(stored["Body"].read()).digest() == hashlib.sha256(big).digest()
    uploads = client.list_multipart_uploads(Bucket=registry.bucket, Prefix=registry.prefix).get("Uploads", [])
    assert uploads == []  # the refused upload was aborted, not left behind
