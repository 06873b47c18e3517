"""``run_training`` on local Spark with tiny Parquet lakes: bad inputs fail clearly, and no failure
leaves anything the promote step could pick up.

Two properties are checked on every failure: nothing appears at ``output_dir`` (and an earlier good
``output_dir`` is left as it was), and no staging folder is left beside it. Registration is checked
against an in-memory S3: the version's manifest is the last object written, and a failed upload
leaves a version the registry refuses to read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_TS, COL_USER
from recflow.data.window import TrainingDataError, TrainingWindow
from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.popularity import PopularityRecommender
from recflow.registry import IncompleteModelVersion, ModelRegistry
from recflow.training.flow import STAGING_PREFIX, run_training

WINDOW = TrainingWindow(date(2026, 11, 1), date(2026, 11, 4), date(2026, 11, 5))
K = 3


@pytest.fixture(scope="session")
def spark(local_spark: Any) -> Iterator[Any]:
    with local_spark("test-training") as session:
        yield session


def events(rows: list[tuple[str, str, date]], amount: float = 1.0) -> pd.DataFrame:
    """Contract-typed events from ``(user, item, day)`` triples (noon UTC of that day)."""
    return pd.DataFrame(
        {
            COL_EVENT: [f"e{i}" for i in range(len(rows))],
            COL_USER: [r[0] for r in rows],
            COL_ITEM: [r[1] for r in rows],
            COL_TS: pd.to_datetime([datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for _, _, d in rows]).astype(
                "datetime64[ms, UTC]"
            ),  # the lake stores milliseconds (Spark cannot read Parquet nanoseconds)
            COL_QUANTITY: np.ones(len(rows), dtype=np.int64),
            COL_AMOUNT: np.full(len(rows), amount, dtype=np.float64),
        }
    )


def good_events() -> pd.DataFrame:
    """4 users x 5 items over the 3 training days, and one unseen item per user in the hold-out."""
    rows = []
    for u in range(4):
        for i in range(5):
            if (u + i) % 3:  # each user misses some items, so there is something to recommend
                rows.append((f"u{u}", f"i{i}", WINDOW.start + timedelta(days=(u + i) % 3)))
        rows.append((f"u{u}", f"i{u % 3 * 3 % 5}", WINDOW.holdout_start))
    return events(rows)


def write_lake(root: Path, df: pd.DataFrame, *, nan_as_null: bool = False) -> Path:
    """The validated lake layout: ``interactions/event_date=YYYY-MM-DD/part-0.parquet``.

    ``nan_as_null=False`` keeps float NaN as NaN in the file (``DataFrame.to_parquet`` would write null).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for day, part in df.groupby(df[COL_TS].dt.date):
        folder = root / "interactions" / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({c: pa.array(part[c], from_pandas=nan_as_null) for c in part.columns})
        pq.write_table(table, folder / "part-0.parquet")
    return root


def fit_popularity(spark: Any, train: Any, params: Mapping[str, Any], work_dir: Path) -> Recommender:
    return PopularityRecommender.fit_spark(train, work_dir)


def train(
    spark: Any,
    lake: Path,
    out: Path,
    fit: Any = fit_popularity,
    *,
    family: str = "popularity",
    params: dict[str, Any] | None = None,
    k: int = K,
    **kwargs: Any,
) -> Any:
    """``run_training`` of one candidate (``params``, default none) over ``lake`` into ``out``: the run
    every test here and in ``test_training_in_spark`` makes, with what it varies as arguments."""
    return run_training(
        spark,
        family=family,
        fit=fit,
        lake_root=lake,
        window=kwargs.pop("window", WINDOW),
        candidates=[{} if params is None else params],
        output_dir=out,
        run_id="run-1",
        k=k,
        **kwargs,
    )


def leftovers(out: Path) -> list[str]:
    """Staging folders of ``out`` still lying beside it."""
    return sorted(p.name for p in out.parent.glob(STAGING_PREFIX.format(name=out.name) + "*"))


