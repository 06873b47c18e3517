"""``recflow airflow-env`` / ``make airflow``: the user's variables win, derived values follow them."""

from __future__ import annotations

import pytest

from recflow.services.local_airflow import (
    airflow_env,
    api_base_url,
    default_parallelism,
    execution_api_url,
    standalone_env,
)


def test_execution_api_url_follows_the_configured_api_port() -> None:
    assert execution_api_url({"AIRFLOW__API__PORT": "48080"}) == "http://127.0.0.1:48080/execution/"
    assert execution_api_url({"AIRFLOW__API__HOST": "10.0.0.5", "AIRFLOW__API__PORT": "9999"}) == (
        "http://10.0.0.5:9999/execution/"
    )


def test_execution_api_url_defaults_to_airflows_own_port_and_dials_a_wildcard_bind_locally() -> None:
    assert execution_api_url({}) == "http://127.0.0.1:8080/execution/"
    assert execution_api_url({"AIRFLOW__API__HOST": "0.0.0.0"}) == "http://127.0.0.1:8080/execution/"
    assert api_base_url({"AIRFLOW__API__HOST": "::1", "AIRFLOW__API__PORT": "81"}) == "http://[::1]:81"


def test_base_url_and_explicit_execution_url_win() -> None:
    assert execution_api_url({"AIRFLOW__API__BASE_URL": "https://af.example.com/", "AIRFLOW__API__PORT": "1"}) == (
        "https://af.example.com/execution/"
    )
    # a path-only base URL (behind a proxy prefix) keeps the host and port
    assert api_base_url({"AIRFLOW__API__BASE_URL": "/airflow", "AIRFLOW__API__PORT": "8081"}) == (
        "http://127.0.0.1:8081/airflow"
    )
    explicit = "http://api.internal:7000/execution/"
    assert execution_api_url({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": explicit}) == explicit


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
def test_a_bad_port_is_an_error_naming_the_variable(port: str) -> None:
    with pytest.raises(ValueError, match="AIRFLOW__API__PORT"):
        api_base_url({"AIRFLOW__API__PORT": port})


def test_the_users_variables_win_and_path_gets_the_venv_in_front() -> None:
    environ = {
        "AIRFLOW__API__PORT": "48080",
        "AIRFLOW__CORE__PARALLELISM": "7",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://u:p@db:5432/airflow",
        "PATH": "/usr/bin",
    }
    env = airflow_env(environ=environ)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:48080/execution/"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "7"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["PATH"].endswith(":/usr/bin") and env["PATH"] != "/usr/bin"


def test_parallelism_is_one_per_core_and_at_least_two() -> None:
    assert default_parallelism(1) == 2
    assert default_parallelism(2) == 2
    assert default_parallelism(16) == 16
    assert airflow_env(environ={})["AIRFLOW__CORE__PARALLELISM"] == str(default_parallelism())


def test_standalone_uses_postgres_when_given_unless_the_user_chose_a_database() -> None:
    url = "postgresql+psycopg2://airflow:x@127.0.0.1:5433/airflow"
    env = standalone_env({"AIRFLOW__API__PORT": "48080"}, url)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:48080/execution/"
    # airflow standalone is exec'ed with this environment: the user's own variables must be in it
    assert env["AIRFLOW__API__PORT"] == "48080" and api_base_url(env) == "http://127.0.0.1:48080"
    mine = "sqlite:////tmp/mine.db"
    assert (
        standalone_env({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": mine}, url)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == mine
    )
    assert standalone_env({}, None)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert standalone_env({"AIRFLOW__API__HOST": "0.0.0.0"}, None)["AIRFLOW__API__HOST"] == "0.0.0.0"
