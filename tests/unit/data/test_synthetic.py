"""The synthetic generator: deterministic, contract-shaped, and with structure a recommender can learn."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data import synthetic
from recflow.data.contract import INTERACTION_COLUMNS, INTERACTION_DTYPES
from recflow.data.synthetic import generate_day, write_days

DAY = date(2024, 3, 4)  # a Monday
SMALL: dict[str, Any] = {"n_users": 300, "n_items": 60, "events_per_day": 3_000}


@pytest.fixture(autouse=True)
def _no_shared_offers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests must not depend on a file outside the repo: point the offer list at a missing path."""
    monkeypatch.setenv(synthetic.ENV_OFFERS, str(tmp_path / "missing-offerList.csv"))


def test_same_inputs_give_identical_output() -> None:
    a = generate_day(DAY, seed=7, **SMALL)
    b = generate_day(DAY, seed=7, **SMALL)
    pd.testing.assert_frame_equal(a, b)
    c = generate_day(DAY, seed=8, **SMALL)
    assert not a[COL_USER].equals(c[COL_USER]), "a different seed must give different data"


def test_columns_dtypes_and_value_ranges() -> None:
    df = generate_day(DAY, seed=1, **SMALL)
    assert tuple(df.columns) == INTERACTION_COLUMNS
    assert {c: str(t) for c, t in df.dtypes.items()} == INTERACTION_DTYPES
    assert df[COL_EVENT].is_unique
    assert df[COL_USER].str.fullmatch(r"u\d{6}").all()
    assert df[COL_ITEM].str.fullmatch(r"mcc_\d{3}").all()
    assert (df[COL_QUANTITY] >= 1).all() and (df[COL_AMOUNT] > 0).all()
    assert df[COL_RATING].isna().all()
    start = pd.Timestamp(DAY, tz="UTC")
    assert df[COL_TS].between(start, start + pd.Timedelta(days=1), inclusive="left").all()


def test_event_ids_unique_across_days_and_days_independent() -> None:
    days = [generate_day(DAY + timedelta(days=i), seed=3, **SMALL) for i in range(3)]
    ids = pd.concat([d[COL_EVENT] for d in days])
    assert ids.is_unique
    # A day generated alone equals the same day generated after others (no hidden state).
    pd.testing.assert_frame_equal(generate_day(DAY + timedelta(days=2), seed=3, **SMALL), days[2])


def test_merchant_names_come_from_the_offer_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offers = tmp_path / "offerList.csv"
    offers.write_bytes(b"ZOO SHOP,ZOO SHOP offer,ZOO SHOP reward,5\r\nAIR X,AIR X offer,AIR X reward,7\r\n")
    monkeypatch.setenv(synthetic.ENV_OFFERS, str(offers))
    df = generate_day(DAY, seed=1, n_users=50, n_items=3, events_per_day=2_000)
    assert set(df[COL_ITEM]) == {"AIR X", "ZOO SHOP", "mcc_002"}


def test_popularity_is_skewed() -> None:
    df = generate_day(DAY, seed=5, n_users=1_000, n_items=100, events_per_day=20_000)
    shares = df[COL_ITEM].value_counts(normalize=True)
    assert shares.iloc[:10].sum() > 0.35, "the top 10% of items should take a large share (uniform: 10%)"
    assert shares.iloc[0] > 10 * shares.iloc[-1]


def test_personal_history_beats_popularity_on_the_next_day() -> None:
    """Learnable: a user's own history predicts their next-day items better than global popularity."""
    params: dict[str, Any] = {"n_users": 200, "n_items": 80, "events_per_day": 12_000, "seed": 11}
    train = pd.concat([generate_day(DAY + timedelta(days=i), **params) for i in range(3)])
    test = generate_day(DAY + timedelta(days=3), **params)
    k = 5
    popular = list(train[COL_ITEM].value_counts().index[:k])

    def top_k(s: pd.Series) -> list[str]:
        return [str(item) for item, _ in Counter(s).most_common(k)]

    per_user = train.groupby(COL_USER)[COL_ITEM].agg(top_k)
    truth = test.groupby(COL_USER)[COL_ITEM].agg(set)
    users = truth.index.intersection(per_user.index)
    pop_hit = np.mean([len(truth[u] & set(popular)) / k for u in users])
    own_hit = np.mean([len(truth[u] & set(per_user[u])) / k for u in users])
    assert own_hit > 1.3 * pop_hit, f"personal precision@{k} {own_hit:.3f} vs popularity {pop_hit:.3f}"


def test_weekly_seasonality_and_drift() -> None:
    monday = len(generate_day(DAY, seed=2, **SMALL))
    saturday = len(generate_day(DAY + timedelta(days=5), seed=2, **SMALL))
    assert saturday < 0.9 * monday
    world = synthetic.make_world(300, 60, 2)
    f0 = world.user_factors(DAY)
    near = np.linalg.norm(world.user_factors(DAY + timedelta(days=1)) - f0)
    far = np.linalg.norm(world.user_factors(DAY + timedelta(days=90)) - f0)
    assert near < 0.05 * far, "tastes drift slowly: one day moves them far less than a quarter"


def test_fault_injection_is_seeded_and_hits_the_requested_kinds() -> None:
    faults = {"null_user": 0.02, "negative_amount": 0.02, "duplicate_event_id": 0.02, "future_ts": 0.02}
    df = generate_day(DAY, seed=4, faults=faults, **SMALL)
    pd.testing.assert_frame_equal(df, generate_day(DAY, seed=4, faults=faults, **SMALL))
    n = len(df)
    assert 0.005 * n < df[COL_USER].isna().sum() < 0.04 * n
    assert (df[COL_AMOUNT] < 0).sum() > 0
    assert df[COL_EVENT].duplicated().sum() > 0
    assert (df[COL_TS] >= pd.Timestamp(DAY + timedelta(days=1), tz="UTC")).sum() > 0
    with pytest.raises(ValueError, match="unknown fault"):
        generate_day(DAY, faults={"cosmic_ray": 0.1}, **SMALL)


@pytest.mark.parametrize(("fmt", "gz"), [("csv", False), ("csv", True), ("jsonl", True), ("parquet", False)])
def test_write_days_one_file_per_day_and_chunking_does_not_change_content(tmp_path: Path, fmt: str, gz: bool) -> None:
    big = write_days(DAY, DAY + timedelta(days=1), tmp_path / "a", fmt, gz, chunk_rows=1_000_000, **SMALL)
    small = write_days(DAY, DAY + timedelta(days=1), tmp_path / "b", fmt, gz, chunk_rows=700, **SMALL)
    assert [p.relative_to(tmp_path / "a") for p in big] == [p.relative_to(tmp_path / "b") for p in small]
    assert big[0].parent.name == "date=2024-03-04" and big[0].name.startswith("interactions.")
    assert not list((tmp_path / "a").rglob(".*tmp*")), "no temp files left behind"
    for a, b in zip(big, small, strict=True):
        if fmt == "parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        else:
            opener = gzip.open if gz else open
            with opener(a, "rb") as fa, opener(b, "rb") as fb:
                assert fa.read() == fb.read()