# --------------------------------------------------------------------------- the good path
def test_good_run_leaves_one_complete_candidate(spark: Any, tmp_path: Path) -> None:
    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / "popularity"
    result = train(spark, lake, out)
    assert sorted(p.name for p in out.iterdir()) == ["artifact", "lineage.json", "metrics.json"]
    assert leftovers(out) == []
    report = json.loads((out / "metrics.json").read_text())
    assert report["schema_version"] == 1 and report["k"] == K
    assert report["metrics"] == result.metrics and 0 <= result.metrics[f"ndcg@{K}"] <= 1
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["input"]["users"] == 4 and lineage["input"]["items"] == 5
    loaded = load_recommender(out / "artifact")
    assert isinstance(loaded, PopularityRecommender)
    calibration = report["calibration"]
    assert loaded.calibration is not None and loaded.calibration.method == calibration["method"] == "platt"
    assert {"ece", "mce", "brier", "pairs", "bins"} <= calibration["before"].keys() == calibration["after"].keys()
    assert calibration["fitted_on"]["pairs"] > 0 and calibration["after"]["pairs"] > 0  # disjoint folds, both used


def test_also_k_reports_the_policy_cutoff_too(spark: Any, tmp_path: Path) -> None:
    """A run asked for k=3 still reports @10 (what the promotion policy compares), from one ranking."""
    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / "popularity"
    result = train(spark, lake, out, also_k=[10])
    assert {name.rsplit("@", 1)[1] for name in result.metrics} == {str(K), "10"}
    assert result.metrics[f"recall@{K}"] <= result.metrics["recall@10"]


