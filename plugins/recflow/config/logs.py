"""JSON-lines logs for recflow's own processes (Spark jobs, the streaming scorer), with the run's context.

Why: a failed night is investigated by searching logs for one run or one model version, and a request
by its id. Plain text lines cannot be filtered by those reliably; a JSON object per line can (``jq``,
any log store). Each line carries ``ts``, ``level``, ``logger``, ``message``, the process's context
(``dag_id``, ``task_id``, ``run_id`` from the ``AIRFLOW_CTX_*`` variables Airflow exports to a task's
processes, and ``model_version`` when the process serves or scores one) and, per record,
``request_id`` / ``model_version`` passed as ``extra=`` where they apply. Airflow's own task logs are
already JSON (structlog); this covers the processes it starts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: Airflow's context variables (exported to a task's child processes) -> the field names in our lines.
AIRFLOW_CONTEXT = {"AIRFLOW_CTX_DAG_ID": "dag_id", "AIRFLOW_CTX_TASK_ID": "task_id", "AIRFLOW_CTX_DAG_RUN_ID": "run_id"}
#: Fields a log call may add with ``extra=`` (a record attribute of that name).
RECORD_FIELDS = ("model_version", "request_id")


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the context and the record's fields."""

    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__()
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.context,
        }
        line.update({name: getattr(record, name) for name in RECORD_FIELDS if getattr(record, name, None)})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def run_context(
    fields: Mapping[str, str | None] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The Airflow context of this process (when a task started it) plus ``fields`` that are set."""
    environ = os.environ if environ is None else environ
    context = {name: environ[var] for var, name in AIRFLOW_CONTEXT.items() if environ.get(var)}
    context.update({k: v for k, v in (fields or {}).items() if v})
    return context


def configure_json_logs(level: int = logging.INFO, **fields: str | None) -> None:
    """Send this process's logs to stderr as JSON lines carrying :func:`run_context` (replaces handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines(run_context(fields)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
