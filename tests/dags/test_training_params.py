"""The training DAG's Params schema, as the UI form and the REST API validate it.

``force_promote`` bypasses the promotion policy (never the canary), so turning it on must carry a reason
that the blessing and the audit log keep: the schema refuses it otherwise, before any run is created.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def training_params():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_DIR / "recommender_training.py")).dags.get("recommender_training")
    assert dag is not None, "recommender_training did not load"
    return dag.params


def _validated(params, force_promote: object) -> dict:
    candidate = copy.deepcopy(params)
    candidate["force_promote"] = force_promote
    return candidate.validate()


def test_defaults_validate_with_force_promote_off(training_params) -> None:
    assert _validated(training_params, {"enabled": False, "reason": ""})["force_promote"]["enabled"] is False


def test_force_promote_with_a_reason_validates(training_params) -> None:
    value = {"enabled": True, "reason": "hotfix: the champion recommends a recalled item"}
    assert _validated(training_params, value)["force_promote"] == value


@pytest.mark.parametrize(
    "value",
    [
        {"enabled": True, "reason": ""},
        {"enabled": True, "reason": "   "},
        {"enabled": True},
        {"enabled": "yes", "reason": "typed wrong"},
        {"enabled": False, "reason": "", "extra": 1},
    ],
    ids=["empty-reason", "blank-reason", "no-reason", "enabled-not-boolean", "unknown-key"],
)
def test_force_promote_without_a_valid_reason_is_refused(training_params, value: dict) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="force_promote"):
        _validated(training_params, value)