# --------------------------------------------------------------------------- bad inputs
BAD_WINDOWS: dict[str, tuple[pd.DataFrame, str]] = {
    # every event falls after the window: the lake exists, the window is empty
    "empty window": (events([("u0", "i0", WINDOW.end + timedelta(days=3))]), "is empty"),
    "single user": (
        events([("u0", "i0", WINDOW.start), ("u0", "i1", WINDOW.start), ("u0", "i0", WINDOW.holdout_start)]),
        "1 user(s) and 2 item(s)",
    ),
    "single item": (
        events([("u0", "i0", WINDOW.start), ("u1", "i0", WINDOW.start), ("u1", "i0", WINDOW.holdout_start)]),
        "2 user(s) and 1 item(s)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WINDOWS))
def test_bad_window_fails_with_a_clear_message(spark: Any, tmp_path: Path, case: str) -> None:
    frame, message = BAD_WINDOWS[case]
    lake, out = write_lake(tmp_path / "lake", frame), tmp_path / "runs" / "popularity"
    with pytest.raises(TrainingDataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        train(spark, lake, out)
    assert f"{WINDOW.start}..{WINDOW.holdout_start}" in str(err.value)  # says which window
    assert not out.exists() and leftovers(out) == []


@pytest.mark.parametrize("nan_as_null", [False, True], ids=["NaN", "null"])
def test_nan_amounts_fail_with_a_count(spark: Any, tmp_path: Path, nan_as_null: bool) -> None:
    """A float NaN in Parquet, and the null pandas' ``to_parquet`` turns a NaN into, both fail."""
    frame = good_events()
    frame.loc[[0, 1], COL_AMOUNT] = np.nan  # two training rows (row 3 is in the hold-out)
    lake, out = write_lake(tmp_path / "lake", frame, nan_as_null=nan_as_null), tmp_path / "runs" / "popularity"
    with pytest.raises(TrainingDataError, match="0 rows with null keys and 2 NaN or null amounts"):
        train(spark, lake, out)
    assert not out.exists() and leftovers(out) == []


def test_null_keys_fail_with_a_count(spark: Any, tmp_path: Path) -> None:
    frame = good_events()
    frame[COL_USER] = frame[COL_USER].astype(object)
    frame.loc[1, COL_USER] = None
    lake, out = write_lake(tmp_path / "lake", frame), tmp_path / "runs" / "popularity"
    with pytest.raises(TrainingDataError, match="1 rows with null keys and 0 NaN or null amounts"):
        train(spark, lake, out)


def test_missing_lake_names_the_path(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match=r"no validated interactions under .*nowhere/interactions"):
        train(spark, tmp_path / "nowhere", tmp_path / "runs" / "popularity")


def test_inverted_window_is_refused() -> None:
    with pytest.raises(TrainingDataError, match="start < holdout_start < end"):
        TrainingWindow(date(2026, 11, 4), date(2026, 11, 4), date(2026, 11, 5))


# --------------------------------------------------------------------------- failures after staging began
def test_empty_holdout_fails_after_fitting_and_leaves_nothing(spark: Any, tmp_path: Path) -> None:
    frame = good_events()
    frame = frame[frame[COL_TS] < pd.Timestamp(WINDOW.holdout_start, tz="UTC")]
    lake, out = write_lake(tmp_path / "lake", frame), tmp_path / "runs" / "popularity"
    with pytest.raises(TrainingDataError, match="hold-out has no pairs"):
        train(spark, lake, out)
    assert not out.exists() and leftovers(out) == []


def test_crashed_fit_keeps_the_previous_candidate(spark: Any, tmp_path: Path) -> None:
    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / "popularity"
    train(spark, lake, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(spark: Any, train_df: Any, params: Mapping[str, Any], work_dir: Path) -> Recommender:
        work_dir.mkdir(parents=True)
        (work_dir / "half-written.bin").write_bytes(b"x")  # what a dying trainer leaves behind
        raise RuntimeError("executor lost")

    with pytest.raises(RuntimeError, match="executor lost"):
        train(spark, lake, out, fit=crash)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert leftovers(out) == []


# --------------------------------------------------------------------------- registration
class FakeS3:
    """The few S3 calls the registry makes, in memory, recording the order of writes.

    ``fail_on`` makes the PUT of keys ending with that suffix fail, like a dropped connection.
    """

    def __init__(self, fail_on: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.fail_on = fail_on

    def put_object(self, *, Bucket: str, Key: str, Body: Any, **_: Any) -> dict[str, Any]:
        if self.fail_on and Key.endswith(self.fail_on):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")
        self.objects[Key] = Body if isinstance(Body, bytes) else Body.read()
        self.puts.append(Key)
        return {"ETag": '"e"'}

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "missing"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": '"e"'}

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.objects.pop(Key, None)
        return {}

    def list_objects_v2(self, *, Bucket: str, Prefix: str, MaxKeys: int = 1000) -> dict[str, Any]:
        keys = sorted(k for k in self.objects if k.startswith(Prefix))[:MaxKeys]
        return {"Contents": [{"Key": k} for k in keys]}

    def get_paginator(self, name: str) -> Any:
        outer = self

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                return [outer.list_objects_v2(Bucket=Bucket, Prefix=Prefix)]

        return Paginator()


def _registry(monkeypatch: pytest.MonkeyPatch, s3: FakeS3) -> ModelRegistry:
    registry = ModelRegistry(s3, "models")  # type: ignore[arg-type]
    monkeypatch.setattr(ModelRegistry, "from_settings", classmethod(lambda cls, *a, **k: registry))
    return registry


def test_registry_manifest_is_written_last(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = FakeS3()
    registry = _registry(monkeypatch, s3)
    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / "popularity"
    result = train(spark, lake, out, register=True)
    assert result.version is not None and result.version.startswith("popularity-20261105T0000-")
    assert result.registry_uri == registry.uri(result.version)
    assert s3.puts[-1].endswith(f"versions/{result.version}/manifest.json"), s3.puts
    uploaded = {k.rsplit("/files/", 1)[1] for k in s3.puts[:-1]}
    assert {"model.json", "metrics.json", "lineage.json", "calibration.json"} <= uploaded
    assert registry.get(result.version).metrics == result.metrics
    assert registry.get(result.version).lineage["run_id"] == "run-1"


def test_failed_upload_leaves_a_version_promote_cannot_read(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = FakeS3(fail_on="/lineage.json")  # fails after model.json, items.json ... are uploaded
    registry = _registry(monkeypatch, s3)
    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / "popularity"
    with pytest.raises(Exception, match="boom"):
        train(spark, lake, out, register=True)
    assert s3.puts and not any(k.endswith("manifest.json") for k in s3.objects)
    (version,) = {k.split("/")[2] for k in s3.objects}  # registry/versions/<version>/files/...
    with pytest.raises(IncompleteModelVersion):
        registry.get(version)
    assert registry.list_versions() == []
    with pytest.raises(IncompleteModelVersion):
        registry.chain.swap(version, expected_champion=None, reason="test", actor="test")


# --------------------------------------------------------------------------- a new family through the same flow
@pytest.mark.parametrize(
    ("family", "params"),
    [("hybrid", {"rank": 2, "max_iter": 2, "ease_lambda": 1.0}), ("sequence", {"window": 2, "ease_lambda": 1.0})],
)
def test_new_families_train_through_the_shared_flow(
    spark: Any, tmp_path: Path, family: str, params: dict[str, Any]
) -> None:
    """The trainer's ``fit`` for the family on a real lake: a complete artifact that loads by its own class."""
    from recflow.training.fitters import FITTERS

    lake, out = write_lake(tmp_path / "lake", good_events()), tmp_path / "runs" / family
    result = train(spark, lake, out, FITTERS[family], family=family, params=params)
    assert 0 <= result.metrics[f"ndcg@{K}"] <= 1 and leftovers(out) == []
    loaded = load_recommender(out / "artifact")
    assert loaded.family == family and loaded.ease is not None and loaded.ease.shape == (5, 5)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the hold-out's relevance rule
def test_judgeable_pairs_keeps_known_unseen_distinct_pairs() -> None:
    """Trained on a:{x, y}, b:{x}: (a, x) is seen, (c, x) has an unknown user, (b, w) an unknown item,
    (a, z)... z is unknown too; only (b, y) twice -> once is left."""
    from recflow.evaluation.python_holdout import judgeable_pairs

    model = PopularityRecommender.fit(pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["x", "y", "x"]}))
    held_out = pd.DataFrame(
        {COL_USER: ["a", "b", "b", "c", "b", "a"], COL_ITEM: ["x", "y", "y", "x", "w", "z"]}, index=[9, 8, 7, 6, 5, 4]
    )
    assert judgeable_pairs(held_out, model).values.tolist() == [["b", "y"]]


def test_exploration_writes_the_item_history_and_the_lakes_tags(spark: Any, tmp_path: Path) -> None:
    """A spec's ``exploration:`` puts ``exploration.json`` in the artifact: each catalog item's first
    training day and interactions (the hold-out's days excluded), the tags of the lake's ``items/``, and
    the items of ``items/`` nobody bought (``zz``), after the model's catalog, first seen at the window's end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recflow.models.exploration import read_explorer
    from recflow.scoring.explore_policy import ExplorePolicy

    lake = write_lake(tmp_path / "lake", good_events())
    (lake / "items").mkdir()
    pq.write_table(pa.table({COL_ITEM: ["i0", "i1", "zz"], "tags": [["drama"], ["comedy", "drama"], ["x"]]}),
                   lake / "items" / "part-0.parquet")  # fmt: skip
    policy = ExplorePolicy(new_within_days=2, min_interactions=3, slots=(2,), user_share=0.5)
    out = tmp_path / "runs" / "popularity"
    train(spark, lake, out, exploration=policy)
    model = load_recommender(out / "artifact")
    explorer = read_explorer(out / "artifact", model)
    assert explorer is not None and explorer.policy == policy
    assert json.loads((out / "lineage.json").read_text())["exploration"] == policy.as_dict()
    frame = good_events()
    frame = frame[frame[COL_TS] < pd.Timestamp(WINDOW.holdout_start, tz="UTC")]
    for item, rows in frame.groupby(COL_ITEM):
        code = int(model.index.item_codes([item])[0])
        assert explorer.history.first_seen[code] == rows[COL_TS].min().date().toordinal(), item
        assert explorer.history.interactions[code] == len(rows), item
    tags = explorer.history.tags
    assert tags is not None and tags.shape == (model.index.n_items + 1, 3)  # vocabulary comedy, drama, x
    assert explorer.history.extra_ids.tolist() == ["zz"] and explorer.history.n_model_items == model.index.n_items
    assert explorer.history.interactions[-1] == 0 and explorer.history.first_seen[-1] == WINDOW.end.toordinal()
    assert tags[-1].tolist() == [0, 0, 1]
    by_item = dict(zip(model.index.items, tags[: model.index.n_items].tolist(), strict=True))
    assert by_item["i0"] == [0, 1, 0] and by_item["i1"] == [1, 1, 0] and by_item["i4"] == [0, 0, 0]


def test_a_segmented_spec_trains_one_model_per_kmeans_segment(spark: Any, tmp_path: Path) -> None:
    """Heavy buyers of h-items and light buyers of l-items: KMeans on (activity, spend) separates them,
    k searched over 2..4 settles on 2 (two groups of identical users: silhouette 1; more clusters leave
    one empty or a singleton), the router agrees with Spark's assignment (the fit checks it), and each
    segment's model knows only its segment's items; the candidate is judged on the hold-out like any
    other, per segment too, and the choice of k is recorded."""
    from recflow.models.segmented import SegmentedRecommender
    from recflow.training.segmentation import Segmentation
    from recflow.training.segments import segmented_fitter

    rows = []
    for d in range(3):
        day = WINDOW.start + timedelta(days=d)
        rows += [(f"h{u}", f"hi{(u + j + d) % 8}", day) for u in range(6) for j in range(4)]
        rows += [(f"l{u}", f"lo{(u + d) % 4}", day) for u in range(6)]
    rows += [(f"h{u}", f"hi{(u + 6) % 8}", WINDOW.holdout_start) for u in range(6)]
    rows += [(f"l{u}", f"lo{(u + 3) % 4}", WINDOW.holdout_start) for u in range(6)]
    frame = events(rows)
    frame.loc[frame[COL_USER].str.startswith("h"), COL_AMOUNT] = 80.0
    lake = write_lake(tmp_path / "lake", frame)
    segmentation = Segmentation(family="popularity", ks=(2, 3, 4), features=("activity", "spend"), seed=3)
    out = tmp_path / "runs" / "seg"
    result = train(spark, lake, out, fit=segmented_fitter(segmentation, lake), family="popularity_segmented")
    model = load_recommender(out / "artifact")
    assert isinstance(model, SegmentedRecommender) and len(model.segments) == 2
    segment_of = dict(zip(model.index.users, model.user_segment.tolist(), strict=True))
    heavy = {segment_of[f"h{u}"] for u in range(6)}
    light = {segment_of[f"l{u}"] for u in range(6)}
    assert len(heavy) == len(light) == 1 and heavy != light
    assert set(model.segments[heavy.pop()].index.items) == {f"hi{i}" for i in range(8)}
    assert 0 <= result.metrics[f"ndcg@{K}"] <= 1
    report = json.loads((out / "metrics.json").read_text())
    per_segment = report["segments"]
    assert sorted(per_segment) == ["0", "1"] and sum(s["holdout_users"] for s in per_segment.values()) == 12
    assert all(0 <= s["metrics"][f"ndcg@{K}"] <= 1 for s in per_segment.values())
    selection = report["segmentation"]
    assert selection["k"] == 2 and selection == model.router.selection and "silhouette" in selection["criterion"]
    assert selection["silhouette"]["2"] == pytest.approx(1.0)
    assert all(selection["silhouette"][k] is None or selection["silhouette"][k] < 1.0 for k in ("3", "4"))


def test_user_features_count_spend_recency_and_category_mix(spark: Any) -> None:
    from recflow.data.user_features import user_features

    frame = events([("a", "x", WINDOW.start), ("a", "y", WINDOW.start), ("b", "y", WINDOW.start + timedelta(days=2))])
    frame[COL_AMOUNT] = [10.0, float("nan"), 3.0]
    tags = spark.createDataFrame(pd.DataFrame({COL_ITEM: ["x", "y"], "tags": [["red"], ["red", "blue"]]}))
    out = user_features(spark.createDataFrame(frame), ("activity", "spend", "recency", "category_mix"),
                        WINDOW.holdout_start, tags).toPandas().set_index(COL_USER)  # fmt: skip
    assert out.loc["a", "activity"] == pytest.approx(np.log1p(2)) and out.loc["b", "activity"] == pytest.approx(
        np.log1p(1)
    )
    assert out.loc["a", "spend"] == pytest.approx(np.log1p(10.0))  # the NaN amount counts 0
    assert out.loc["a", "recency"] == 3 and out.loc["b", "recency"] == 1
    # a: x (red) and y (red, blue): 3 tag events, 2 red; b: y: 1 red, 1 blue
    assert out.loc["a", "category_mix_red"] == pytest.approx(2 / 3) and out.loc["b", "category_mix_blue"] == 0.5
    with pytest.raises(ValueError, match="item metadata"):
        user_features(spark.createDataFrame(frame), ("category_mix",), WINDOW.holdout_start)
