"""Session-wide isolation, set before anything imports Airflow or reads recflow settings.

Tests share the local services (Kafka, S3) with the demo, but never its data: the lake, the landing
zone, the Airflow home and the model bucket are per test session.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_SESSION = (
    Path(os.environ.get("RECFLOW_STATE", _ROOT / ".recflow"))
    / "test-sessions"
    / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
)

os.environ.setdefault("RECFLOW_LAKE", str(_SESSION / "lake"))
os.environ.setdefault("RECFLOW_LANDING", str(_SESSION / "landing"))
os.environ.setdefault("RECFLOW_MODELS_BUCKET", f"recflow-test-{os.getpid()}-{int(time.time())}")

from recflow.services.local_airflow import airflow_env  # noqa: E402  (after the variables above)

_env = airflow_env()
_env["AIRFLOW_HOME"] = str(_SESSION / "airflow")
_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION / 'airflow' / 'airflow.db'}"
_env.pop("PATH")
for _key, _value in _env.items():
    os.environ.setdefault(_key, _value)
# The Spark hook runs ``spark-submit`` from PATH: the venv's bin must come first even when the venv
# is not activated (``.venv/bin/python -m pytest``).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)

# py4j logs "Closing down clientserver connection" from an atexit hook, after pytest closed its log
# handlers, which prints a "--- Logging error ---" traceback at the end of every run.
logging.getLogger("py4j").setLevel(logging.WARNING)
