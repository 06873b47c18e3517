"""JSON-lines logs: one object per line with the run's context and the record's own fields."""

from __future__ import annotations

import json
import logging
import os

import pytest

from recflow.config.logs import JsonLines, configure_json_logs, run_context

ENV = {"AIRFLOW_CTX_DAG_ID": "batch_scoring", "AIRFLOW_CTX_TASK_ID": "score", "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__x"}


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("recflow.batch.job", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_a_line_carries_the_airflow_run_the_version_and_the_request() -> None:
    context = run_context({"model_version": "als-20261110T0000-3f9a2c1b7e04", "request_id": None}, environ=ENV)
    line = json.loads(JsonLines(context).format(_record("scored 3 users", request_id="r-1")))
    assert line.pop("ts").endswith("+00:00")
    assert line == {
        "level": "info",
        "logger": "recflow.batch.job",
        "message": "scored 3 users",
        "dag_id": "batch_scoring",
        "task_id": "score",
        "run_id": "scheduled__x",
        "model_version": "als-20261110T0000-3f9a2c1b7e04",
        "request_id": "r-1",
    }


def test_outside_airflow_only_what_applies(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("AIRFLOW_CTX_")]:  # left behind by an in-process dag.test()
        monkeypatch.delenv(var)
    assert run_context(environ={}) == {}
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_json_logs()
        logging.getLogger("recflow.streaming").warning("ignoring an event", extra={"model_version": "v1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("recflow.streaming").exception("failed")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    first, second = (json.loads(x) for x in capsys.readouterr().err.strip().splitlines())
    assert (first["message"], first["model_version"], first["level"]) == ("ignoring an event", "v1", "warning")
    assert "dag_id" not in first and "ValueError: boom" in second["exc"]
