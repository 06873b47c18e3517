"""The quality benchmark's pipeline on a tiny synthetic dataset: it runs end to end and writes the
three result files with the documented schema.

Expected values here come from the protocol (seeds, budgets, metric names, file names, goal list), not
from the code under test, so a broken split, a skipped family or a renamed metric fails.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from recflow.config import project_root
from recflow.constants import COL_ITEM, COL_USER
from recflow.data.synthetic import generate_day

EXPECTED_METRICS = {"ndcg", "precision", "recall", "map", "map_all_relevant", "hit_rate", "coverage"}
FAMILIES = ("als", "ncf", "popularity")
SEEDS = (7,)


def _load_bench() -> ModuleType:
    path = project_root() / "bench" / "quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from recflow.spark import get_spark

    session = get_spark("test-bench-quality", master="local[1]", conf={"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def report_dir(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    bench = _load_bench()
    interactions = generate_day(date(2026, 11, 2), n_users=60, n_items=25, events_per_day=1500, seed=3)
    config = bench.BenchConfig(
        seeds=SEEDS,
        budgets={"als": 1, "ncf": 1, "popularity": 1},
        overrides={"als": {"max_iter": 2, "rank": 4}, "ncf": {"epochs": 1, "gmf_dim": 4, "mlp_layers": [8, 4]}},
        warm_up=False,
    )
    out = tmp_path_factory.mktemp("bench") / "results"
    report = bench.run_benchmark(spark, interactions, config, out, dataset="synthetic")
    return report, out


@pytest.mark.slow
def test_writes_three_result_files(report_dir: tuple[dict[str, Any], Path]) -> None:
    _, out = report_dir
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md", "quality.png"]
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "quality.png is not a PNG"


@pytest.mark.slow
def test_json_schema(report_dir: tuple[dict[str, Any], Path]) -> None:
    _, out = report_dir
    report = json.loads((out / "quality.json").read_text())
    assert report["schema_version"] == 1
    assert report["config"]["seeds"] == list(SEEDS)
    assert {"date_utc", "cores", "versions", "spark_master"} <= set(report["machine"])
    assert report["machine"]["cores"] >= 1
    assert set(report["summary"]) == set(FAMILIES)
    for family, values in report["summary"].items():
        assert EXPECTED_METRICS | {"fit_s", "validation_ndcg"} <= set(values), family
        for name in EXPECTED_METRICS:
            assert 0.0 <= values[name]["mean"] <= 1.0, (family, name, values[name])
            assert values[name]["std"] >= 0.0, (family, name)
        assert values["fit_s"]["mean"] > 0.0, f"{family} fit time was not measured"
    assert report["champion"]["family"] in FAMILIES
    assert set(report["champion"]["per_seed"]) == {str(s) for s in SEEDS}
    assert [g["name"] for g in report["goals"]] == [
        "ALS nDCG@10 >= 0.48",
        "NCF nDCG@10 >= 0.45",
        "champion nDCG@10 >= 0.50",
        "champion P@10 >= 0.43",
        "ALS fit <= 6 s",
        "NCF fit <= 30 s",
    ]
    assert all(isinstance(g["met"], bool) for g in report["goals"])
    assert set(report["published"]["models"]) >= {"BiVAE (Recommenders)", "NCF (Recommenders)"}


@pytest.mark.slow
def test_each_seed_selects_on_validation_and_tests_once(report_dir: tuple[dict[str, Any], Path]) -> None:
    report, _ = report_dir
    assert [run["seed"] for run in report["runs"]] == list(SEEDS)
    for run in report["runs"]:
        rows = run["rows"]
        assert rows["fit"] + rows["validation"] == rows["train"], run["seed"]
        assert abs(rows["train"] / (rows["train"] + rows["test"]) - 0.75) < 0.05, rows
        for family in FAMILIES:
            result = run["models"][family]
            assert len(result["trials"]) == 1, f"budget 1 must try exactly one parameter set ({family})"
            assert EXPECTED_METRICS == set(result["test"]) == set(result["validation"])
        assert run["models"]["als"]["params"]["max_iter"] == 2, "overrides must reach the trainer"
        assert run["models"]["als"]["params"]["seed"] == run["seed"]
        assert run["champion"] in FAMILIES


@pytest.mark.slow
def test_markdown_names_every_model_goal_and_definition(report_dir: tuple[dict[str, Any], Path]) -> None:
    report, out = report_dir
    text = (out / "quality.md").read_text()
    for needle in ("| als |", "| ncf |", "| popularity |", "BiVAE", "nDCG@10", "MAP@10 (all rel)", "**Champion**"):
        assert needle in text, f"{needle!r} missing from quality.md"
    assert text.count(" ± ") >= 3 * 8, "every model row should show mean ± std for 8 columns"
    for goal in report["goals"]:
        assert goal["name"] in text


def test_relevant_pairs_drops_seen_and_duplicate_pairs() -> None:
    bench = _load_bench()
    train = pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["x", "y", "x"]})
    held_out = pd.DataFrame({COL_USER: ["a", "a", "a", "b"], COL_ITEM: ["x", "z", "z", "y"]})
    truth, dropped = bench.relevant_pairs(held_out, train)
    assert truth.values.tolist() == [["a", "z"], ["b", "y"]]
    assert dropped == 1


def test_config_rejects_unknown_family() -> None:
    bench = _load_bench()
    with pytest.raises(ValueError, match="unknown model families"):
        bench.BenchConfig(families=("als", "bivae"))


def test_champion_is_chosen_by_validation_not_test() -> None:
    bench = _load_bench()
    summary = {
        "als": {"validation_ndcg": {"mean": 0.30}, "ndcg": {"mean": 0.40}, "precision": {"mean": 0.44}},
        "ncf": {"validation_ndcg": {"mean": 0.20}, "ndcg": {"mean": 0.60}, "precision": {"mean": 0.50}},
    }
    assert bench.choose_champion(summary) == "als"
    goals = {g["name"]: g for g in bench.check_goals(summary, "als")}
    assert goals["champion nDCG@10 >= 0.50"]["met"] is False
    assert goals["champion P@10 >= 0.43"]["met"] is True
    assert goals["ALS fit <= 6 s"]["met"] is None, "a goal whose metric was not measured is not met"
