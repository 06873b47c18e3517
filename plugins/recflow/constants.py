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
