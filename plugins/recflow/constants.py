"""One vocabulary of column names, shared by every data source, model, metric and report."""

from typing import Final

COL_EVENT: Final = "event_id"
COL_USER: Final = "user_id"
COL_ITEM: Final = "item_id"
COL_TS: Final = "event_ts"
COL_QUANTITY: Final = "quantity"
COL_AMOUNT: Final = "amount"
COL_RATING: Final = "rating"
COL_DATE: Final = "event_date"
COL_SCORE: Final = "score"
COL_RANK: Final = "rank"
COL_SOURCE: Final = "source"
COL_VERSION: Final = "model_version"
COL_PROPENSITY: Final = "propensity"
#: The probability with which an exploration row's item was shown in its slot (null on other rows).
COL_LOGGING_PROPENSITY: Final = "logging_propensity"

DEFAULT_K: Final = 10
DEFAULT_SEED: Final = 42

#: A registry version id, ``<family>-<interval key>-<12 hex of the content digest>``
#: (``recflow.registry.version_ids``); here, importable without the registry, so a DAG file's Param
#: (``batch_scoring``'s ``version``) can use it as its JSON Schema ``pattern`` at parse time.
VERSION_ID_PATTERN: Final = r"^[a-z][a-z0-9_-]*-\d{8}T\d{4}-[0-9a-f]{12}$"
