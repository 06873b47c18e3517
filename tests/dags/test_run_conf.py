"""A run's ``conf`` against its DAG's real Params: unknown keys and every bad value listed, not only the first.

Attacks and mistakes replayed (issue 21): ``{"modles": ["ncf"]}`` was accepted and the run trained the
default models; ``batch_scoring``'s ``version`` took any string; ``users`` had no size limit.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recflow.orchestration.run_conf import InvalidRunConf, check_run_conf, conf_errors

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_DIR / f"{dag_id}.py")).dags.get(dag_id)
    assert dag is not None, f"{dag_id} did not load"
    return dag


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    found = {}
    for dag_id in ("recommender_training", "batch_scoring"):
        params = _dag(dag_id).params
        found[dag_id] = {key: params.get_param(key).schema for key in params}
    return found


def test_a_misspelt_key_is_refused_naming_the_known_ones(schemas: dict[str, dict[str, Any]]) -> None:
    errors = conf_errors({"modles": ["ncf"]}, schemas["recommender_training"])
    assert len(errors) == 1 and errors[0].startswith("modles: unknown parameter (known: ") and "models" in errors[0]


def test_every_error_is_listed(schemas: dict[str, dict[str, Any]]) -> None:
    conf = {"modles": ["ncf"], "k": 0, "train_days": "six", "models": ["no-such-model"], "extra": 1}
    errors = conf_errors(conf, schemas["recommender_training"])
    assert [e.split(":")[0] for e in errors] == ["extra", "k", "models.0", "modles", "train_days"], errors


def test_a_valid_conf_and_an_empty_one_pass(schemas: dict[str, dict[str, Any]]) -> None:
    assert conf_errors({}, schemas["batch_scoring"]) == []
    conf = {"k": 5, "version": "als-20261110T0000-3f9a2c1b7e04", "users": ["u1", "u2"]}
    assert conf_errors(conf, schemas["batch_scoring"]) == []
    assert conf_errors({"version": ""}, schemas["batch_scoring"]) == []  # empty: the interval's champion


@pytest.mark.parametrize(
    "version",
    ["latest", "als-20261110T0000", "als-20261110T0000-3F9A2C1B7E04", "../registry/champion.json"],
)  # fmt: skip
def test_the_version_pin_has_a_pattern(schemas: dict[str, dict[str, Any]], version: str) -> None:
    errors = conf_errors({"version": version}, schemas["batch_scoring"])
    assert len(errors) == 1 and errors[0].startswith("version: ") and "does not match" in errors[0], errors


def test_users_have_a_size_limit(schemas: dict[str, dict[str, Any]]) -> None:
    too_many = [f"u{i}" for i in range(1001)]
    errors = conf_errors({"users": too_many}, schemas["batch_scoring"])
    assert errors and errors[0].startswith("users: ") and "too long" in errors[0], errors
    assert conf_errors({"users": too_many[:1000]}, schemas["batch_scoring"]) == []
    assert [e.split(":")[0] for e in conf_errors({"users": ["", "x" * 65]}, schemas["batch_scoring"])] == [
        "users.0",
        "users.1",
    ]


def test_the_first_task_refuses_the_run_with_all_errors() -> None:
    """``check_run_conf`` reads the run's conf and the DAG's Params from a task context."""
    dag = _dag("batch_scoring")
    context = {"dag": dag, "dag_run": SimpleNamespace(conf={"verison": "x", "k": 0})}
    with pytest.raises(InvalidRunConf, match=r"refused \(2 errors\): k: 0 is less than the minimum of 1; verison"):
        check_run_conf(context)
    check_run_conf({"dag": dag, "dag_run": SimpleNamespace(conf=None)})
