"""Planning which models to train from the DAG's Params: unknown names fail before any Spark job.

``plan_models`` is the pure function behind the ``plan_training`` task, so it is tested here without
Airflow. Expected names come from the spec files written by the test, not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.training.specs import SpecError, available_specs, plan_models

ENTRY = "spark_jobs/train.py"  # any existing file: load_spec checks that the entry point exists


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    for name in ("als", "ncf", "popularity"):
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nentry_point: {ENTRY}\n")
    (tmp_path / "promotion.yaml").write_text("schema_version: 1\n")
    return tmp_path


def test_unknown_model_names_every_known_model(specs_dir: Path) -> None:
    with pytest.raises(SpecError) as err:
        plan_models(["als", "nfc"], directory=specs_dir)
    message = str(err.value)
    assert "'nfc'" in message
    assert "known models: als, ncf, popularity" in message
    assert "promotion" not in message  # the policy file is not a model


def test_every_unknown_name_is_reported_at_once(specs_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"\['bpr', 'ease'\]"):
        plan_models(["bpr", "als", "ease"], directory=specs_dir)


@pytest.mark.parametrize("name", ["../models/als", "als.yaml", "ALS", "", "promotion"])
def test_names_are_matched_not_turned_into_paths(specs_dir: Path, name: str) -> None:
    with pytest.raises(SpecError, match="unknown model"):
        plan_models([name], directory=specs_dir)


@pytest.mark.parametrize("names", [[], "als", None])
def test_models_must_be_a_non_empty_list(specs_dir: Path, names: object) -> None:
    with pytest.raises(SpecError, match="at least one model"):
        plan_models(names, directory=specs_dir)  # type: ignore[arg-type]


def test_baseline_is_added_once_and_duplicates_dropped(specs_dir: Path) -> None:
    specs = plan_models(["ncf", "als", "ncf"], directory=specs_dir)
    assert [s.name for s in specs] == ["ncf", "als", "popularity"]
    specs = plan_models(["popularity", "als"], directory=specs_dir)
    assert [s.name for s in specs] == ["popularity", "als"]
    assert [s.name for s in plan_models(["als"], baseline=None, directory=specs_dir)] == ["als"]


def test_the_repository_specs_plan() -> None:
    """The real ``models/`` folder: every model the DAG offers can be planned."""
    names = [n for n in available_specs() if n != "popularity"]
    assert {"als", "ncf"} <= set(names)
    planned = plan_models(names)
    assert planned[-1].name == "popularity" and planned[-1].baseline
    assert all((Path(__file__).resolve().parents[3] / s.entry_point).is_file() for s in planned)


def test_exploration_is_read_and_checked_at_load(tmp_path: Path) -> None:
    from recflow.scoring.explore_policy import ExplorePolicy
    from recflow.training.specs import load_spec

    (tmp_path / "als.yaml").write_text(
        f"name: als\nentry_point: {ENTRY}\nexploration: {{slots: [5], user_share: 0.2, new_within_days: 3}}\n"
    )
    spec = load_spec("als", tmp_path)
    assert spec.exploration == ExplorePolicy(new_within_days=3, slots=(5,), user_share=0.2)
    (tmp_path / "ncf.yaml").write_text(f"name: ncf\nentry_point: {ENTRY}\nexploration: {{slot: 5}}\n")
    with pytest.raises(SpecError, match=r"exploration: .*unknown keys"):
        load_spec("ncf", tmp_path)
    (tmp_path / "popularity.yaml").write_text(f"name: popularity\nentry_point: {ENTRY}\n")
    assert load_spec("popularity", tmp_path).exploration is None


def test_every_section_is_checked_by_its_own_parser_and_names_the_file(tmp_path: Path) -> None:
    from recflow.training.specs import load_spec

    for section, body in (("scoring", "{exclude: lake}"), ("segmentation", "[als]"), ("exploration", "5")):
        (tmp_path / "als.yaml").write_text(f"name: als\nentry_point: {ENTRY}\n{section}: {body}\n")
        with pytest.raises(SpecError, match=rf"als\.yaml: {section}"):
            load_spec("als", tmp_path)
    (tmp_path / "als.yaml").write_text(f"name: als\nentry_point: {ENTRY}\nscoring: {{exclude_seen: none}}\n")
    assert load_spec("als", tmp_path).scoring == {"exclude_seen": "none", "seen_lookback_days": None}


def test_kmeans_k_is_a_searched_range_a_list_or_one_integer(tmp_path: Path) -> None:
    from recflow.training.segmentation import choose_k, parse_k
    from recflow.training.specs import load_spec

    assert parse_k("2..8") == (2, 3, 4, 5, 6, 7, 8) and parse_k(3) == (3,) and parse_k([6, 2, 6]) == (2, 6)
    for bad in ("8..2", "2-8", True, [], [2, "3"], 2.5):
        with pytest.raises(ValueError, match="k"):
            parse_k(bad)
    body = "segmentation: {family: als, kmeans: {k: 2..4, features: [activity]}}"
    (tmp_path / "als_segmented.yaml").write_text(f"name: als_segmented\nentry_point: {ENTRY}\n{body}\n")
    segmentation = load_spec("als_segmented", tmp_path).segmentation
    assert segmentation is not None and segmentation.ks == (2, 3, 4)
    (tmp_path / "ncf.yaml").write_text(f"name: ncf\nentry_point: {ENTRY}\n{body.replace('2..4', '1..4')}\n")
    with pytest.raises(SpecError, match=r"2\.\.64"):
        load_spec("ncf", tmp_path)
    # the highest silhouette wins, the smaller k on a tie; a k with a too small segment (None) never does
    assert choose_k({2: 0.41, 3: 0.58, 4: 0.58, 5: None}) == 3
    assert choose_k({2: None, 3: -0.1}) == 3
    with pytest.raises(ValueError, match="no k is eligible"):
        choose_k({2: None, 3: None})
    repository = load_spec("als_segmented").segmentation
    assert repository is not None and repository.ks == tuple(range(2, 9))
