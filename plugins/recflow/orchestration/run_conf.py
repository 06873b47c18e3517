"""Check a run's ``conf`` against its DAG's Params: unknown keys and bad values, every error at once.

Why: Airflow validates each Param on its own and stops at the first bad one, and it accepts keys no
Param declares. ``{"modles": ["ncf"]}`` (a typo) was accepted, and the run trained the default models.
The first task of each DAG calls :func:`check_run_conf`, so a bad ``conf`` fails the run before any
Spark job starts, with every error listed (``<key>: <what is wrong>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class InvalidRunConf(ValueError):
    """The run's ``conf`` names unknown keys or holds values its Params refuse; the message lists all."""


def conf_schema(param_schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One JSON Schema for the whole ``conf``: each Param's schema, and no other key."""
    return {"type": "object", "properties": dict(param_schemas), "additionalProperties": False}


def conf_errors(conf: Mapping[str, Any], param_schemas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every problem of ``conf`` (sorted by key): unknown keys, with the known ones, and refused values."""
    from jsonschema import Draft202012Validator  # Airflow's own Param validator; loaded when a task runs

    known = sorted(param_schemas)
    errors = [f"{key}: unknown parameter (known: {', '.join(known)})" for key in sorted(set(conf) - set(known))]
    validator = Draft202012Validator(conf_schema({k: v for k, v in param_schemas.items() if k in conf}))
    for error in validator.iter_errors({k: v for k, v in conf.items() if k in param_schemas}):
        where = ".".join(str(p) for p in error.absolute_path) or "conf"
        errors.append(f"{where}: {error.message}")
    return sorted(errors)


def check_run_conf(context: Mapping[str, Any]) -> None:
    """Refuse the run (:class:`InvalidRunConf`) when its ``conf`` does not fit the DAG's Params."""
    dag_run = context["dag_run"]
    conf = getattr(dag_run, "conf", None) or {}
    params = context["dag"].params
    schemas = {key: params.get_param(key).schema for key in params}
    errors = conf_errors(conf, schemas)
    if errors:
        raise InvalidRunConf(f"the run's conf is refused ({len(errors)} errors): " + "; ".join(errors))
