"""The gate in front of every promotion, on the real S3 server and real processes: blessings, the
fresh-process canary, rollback, tampered bytes, a fair comparison on one hold-out, and the S3 server
stopped in the middle of a promotion (our own S3Proxy, really stopped and restarted).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.data.window import TrainingWindow
from recflow.evaluation.canary import CANARY_FILE
from recflow.evaluation.python_holdout import record_canary
from recflow.models.popularity import PopularityRecommender
from recflow.promotion.compare import compare_and_bless, score_and_decide
from recflow.promotion.gate import promote_blessed, rollback
from recflow.promotion.policy import load_policy
from recflow.registry import (
    ChampionMoved,
    ChecksumMismatch,
    ModelRegistry,
    PromotionRecord,
    RegistryUnavailable,
    RetryPolicy,
    resolve_serving_version,
)
from recflow.registry.blessing import NotBlessed, bless, blessings

pytestmark = pytest.mark.integration
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def popularity(folder: Path, pairs: list[tuple[str, str]], *, canary: dict[str, Any] | None = None) -> Path:
    model = PopularityRecommender.fit(pd.DataFrame(pairs, columns=["user_id", "item_id"]))
    model.save(folder)
    (folder / CANARY_FILE).write_text(json.dumps(canary or record_canary(model)))
    return folder


PAIRS_A = [(f"u{u}", f"i{(u * 7 + j) % 30}") for u in range(40) for j in range(u % 5 + 1)]
PAIRS_B = [(f"u{u}", f"i{(u * 3 + j) % 30}") for u in range(40) for j in range(u % 4 + 2)]


def register(reg: ModelRegistry, folder: Path, **kw: Any) -> Any:
    return reg.register(
        folder,
        family=kw.pop("family", "popularity"),
        metrics=kw.pop("metrics", {"ndcg@10": 0.2}),
        lineage=kw.pop("lineage", {"run_id": folder.name}),
        created_at=kw.pop("created_at", DAY),
    )


def blessed(reg: ModelRegistry, mv: Any) -> Any:
    bless(reg, mv, kind="model", passed=True, reasons=["winner: test"], details={})
    return mv


def test_promotion_needs_a_passing_blessing_for_the_digest(registry: ModelRegistry, tmp_path: Path) -> None:
    mv = register(registry, popularity(tmp_path / "a", PAIRS_A))
    with pytest.raises(NotBlessed, match="has no model blessing"):
        promote_blessed(registry, mv.version, expected_champion=None, reason="r", actor="it")
    bless(registry, mv, kind="model", passed=False, reasons=["FAIL baseline: worse than popularity"], details={})
    with pytest.raises(NotBlessed, match="was not blessed: FAIL baseline"):
        promote_blessed(registry, mv.version, expected_champion=None, reason="r", actor="it")
    assert registry.champion_record() is None
    blessed(registry, mv)
    record = promote_blessed(registry, mv.version, expected_champion=None, reason="blessed", actor="it")
    assert record.digest == mv.digest
    canary = blessings(registry, mv.version, "canary")
    assert [b.passed for b in canary] == [True] and canary[0].details["users"] == 20
    assert canary[0].reasons[0].startswith("20 canary users: worst overlap 1.00")


def test_blessing_for_another_digest_and_missing_metrics_are_refused(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    mv = blessed(registry, register(registry, popularity(tmp_path / "a", PAIRS_A)))
    key = f"{registry.prefix}/versions/{mv.version}/manifest.json"
    client = s3_client(live_services.s3)
    body = client.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=registry.bucket, Key=key, Body=body.replace(b'"ndcg@10": 0.2', b'"ndcg@10": 0.9'))
    # the rewritten metrics no longer hash to the version id: refused before the blessing is even read
    with pytest.raises(ChecksumMismatch, match="rewritten after registration"):
        promote_blessed(registry, mv.version, expected_champion=None, reason="r", actor="it")
    bare = blessed(registry, register(registry, popularity(tmp_path / "b", PAIRS_B), metrics={}))
    with pytest.raises(NotBlessed, match="manifest has no metrics"):
        promote_blessed(registry, bare.version, expected_champion=None, reason="r", actor="it")
    assert registry.champion_record() is None


@pytest.mark.parametrize("fault", ["flipped-byte", "missing-file"])
def test_a_corrupted_or_missing_file_fails_the_canary(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path, fault: str
) -> None:
    mv = blessed(registry, register(registry, popularity(tmp_path / "a", PAIRS_A)))
    client = s3_client(live_services.s3)
    key = f"{registry.prefix}/versions/{mv.version}/files/{CANARY_FILE}"
    if fault == "missing-file":
        client.delete_object(Bucket=registry.bucket, Key=key)
        expected = "NoSuchKey"
    else:
        body = bytearray(client.get_object(Bucket=registry.bucket, Key=key)["Body"].read())
        body[10] ^= 0x01
        client.put_object(Bucket=registry.bucket, Key=key, Body=bytes(body))
        expected = "ChecksumMismatch"
    with pytest.raises(NotBlessed, match=f"canary failed, promotion refused: canary could not load .*{expected}"):
        promote_blessed(registry, mv.version, expected_champion=None, reason="r", actor="it")
    assert registry.champion_record() is None
    assert [b.passed for b in blessings(registry, mv.version, "canary")] == [False]


def test_a_model_that_does_not_reproduce_its_top_k_fails_the_canary(registry: ModelRegistry, tmp_path: Path) -> None:
    other = PopularityRecommender.fit(pd.DataFrame(PAIRS_B, columns=["user_id", "item_id"]))
    wrong = record_canary(other)  # the answers of another model, recorded as if they were this one's
    mv = blessed(registry, register(registry, popularity(tmp_path / "a", PAIRS_A, canary=wrong)))
    with pytest.raises(NotBlessed, match=r"canary failed.*worst overlap 0\.\d+ \(needs >= 0.9\)"):
        promote_blessed(registry, mv.version, expected_champion=None, reason="r", actor="it")


def test_rollback_is_a_canaried_promotion_of_an_earlier_champion(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    a = blessed(registry, register(registry, popularity(tmp_path / "a", PAIRS_A)))
    b = blessed(registry, register(registry, popularity(tmp_path / "b", PAIRS_B)))
    c = register(registry, popularity(tmp_path / "c", PAIRS_A[:50]))
    promote_blessed(registry, a.version, expected_champion=None, reason="a", actor="it")
    promote_blessed(registry, b.version, expected_champion=a.version, reason="b", actor="it")
    with pytest.raises(NotBlessed, match="never served as champion"):
        rollback(registry, to=c.version, reason="r", actor="it")
    # a rollback target whose bytes no longer pass the canary is refused; the champion stays
    client = s3_client(live_services.s3)
    key = f"{registry.prefix}/versions/{a.version}/files/{CANARY_FILE}"
    good = client.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=registry.bucket, Key=key, Body=good[:-2] + b"  ")
    with pytest.raises(NotBlessed, match="canary failed"):
        rollback(registry, reason="b is broken", actor="it")
    assert resolve_serving_version(registry).version == b.version
    client.put_object(Bucket=registry.bucket, Key=key, Body=good)
    record = rollback(registry, reason="b is broken", actor="it")
    assert (record.kind, record.version, record.previous, record.reason) == (
        "rollback",
        a.version,
        b.version,
        "b is broken",
    )
    serving = resolve_serving_version(registry)
    assert (serving.version, serving.digest) == (a.version, a.digest)  # A -> B -> A serves A's digest
    assert [r.kind for r in registry.history()] == ["promote", "promote", "rollback"]
    with pytest.raises(ChampionMoved):
        promote_blessed(registry, b.version, expected_champion=b.version, reason="stale", actor="it")


# ------------------------------------------------------------------------- a fair comparison
TRAIN = [(f"u{u}", f"i{(u + j) % 12}") for u in range(30) for j in range(3)]
HELD_OUT = [(f"u{u}", f"i{(u + 5) % 12}") for u in range(30)]
WINDOW = TrainingWindow(date(2026, 11, 20), date(2026, 11, 22), date(2026, 11, 23))


def write_lake(root: Path) -> Path:
    """The lake of ``WINDOW``: two training days of ``TRAIN``, then one hold-out day of ``HELD_OUT``."""
    for day, pairs in {"2026-11-20": TRAIN, "2026-11-21": TRAIN, "2026-11-22": HELD_OUT}.items():
        part = root / "interactions" / f"event_date={day}"
        part.mkdir(parents=True)
        pd.DataFrame(pairs, columns=["user_id", "item_id"]).to_parquet(part / "part-0.parquet")
    return root


def test_champion_is_rescored_on_the_candidates_holdout_and_older_windows_are_not_promoted(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    lake = write_lake(tmp_path / "lake")
    # the champion claims a stored ndcg of 0.99 from its own window; that number must not be used
    champ = register(registry, popularity(tmp_path / "champ", TRAIN[:40]), metrics={"ndcg@10": 0.99})
    bless(registry, champ, kind="model", passed=True, reasons=["test"], details={})
    promote_blessed(registry, champ.version, expected_champion=None, reason="old", actor="it")
    cand = register(registry, popularity(tmp_path / "cand", TRAIN), created_at=datetime(2026, 11, 23, tzinfo=UTC))
    judgement = score_and_decide(
        registry, {"popularity": cand}, lake_root=lake, window=WINDOW, policy=load_policy(), cutoffs=[10],
        work_dir=tmp_path / "work",
    )  # fmt: skip
    assert judgement.metrics["champion"]["ndcg@10"] < 0.99  # re-scored, not read from the manifest
    assert judgement.holdout["pairs"] == 30
    older = register(registry, popularity(tmp_path / "older", TRAIN[:60]), created_at=datetime(2026, 11, 1, tzinfo=UTC))
    j2 = score_and_decide(
        registry, {"als": older}, lake_root=lake, window=WINDOW, policy=load_policy(), cutoffs=[10],
        work_dir=tmp_path / "work2",
    )  # fmt: skip
    assert j2.decision.winner is None
    assert any("an older window is never promoted automatically" in f for f in j2.decision.verdict("als").failures)


# ------------------------------------------------------------------------- S3 stopped mid-promotion
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_s3_stopped_mid_promotion_retries_then_fails_and_the_next_run_succeeds(
    live_services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recflow.registry import objects
    from recflow.services import ensure_services_up, services_down
    from recflow.services.s3 import S3ProxyService

    state = tmp_path / "state"
    state.mkdir()
    (state / "jars").symlink_to(live_services.state / "jars")  # reuse the resolved S3Proxy jar
    port = _free_port()
    settings = dataclasses.replace(live_services, state=state)
    own = S3ProxyService(settings=live_services.s3, state=state, port=port, name="s3-fault")
    ensure_services_up(settings, services=[own])
    try:
        s3 = dataclasses.replace(live_services.s3, endpoint_url=f"http://127.0.0.1:{port}")
        fast = RetryPolicy(attempts=4, base=0.25, cap=1.0)
        reg = ModelRegistry(s3_client(s3, max_attempts=1, connect_timeout=1), s3.models_bucket, "fault", retry=fast)
        a = register(reg, popularity(tmp_path / "a", PAIRS_A))
        b = register(reg, popularity(tmp_path / "b", PAIRS_B))
        reg.chain.swap(a.version, expected_champion=None, reason="a", actor="it")
        create = reg.store.create

        def stop_before_the_link(key: str, *args: Any, **kwargs: Any) -> bool:
            if "/chain/" in key:
                services_down(settings, services=[own])  # the audit record is written, the link is not
            return create(key, *args, **kwargs)

        reg.store.create = stop_before_the_link  # type: ignore[method-assign]
        slept: list[float] = []  # the back-off the store asked for (what it did, not how long it took)

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        monkeypatch.setattr(objects, "time", SimpleNamespace(sleep=sleep))
        with pytest.raises(RegistryUnavailable, match=r"failed after 4 attempts.*is the S3 server up"):
            reg.chain.swap(b.version, expected_champion=a.version, reason="b", actor="it")
        assert slept[:3] == [0.25, 0.5, 1.0], f"it must back off before giving up: {slept}"
        reg.store.create = create  # type: ignore[method-assign]
        ensure_services_up(settings, services=[own])  # same data folder: the server comes back as it was
        serving = resolve_serving_version(reg)
        assert (serving.version, serving.digest) == (a.version, a.digest)  # champion unchanged
        record = reg.chain.swap(b.version, expected_champion=a.version, reason="b, next run", actor="it")
        assert record.previous == a.version and resolve_serving_version(reg).version == b.version
        assert [r.version for r in reg.history()] == [a.version, b.version]
    finally:
        services_down(settings, services=[own])


# ------------------------------------------------------------------------- acceptance: history and champion --at
def _cli(args: list[str], env: dict[str, str]) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "recflow.cli", "registry", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def compare_and_promote_two_runs(registry: ModelRegistry, tmp_path: Path, end: datetime) -> list[PromotionRecord]:
    """Two training runs of the interval ending ``end`` through the DAG's compare step and the gate; the second
    is forced (the same data rarely wins by 1%)."""
    lake, records = write_lake(tmp_path / "lake"), []
    for run in ("run-1", "run-2"):
        cand = register(registry, popularity(tmp_path / run, TRAIN), family="als", created_at=end,
                        lineage={"run_id": run})  # fmt: skip
        # a baseline that knows only two items: the candidate beats it clearly on a cold start
        weak = [(f"u{u}", "i10") for u in range(30)] + [(f"u{u}", "i11") for u in range(15)]
        base = register(registry, popularity(tmp_path / f"{run}-pop", weak), created_at=end,
                        lineage={"run_id": run})  # fmt: skip
        result = compare_and_bless(
            registry, {"als": cand, "popularity": base}, lake_root=lake, window=WINDOW, policy=load_policy(),
            cutoffs=[10], run_id=run, interval_end=end, actor="it",
            force_reason="acceptance" if run == "run-2" else None,
        )  # fmt: skip
        assert result["winner"] == cand.version, result["decision"]
        assert all(uri.endswith(".html") for uri in result["reports"].values())
        records.append(
            promote_blessed(registry, cand.version, expected_champion=result["previous_champion"],
                            reason=result["why"], actor="it", interval_end=end,
                            kind="force" if result["forced"] else "promote")
        )  # fmt: skip
        time.sleep(0.05)
    return records


def cli_json(args: list[str], env: dict[str, str]) -> Any:
    """``recflow registry <args>``, which must succeed; its ``--json`` output."""
    done = _cli(args, env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_runs_of_one_interval_and_a_rollback_in_history_and_champion_at(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    """Two training runs of the same interval go through the DAG's compare step (``compare_and_bless``)
    and the gate; a rollback through the CLI; ``history --json`` lists all three in order and
    ``champion --at`` answers for a time between them. The same through two real ``dag.test()`` runs:
    test_pipeline.py::test_second_run_of_the_interval_and_a_rollback_are_in_history_and_champion_at."""
    end = datetime(2026, 11, 23, tzinfo=UTC)
    records = compare_and_promote_two_runs(registry, tmp_path, end)
    assert records[0].version != records[1].version  # a re-run of the interval is a new version
    env = {**os.environ, "RECFLOW_MODELS_BUCKET": registry.bucket}
    rolled = cli_json(["rollback", "--reason", "run-2 regressed", "--prefix", registry.prefix, "--json"], env)
    assert (rolled["version"], rolled["kind"]) == (records[0].version, "rollback")

    history = cli_json(["history", "--json", "--prefix", registry.prefix], env)
    assert [(h["version"], h["kind"]) for h in history] == [
        (records[0].version, "promote"),
        (records[1].version, "force"),
        (records[0].version, "rollback"),
    ]
    assert history[1]["reason"].startswith("FORCED by it: acceptance")
    first, second = (datetime.fromisoformat(h["promoted_at"]) for h in history[:2])
    between = first + (second - first) / 2
    at = cli_json(["champion", "--at", between.isoformat(), "--json", "--prefix", registry.prefix], env)
    assert at["version"] == records[0].version
    assert at["digest"] == records[0].digest
    # what a backfill of the interval gets: the rollback overrides run-2's version for that day too
    backfill = cli_json(["champion", "--interval-end", end.isoformat(), "--json", "--prefix", registry.prefix], env)
    assert backfill["promotion"]["kind"] == "rollback"
    assert backfill["version"] == records[0].version

    # errors are one line on stderr, no traceback
    bad_calls = [
        ["champion", "--at", "yesterday"],
        ["show", "als-20990101T0000-000000000000"],
        ["promote", records[1].version, "--reason", "x", "--expect-champion", "none"],
        ["rollback"],
    ]
    for bad in bad_calls:
        done = _cli([*bad, "--prefix", registry.prefix], env)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
